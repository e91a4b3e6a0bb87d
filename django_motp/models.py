"""Payments, refunds and the API call log.

States only change in ``django_motp.services``, through conditional UPDATEs; nothing else should
write ``status``, ``refunded_amount`` or ``reserved_amount``. The money rules hold in the database
too: amounts are positive and ``0 <= refunded_amount <= reserved_amount <= amount``, where
``reserved_amount`` is the sum of the payment's refunds that have not failed.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import motp_settings
from .money import buyer_total

#: The largest amount the gateway takes: 9,999,999,999.99.
MAX_AMOUNT = Decimal("9999999999.99")


class PaymentQuerySet(models.QuerySet["Payment"]):
    def needs_attention(self) -> PaymentQuerySet:
        """Payments a person should look at: flagged ones (a success answer that did not match,
        a late success, a double charge) and unsettled ones past their deadline (the gateway
        gave no usable answer in time)."""
        overdue = Q(status__in=("created", "pending"), deadline_at__lt=timezone.now())
        return self.filter(~Q(attention="") | overdue)


class RefundQuerySet(models.QuerySet["Refund"]):
    def needs_attention(self) -> RefundQuerySet:
        """Refunds a person should look at: flagged ones (a success answer that did not match,
        resolved by hand) and unsettled ones past their deadline."""
        overdue = Q(status__in=("created", "pending"), deadline_at__lt=timezone.now())
        return self.filter(~Q(attention="") | overdue)


class Payment(models.Model):
    """One payment taken through the gateway, identified there by ``out_trade_no``."""

    class Method(models.TextChoices):
        NATIVE = "native", _("QR code (buyer scans)")
        QUICK = "quick", _("Payment code (cashier scans)")
        JSAPI = "jsapi", _("In-wallet (JSAPI)")

    class Status(models.TextChoices):
        CREATED = "created", _("Created")
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")

    #: States regular polling stops at. Failed and expired ones still get the late-success checks.
    FINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.EXPIRED})
    #: States a late "paid" answer can still turn into succeeded.
    UNPAID_STATUSES = frozenset({Status.CREATED, Status.PENDING, Status.FAILED, Status.EXPIRED})

    class Attention(models.TextChoices):
        """Why a person should look at a payment (blank: nothing to look at)."""

        NONE = "", _("Nothing")
        ANSWER_MISMATCH = "answer_mismatch", _("Success answer did not match")
        LATE_SUCCESS = "late_success", _("Paid after it had expired or failed")
        DOUBLE_CHARGE = "double_charge", _("Paid twice for one reference")

    out_trade_no = models.CharField(_("order number"), max_length=32, unique=True)
    method = models.CharField(_("method"), max_length=8, choices=Method.choices)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.CREATED
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    fee_rate = models.DecimalField(
        _("buyer fee rate (%)"), max_digits=5, decimal_places=2, default=Decimal("0")
    )
    service_id = models.PositiveIntegerField(_("service id"))
    store_id = models.CharField(_("store id"), max_length=32)
    sub_store_id = models.CharField(_("sub store id"), max_length=64, blank=True)
    sub_store_name = models.CharField(_("sub store name"), max_length=64, blank=True)
    qr_code = models.TextField(_("QR code"), blank=True)
    transaction_id = models.CharField(_("wallet transaction id"), max_length=64, blank=True)
    refunded_amount = models.DecimalField(
        _("refunded"), max_digits=12, decimal_places=2, default=Decimal("0")
    )
    reserved_amount = models.DecimalField(
        _("refunds not failed"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Sum of the refunds that have not failed, pending ones included."),
    )
    reference = models.CharField(_("reference"), max_length=255, blank=True, db_index=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    message = models.CharField(_("gateway message"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    paid_at = models.DateTimeField(_("paid"), null=True, blank=True)
    settled_at = models.DateTimeField(
        _("settled"), null=True, blank=True, help_text=_("When it reached its final state.")
    )
    deadline_at = models.DateTimeField(
        _("deadline"), null=True, blank=True, help_text=_("When an unpaid payment expires.")
    )
    next_check_at = models.DateTimeField(_("next status check"), null=True, blank=True)
    late_checks_done = models.PositiveSmallIntegerField(_("late checks done"), default=0)
    acknowledged = models.BooleanField(
        _("acknowledged by the gateway"),
        default=False,
        help_text=_("The gateway answered the payment call: 'not found' no longer means unpaid."),
    )
    checking_until = models.DateTimeField(
        _("being checked until"),
        null=True,
        blank=True,
        help_text=_("A worker or a person holds this row's status check until then."),
    )
    attention = models.CharField(
        _("needs attention"), max_length=16, choices=Attention.choices, default="", blank=True
    )
    attention_note = models.CharField(_("attention note"), max_length=255, blank=True)
    duplicate_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="duplicates",
        verbose_name=_("duplicate of"),
        help_text=_("The earlier succeeded payment for the same reference."),
    )

    objects = PaymentQuerySet.as_manager()

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-created_at"]
        permissions = [("refund_payment", _("Can refund payments"))]
        indexes = [
            models.Index(fields=["status", "next_check_at"], name="motp_payment_due"),
            models.Index(fields=["-created_at"], name="motp_payment_created"),
            models.Index(fields=["status", "-created_at"], name="motp_payment_status"),
            models.Index(fields=["method", "-created_at"], name="motp_payment_method"),
            models.Index(fields=["transaction_id"], name="motp_payment_transaction"),
            models.Index(
                fields=["attention"], condition=~Q(attention=""), name="motp_payment_attention"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="motp_payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0)
                & Q(refunded_amount__lte=F("reserved_amount"))
                & Q(reserved_amount__lte=F("amount")),
                name="motp_payment_refunds_within_amount",
            ),
        ]

    def __str__(self) -> str:
        # The status's label, lowercased: in English the same as its value, elsewhere translated.
        status = str(self.get_status_display()).lower()
        return f"{self.out_trade_no} {self.amount} {self.currency} ({status})"

    @property
    def refundable_amount(self) -> Decimal:
        """What can still be refunded: the amount less every refund that has not failed."""
        if self.status != self.Status.SUCCEEDED:
            return Decimal("0.00")
        return self.amount - self.reserved_amount

    @property
    def buyer_total(self) -> Decimal:
        """What the buyer pays: the amount plus ``fee_rate`` percent, rounded half up to the
        cent as the gateway does (``django_motp.money.buyer_total``)."""
        return buyer_total(self.amount, self.fee_rate)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class Refund(models.Model):
    """A full or partial refund of a succeeded payment, identified by ``out_refund_no``."""

    class Status(models.TextChoices):
        CREATED = "created", _("Created")
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    FINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED})

    class Attention(models.TextChoices):
        """Why a person should look at a refund (blank: nothing to look at)."""

        NONE = "", _("Nothing")
        ANSWER_MISMATCH = "answer_mismatch", _("Success answer did not match")
        OVERDUE = "overdue", _("Unsettled past its deadline")
        RESOLVED_BY_HAND = "resolved_by_hand", _("Resolved by an operator")

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("payment")
    )
    out_refund_no = models.CharField(_("refund number"), max_length=32, unique=True)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.CREATED
    )
    message = models.CharField(_("gateway message"), max_length=255, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    deadline_at = models.DateTimeField(_("deadline"), null=True, blank=True)
    next_check_at = models.DateTimeField(_("next status check"), null=True, blank=True)
    checking_until = models.DateTimeField(
        _("being checked until"),
        null=True,
        blank=True,
        help_text=_("A worker or a person holds this row's status check until then."),
    )
    attention = models.CharField(
        _("needs attention"), max_length=16, choices=Attention.choices, default="", blank=True
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("resolved by"),
    )
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolution_note = models.TextField(_("resolution note"), blank=True)

    objects = RefundQuerySet.as_manager()

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_check_at"], name="motp_refund_due"),
            models.Index(fields=["-created_at"], name="motp_refund_created"),
            models.Index(
                fields=["attention"], condition=~Q(attention=""), name="motp_refund_attention"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="motp_refund_amount_positive"),
        ]

    def __str__(self) -> str:
        # As a payment's: the status's label, the same as its value in English.
        status = str(self.get_status_display()).lower()
        return f"{self.out_refund_no} {self.amount} ({status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


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


class IdempotencyKeyQuerySet(models.QuerySet["IdempotencyKey"]):
    def expired(self, ttl: float | None = None) -> IdempotencyKeyQuerySet:
        """Keys older than ``ttl`` seconds (default ``MOTP["IDEMPOTENCY_KEY_TTL"]``)."""
        seconds = motp_settings.IDEMPOTENCY_KEY_TTL if ttl is None else ttl
        return self.filter(created_at__lt=timezone.now() - timedelta(seconds=seconds))


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` sent to the REST API, and the first answer given for it.

    The row is written (``status_code`` NULL: still running) before the request's work starts, so
    the unique constraint lets exactly one of several concurrent requests with one key do it.
    The answer is stored when the work ends and replayed for a retry with the same request.
    """

    scope = models.CharField(_("scope"), max_length=255, help_text=_("Whose key it is."))
    key = models.CharField(_("key"), max_length=255)
    fingerprint = models.CharField(
        _("request fingerprint"),
        max_length=64,
        help_text=_("HMAC-SHA-256 of the request's method, path and body."),
    )
    method = models.CharField(_("method"), max_length=8)
    path = models.CharField(_("path"), max_length=512)
    status_code = models.PositiveSmallIntegerField(
        _("answer status"), null=True, blank=True, help_text=_("Empty while the request runs.")
    )
    response = models.JSONField(_("answer body"), null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="motp_idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} ({self.status_code or 'running'})"

    @property
    def is_running(self) -> bool:
        return self.status_code is None
