"""What the example shop sells: a fixed list, so the demo needs no product data."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Product:
    sku: str
    name: str | Promise
    blurb: str | Promise
    price: Decimal  # USD, what the shop charges; the gateway may add a buyer fee on top


PRODUCTS: tuple[Product, ...] = (
    Product(
        "pepper", _("Kampot pepper, 100 g"), _("Black peppercorns, sun dried."), Decimal("6.50")
    ),
    Product(
        "sugar", _("Palm sugar, 500 g"), _("Golden blocks from Kampong Speu."), Decimal("3.80")
    ),
    Product("tea", _("Jasmine tea, 250 g"), _("Loose leaves, picked in spring."), Decimal("4.25")),
    Product("scarf", _("Silk scarf"), _("Hand woven in Takeo, 180 by 50 cm."), Decimal("18.00")),
)

BY_SKU = {product.sku: product for product in PRODUCTS}
