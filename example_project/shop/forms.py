"""The checkout form: a quantity per product."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .catalogue import PRODUCTS, Product

MAX_QUANTITY = 20


class CheckoutForm(forms.Form):
    """One ``qty_<sku>`` field per product; ``lines()`` gives what was chosen, priced here (never
    trust a price from the browser)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for product in PRODUCTS:
            self.fields[f"qty_{product.sku}"] = forms.IntegerField(
                label=product.name,
                min_value=0,
                max_value=MAX_QUANTITY,
                initial=0,
                required=False,
                widget=forms.NumberInput(attrs={"class": "qty", "inputmode": "numeric"}),
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors and not any(cleaned.get(f"qty_{p.sku}") for p in PRODUCTS):
            raise forms.ValidationError(_("Choose at least one item."), code="empty")
        return cleaned

    def rows(self) -> list[tuple[Product, forms.BoundField]]:
        """Each product with its quantity field, for the template."""
        return [(product, self[f"qty_{product.sku}"]) for product in PRODUCTS]

    def lines(self) -> list[dict[str, Any]]:
        """The chosen lines as stored on the order (amounts as strings: JSON has no Decimal)."""
        lines = []
        for product in PRODUCTS:
            quantity = self.cleaned_data.get(f"qty_{product.sku}") or 0
            if quantity:
                lines.append(
                    {
                        "sku": product.sku,
                        "name": str(product.name),
                        "quantity": quantity,
                        "unit_price": str(product.price),
                        "line_total": str(product.price * quantity),
                    }
                )
        return lines


def total_of(lines: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(line["line_total"]) for line in lines), Decimal("0.00"))


def describe(lines: list[dict[str, Any]]) -> str:
    return ", ".join(f"{line['quantity']} x {line['name']}" for line in lines)[:255]
