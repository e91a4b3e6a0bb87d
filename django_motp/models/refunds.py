"""Refunds of succeeded payments, identified at the gateway by ``out_refund_no``."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .payments import Payment


class RefundQuerySet(models.QuerySet["Refund"]):
    def needs_attention(self) -> RefundQuerySet:
        """Refunds a person should look at: flagged ones (a success answer that did not match,
        resolved by hand) and unsettled ones past their deadline."""
        overdue = Q(status__in=("created", "pending"), deadline_at__lt=timezone.now())
        return self.filter(~Q(attention="") | overdue)


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
