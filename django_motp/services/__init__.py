"""Taking and refunding payments: the only code that calls the gateway and changes states.

Every state change is one conditional UPDATE (``filter(pk=..., status=<the status read>)``)
with its event row written in the same transaction; only the caller whose UPDATE changed the
row writes that event, and the event is delivered to the signal receivers inside a transaction
of its own (``deliver_events``). So each transition happens exactly once, whatever races with
other threads, workers or retries, and what receivers write for it is kept exactly once.

Call the services in autocommit mode (not inside ``transaction.atomic``): the row is saved
before the gateway is called so that a crash mid-call loses nothing, and the HTTP call must not
hold a transaction open.

Modules: ``payments``, ``refunds``, ``transitions`` (state changes), ``events`` (delivery),
``claims`` (one checker per row), ``batch`` (due checks in batches, on threads), ``answers``
(what each gateway answer means), ``common``.
Services never import ``django_motp.tasks``; they hand the next check to
``django_motp.hooks``.
"""

from __future__ import annotations

from ..models import Payment, Refund
from .batch import BatchChecker, check_due
from .claims import (
    back_off,
    claim_check,
    claim_due,
    claim_lease,
    hand_back,
    next_due,
    release,
)
from .common import get_client
from .events import deliver_events
from .payments import (
    check_payment_claimed,
    create_jsapi_payment,
    create_native_payment,
    create_quick_payment,
    reconcile_payment,
    refund_double_charge,
    sync_payment,
)
from .refunds import check_refund_claimed, refund_payment, sync_refund
from .resolve import resolve_refund

__all__ = [
    "BatchChecker",
    "back_off",
    "check_claimed",
    "check_due",
    "check_payment_claimed",
    "check_refund_claimed",
    "claim_check",
    "claim_due",
    "claim_lease",
    "create_jsapi_payment",
    "create_native_payment",
    "create_quick_payment",
    "deliver_events",
    "get_client",
    "hand_back",
    "next_due",
    "reconcile_payment",
    "refund_double_charge",
    "refund_payment",
    "release",
    "resolve_refund",
    "sync_payment",
    "sync_refund",
]


def check_claimed(obj: Payment | Refund) -> Payment | Refund:
    """Check ``obj`` once for a poll that holds its claim (``claim_check``): the work of
    ``sync_payment`` or ``sync_refund`` without taking the claim again."""
    if isinstance(obj, Payment):
        return check_payment_claimed(obj)
    assert isinstance(obj, Refund)
    return check_refund_claimed(obj)
