"""Payments, refunds and the API call log.

States only change in ``django_motp.services``, through conditional UPDATEs; nothing else should
write ``status``, ``refunded_amount`` or ``reserved_amount``. The money rules hold in the database
too: amounts are positive and ``0 <= refunded_amount <= reserved_amount <= amount``, where
``reserved_amount`` is the sum of the payment's refunds that have not failed.
"""

from .idempotency import IdempotencyKey, IdempotencyKeyQuerySet
from .payments import MAX_AMOUNT, Payment, PaymentQuerySet
from .records import ApiCall, ApiCallQuerySet, Event, EventQuerySet
from .refunds import Refund, RefundQuerySet

__all__ = [
    "MAX_AMOUNT",
    "ApiCall",
    "ApiCallQuerySet",
    "Event",
    "EventQuerySet",
    "IdempotencyKey",
    "IdempotencyKeyQuerySet",
    "Payment",
    "PaymentQuerySet",
    "Refund",
    "RefundQuerySet",
]
