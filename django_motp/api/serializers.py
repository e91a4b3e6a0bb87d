"""What the API reads and answers. Amounts are answered as strings with two decimals and read as
strings or JSON numbers with at most two decimals (parsed as ``Decimal``, never ``float``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ..models import MAX_AMOUNT, Payment, Refund

CENT = Decimal("0.01")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def amount_field(**kwargs: Any) -> serializers.DecimalField:
    """An amount of money: more than zero, at most ``MAX_AMOUNT``, at most two decimals."""
    return serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=CENT, max_value=MAX_AMOUNT, **kwargs
    )


def money(**kwargs: Any) -> serializers.DecimalField:
    """An amount in an answer: a string with two decimals."""
    return serializers.DecimalField(max_digits=13, decimal_places=2, read_only=True, **kwargs)


class PaymentSerializer(serializers.ModelSerializer[Payment]):
    """A payment as the API shows it."""

    amount = money()
    fee_rate = money()
    buyer_total = money(help_text=_("What the buyer pays: the amount plus the fee rate."))
    refunded_amount = money()
    refundable_amount = money(help_text=_("What can still be refunded."))

    class Meta:
        model = Payment
        fields = [
            "out_trade_no",
            "method",
            "status",
            "amount",
            "currency",
            "fee_rate",
            "buyer_total",
            "refunded_amount",
            "refundable_amount",
            "qr_code",
            "transaction_id",
            "message",
            "reference",
            "metadata",
            "store_id",
            "service_id",
            "sub_store_id",
            "sub_store_name",
            "created_at",
            "paid_at",
            "settled_at",
            "deadline_at",
        ]
        read_only_fields = fields


class DeclinedPaymentSerializer(PaymentSerializer):
    """A payment the gateway refused (402): the payment, failed, and the gateway's message."""

    detail = serializers.CharField(source="message", read_only=True)

    class Meta(PaymentSerializer.Meta):
        fields = ["detail", *PaymentSerializer.Meta.fields]
        read_only_fields = fields


class PaymentCreateSerializer(serializers.Serializer[Any]):
    """A new payment. ``auth_code`` (the buyer's payment code) is needed for ``quick`` and
    ``jsapi``; it is never answered back or stored."""

    method = serializers.ChoiceField(choices=Payment.Method.choices)
    amount = amount_field(help_text=_('At most two decimals, e.g. "19.90" or 19.9.'))
    auth_code = serializers.CharField(
        required=False,
        write_only=True,
        max_length=24,
        label=_("Buyer's payment code"),
        help_text=_("Quick and JSAPI payments only."),
    )
    reference = serializers.CharField(required=False, allow_blank=True, max_length=255)
    metadata = serializers.DictField(required=False)
    fee_rate = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        required=False,
        help_text=_("Percent charged to the buyer on top (default MOTP['FEE_RATE'])."),
    )
    out_trade_no = serializers.CharField(
        required=False,
        max_length=32,
        label=_("Order number"),
        help_text=_("Generated when not given."),
    )
    store_id = serializers.CharField(required=False, max_length=32)
    service_id = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    sub_store_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    sub_store_name = serializers.CharField(required=False, allow_blank=True, max_length=64)

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        # PostgreSQL's jsonb cannot hold a NUL character, in a key or in a value.
        if _holds_nul(value):
            raise serializers.ValidationError(_("Metadata cannot hold NUL characters."))
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["method"] != Payment.Method.NATIVE and not attrs.get("auth_code"):
            raise serializers.ValidationError(
                {"auth_code": _("Scan the buyer's payment code: quick and JSAPI payments need it.")}
            )
        if attrs["method"] == Payment.Method.NATIVE and attrs.get("auth_code"):
            raise serializers.ValidationError(
                {"auth_code": _("A QR code (native) payment takes no payment code.")}
            )
        return attrs


class RefundSerializer(serializers.ModelSerializer[Refund]):
    """A refund as the API shows it."""

    payment: serializers.SlugRelatedField[Payment] = serializers.SlugRelatedField(
        slug_field="out_trade_no", read_only=True
    )
    amount = money()

    class Meta:
        model = Refund
        fields = [
            "out_refund_no",
            "payment",
            "amount",
            "reason",
            "status",
            "message",
            "created_at",
            "completed_at",
            "deadline_at",
        ]
        read_only_fields = fields


class RefundCreateSerializer(serializers.Serializer[Any]):
    """A refund of a succeeded payment: ``amount`` (default: everything still refundable)."""

    amount = amount_field(
        required=False, help_text=_("At most two decimals; default: all that is refundable.")
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255)
    out_refund_no = serializers.CharField(
        required=False,
        max_length=32,
        label=_("Refund number"),
        help_text=_("Generated when not given."),
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """An error answer (403, 404, 409, 422, ...): DRF's usual ``{"detail": "..."}``."""

    detail = serializers.CharField()
