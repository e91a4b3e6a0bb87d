"""Where an order stands, as its page and its status endpoint show it.

The buyer's page follows the order by asking the shop (``/orders/<number>/status/``), not the
MOTP REST API: that API is for staff (it needs ``view_payment``), while the buyer is anonymous and
should see this order only. Both read the database, which the Celery worker keeps up to date:
the page never asks the gateway itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_motp.models import Payment, Refund

from .models import Order

UNSETTLED_PAYMENT = {Payment.Status.CREATED, Payment.Status.PENDING}
UNSETTLED_REFUND = {Refund.Status.CREATED, Refund.Status.PENDING}


@dataclass
class Progress:
    order: Order
    payments: list[Payment]  # newest first, refunds prefetched

    @classmethod
    def of(cls, order: Order) -> Progress:
        return cls(order, list(order.payments()))

    @property
    def current(self) -> Payment | None:
        """The payment the buyer is asked to make now: the newest one, while the order is open."""
        if self.order.status != Order.Status.OPEN or not self.payments:
            return None
        return self.payments[0]

    @property
    def awaiting_scan(self) -> bool:
        current = self.current
        return bool(current and current.status in UNSETTLED_PAYMENT and current.qr_code)

    @property
    def can_retry(self) -> bool:
        """The order is open and nothing is under way: the buyer may ask for a new QR code."""
        return self.order.status == Order.Status.OPEN and not any(
            p.status in UNSETTLED_PAYMENT or p.status == Payment.Status.SUCCEEDED
            for p in self.payments
        )

    @property
    def settled(self) -> bool:
        """Whether nothing is under way that would change the page by itself: no payment or
        refund unsettled, and no settled one the order's receivers have yet to take in."""
        order = self.order
        for payment in self.payments:
            if payment.status in UNSETTLED_PAYMENT:
                return False
            if payment.status == Payment.Status.SUCCEEDED and order.payment_id is None:
                return False  # paid, the order not yet marked: its signal is on the way
            if any(refund.status in UNSETTLED_REFUND for refund in payment.refunds.all()):
                return False
            if payment.pk == order.payment_id and payment.refunded_amount > order.refunded_amount:
                return False
        return True

    @property
    def state(self) -> str:
        """A fingerprint of everything the page shows that can change: the page reloads when the
        status endpoint's differs from the one it was rendered with."""
        parts = [
            self.order.status,
            str(self.order.refunded_amount),
            str(bool(self.order.attention)),
        ]
        for payment in self.payments:
            refunds = ".".join(refund.status for refund in payment.refunds.all())
            parts.append(f"{payment.pk}:{payment.status}:{refunds}")
        return "|".join(parts)

    def as_json(self) -> dict[str, Any]:
        order = self.order
        return {
            "number": order.number,
            "status": order.status,
            "status_display": str(order.get_status_display()),
            "total": str(order.total),
            "refunded_amount": str(order.refunded_amount),
            "attention": order.attention,
            "settled": self.settled,
            "state": self.state,
            "payments": [
                {
                    "out_trade_no": payment.out_trade_no,
                    "status": payment.status,
                    "amount": str(payment.amount),
                    "buyer_total": str(payment.buyer_total),
                    "refunded_amount": str(payment.refunded_amount),
                    "refunds": [
                        {
                            "out_refund_no": refund.out_refund_no,
                            "status": refund.status,
                            "amount": str(refund.amount),
                        }
                        for refund in payment.refunds.all()
                    ],
                }
                for payment in self.payments
            ],
        }
