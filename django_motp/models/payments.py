"""Payments: one taken through the gateway, identified there by ``out_trade_no``."""

from __future__ import annotations

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..money import buyer_total

#: The largest amount the gateway takes: 9,999,999,999.99.
MAX_AMOUNT = Decimal("9999999999.99")


class PaymentQuerySet(models.QuerySet["Payment"]):
    def needs_attention(self) -> PaymentQuerySet:
        """Payments a person should look at: flagged ones (a success answer that did not match,
        a late success, a double charge) and unsettled ones past their deadline (the gateway
        gave no usable answer in time)."""
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
