"""The admin's forms: taking a payment, refunding one, resolving a refund by hand.

They only check what a person typed; the services check the rest (and raise ``ValidationError``
before any HTTP call), and ``apply_service_errors`` puts those errors on the form.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .models import MAX_AMOUNT, Payment

MONEY = {"max_digits": 12, "decimal_places": 2, "min_value": Decimal("0.01")}


class SecretInput(forms.TextInput):
    """A text box that never writes its value back into the page (a buyer's payment code)."""

    def format_value(self, value: Any) -> None:
        return None


class TakePaymentForm(forms.Form):
    """What a cashier types to take a payment (the field names are part of the public contract:
    ``method``, ``amount``, ``auth_code``, ``reference``)."""

    method = forms.ChoiceField(
        label=_("Method"),
        choices=Payment.Method.choices,
        initial=Payment.Method.QUICK,
    )
    amount = forms.DecimalField(label=_("Amount"), max_value=MAX_AMOUNT, **MONEY)  # type: ignore[arg-type]
    auth_code = forms.CharField(
        label=_("Buyer's payment code"),
        required=False,
        max_length=24,
        help_text=_("Scan the buyer's code (payment code and JSAPI). Not needed for a QR code."),
        # Autofocused: a barcode scanner types into it and its Enter submits the form.
        widget=SecretInput(
            attrs={"autofocus": True, "autocomplete": "off", "inputmode": "numeric"}
        ),
    )
    reference = forms.CharField(
        label=_("Reference"),
        required=False,
        max_length=255,
        help_text=_("Your order or receipt number, to find the payment again."),
    )
    fee_rate = forms.DecimalField(
        label=_("Buyer fee rate (%)"),
        required=False,
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        max_digits=5,
        decimal_places=2,
        help_text=_("Charged to the buyer on top of the amount. Empty: the shop's default."),
    )
    sub_store_id = forms.CharField(label=_("Sub store id"), required=False, max_length=64)
    sub_store_name = forms.CharField(label=_("Sub store name"), required=False, max_length=64)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("method") != Payment.Method.NATIVE and not data.get("auth_code"):
            self.add_error("auth_code", _("Scan the buyer's payment code."))
        return data

    def service_options(self) -> dict[str, Any]:
        """The keyword arguments of the ``create_*_payment`` services."""
        data = self.cleaned_data
        return {
            "reference": data["reference"],
            "fee_rate": data["fee_rate"],
            "sub_store_id": data["sub_store_id"] or None,
            "sub_store_name": data["sub_store_name"] or None,
        }


class RefundForm(forms.Form):
    """Refund part or all of a payment (field names ``amount`` and ``reason`` are public)."""

    amount = forms.DecimalField(label=_("Amount to refund"), max_value=MAX_AMOUNT, **MONEY)  # type: ignore[arg-type]
    reason = forms.CharField(label=_("Reason"), required=False, max_length=255)


class ResolveRefundForm(forms.Form):
    """What the gateway's support said about a refund it left unsettled."""

    outcome = forms.TypedChoiceField(
        label=_("The gateway's support confirmed that the refund"),
        choices=[("succeeded", _("succeeded: the buyer got the money")), ("failed", _("failed"))],
        coerce=lambda value: value == "succeeded",
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        label=_("Note"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Who confirmed it and how (ticket number, e-mail, call)."),
    )


def apply_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ``ValidationError`` on ``form``: errors about one of the form's fields on
    that field, every other one (a field the form lacks, or none) at the top of the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.error_dict.items():
        form.add_error(field if field in form.fields else None, errors)
