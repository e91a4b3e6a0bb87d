"""Money arithmetic shared by the models, the services and the sandbox: plain ``Decimal``,
no Django, so that the shop and the fake gateway compute the same cents."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def buyer_total(amount: Decimal, fee_rate: Decimal) -> Decimal:
    """What the buyer pays: ``amount`` plus ``fee_rate`` percent, rounded half up to the cent
    (1.25 at 2 % is 1.28), as the gateway rounds."""
    return (amount * (100 + fee_rate) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
