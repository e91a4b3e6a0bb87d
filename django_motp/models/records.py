"""What happened, kept for people and for delivery: the API call log and the signal outbox."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .payments import Payment
from .refunds import Refund


class ApiCallQuerySet(models.QuerySet["ApiCall"]):
    def older_than(self, days: int) -> ApiCallQuerySet:
        return self.filter(created_at__lt=timezone.now() - timedelta(days=days))


class ApiCall(models.Model):
    """One HTTP call to the gateway, secrets already redacted by the client."""

    class Outcome(models.TextChoices):
        OK = "ok", _("OK")
        DECLINED = "declined", _("Refused by the gateway")
        AUTH_FAILED = "auth_failed", _("Authentication failed")
        TRANSPORT_ERROR = "transport_error", _("No usable answer")

    operation = models.CharField(_("operation"), max_length=16)
    out_trade_no = models.CharField(_("order number"), max_length=32, blank=True, db_index=True)
    out_refund_no = models.CharField(_("refund number"), max_length=32, blank=True)
    url = models.CharField(_("URL"), max_length=512)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    request = models.JSONField(_("request"), default=dict)
    response = models.JSONField(_("answer"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)

    objects = ApiCallQuerySet.as_manager()

    class Meta:
        verbose_name = _("API call")
        verbose_name_plural = _("API calls")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.operation} {self.outcome} ({self.duration_ms} ms)"

    @classmethod
    def record(cls, call: Any) -> ApiCall:
        """Store a ``django_motp.client.CallRecord``."""
        return cls.objects.create(
            operation=call.operation,
            out_trade_no=call.out_trade_no[:32],
            out_refund_no=call.out_refund_no[:32],
            url=call.url[:512],
            http_status=call.http_status,
            outcome=call.outcome,
            duration_ms=call.duration_ms,
            request=call.request,
            response=call.response,
            error=call.error,
        )


class EventQuerySet(models.QuerySet["Event"]):
    def undelivered(self) -> EventQuerySet:
        """Events not delivered yet: due, waiting for a retry after a receiver raised, or held
        back by an earlier undelivered event of the same payment or refund."""
        return self.filter(delivered_at__isnull=True)


class Event(models.Model):
    """One transition's signals, to deliver (the outbox).

    Written in the same transaction as the conditional UPDATE that makes the transition, then
    delivered by running the receivers inside one transaction that also marks the event
    delivered; a receiver that raises rolls the delivery back and it is tried again later.
    Exactly one of ``payment`` and ``refund`` is set.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    signal = models.CharField(
        _("signal"),
        max_length=32,
        help_text=_(
            "The transition's own signal, e.g. payment_succeeded; the *_status_changed "
            "signal is sent with it."
        ),
    )
    payment = models.ForeignKey(
        Payment,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("payment"),
    )
    refund = models.ForeignKey(
        Refund,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("refund"),
    )
    old_status = models.CharField(_("old status"), max_length=10)
    new_status = models.CharField(_("new status"), max_length=10)
    late = models.BooleanField(
        _("late"), default=False, help_text=_("A payment paid after it had expired or failed.")
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    attempts = models.PositiveIntegerField(_("delivery attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(delivered_at__isnull=True),
                name="motp_event_due",
            ),
            models.Index(fields=["-created_at"], name="motp_event_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(payment__isnull=False, refund__isnull=True)
                | Q(payment__isnull=True, refund__isnull=False),
                name="motp_event_one_object",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.signal} {self.old_status} -> {self.new_status}"

    @property
    def is_delivered(self) -> bool:
        return self.delivered_at is not None
