"""Scripted payment outcomes and the test auth codes that choose them.

Like a card network's test card numbers, each code below makes a quick or JSAPI payment behave in
one documented way. Any other auth code of 10 to 24 digits is paid at once. The control call
``POST /_sandbox/script`` picks an outcome for the next payment whatever its code or method.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What happens to a payment (and to the refunds of its order)."""

    #: Paid at once.
    PAID = "paid"
    #: The buyer types a PIN: the pay call is held ``pin_delay`` seconds, then answered paid.
    PIN = "pin"
    #: Answered "USERPAYING" at once; the order is paid ``pay_delay`` seconds later.
    USERPAYING = "userpaying"
    #: Declined: "PAYERROR: insufficient balance".
    DECLINED = "declined"
    #: Answered like USERPAYING, then never paid.
    NEVER = "never"
    #: Paid at once; each refund stays PROCESSING ``refund_delay`` seconds, then succeeds.
    REFUND_PROCESSING = "refund_processing"
    #: Paid at once; each refund is refused by the wallet.
    REFUND_REFUSED = "refund_refused"


AUTH_CODE_PAID = "134610000000000001"
AUTH_CODE_PIN = "134610000000000002"
AUTH_CODE_USERPAYING = "134610000000000003"
AUTH_CODE_DECLINED = "134610000000000004"
AUTH_CODE_NEVER_PAID = "134610000000000005"
AUTH_CODE_REFUND_PROCESSING = "134610000000000006"
AUTH_CODE_REFUND_REFUSED = "134610000000000007"

#: The outcome each test auth code scripts.
AUTH_CODES: dict[str, Outcome] = {
    AUTH_CODE_PAID: Outcome.PAID,
    AUTH_CODE_PIN: Outcome.PIN,
    AUTH_CODE_USERPAYING: Outcome.USERPAYING,
    AUTH_CODE_DECLINED: Outcome.DECLINED,
    AUTH_CODE_NEVER_PAID: Outcome.NEVER,
    AUTH_CODE_REFUND_PROCESSING: Outcome.REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED: Outcome.REFUND_REFUSED,
}

#: The gateway's texts for the scripted outcomes.
USERPAYING_MESSAGE = "USERPAYING: waiting for the buyer to enter the payment PIN"
DECLINED_MESSAGE = "PAYERROR: insufficient balance"
REFUND_REFUSED_MESSAGE = "REFUNDNOTALLOWED: refund refused by the wallet"


def outcome_for_auth_code(auth_code: str) -> Outcome:
    """The outcome a (valid) auth code scripts: its own for a test code, else ``PAID``."""
    return AUTH_CODES.get(auth_code, Outcome.PAID)
