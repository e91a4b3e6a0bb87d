"""How the shop hooks into django-motp: receivers of its signals that move orders.

A payment's ``reference`` is the order's number. Each receiver runs in one transaction with
the order's row locked, and is idempotent twice over:

- by the event: django-motp sends every signal with the ``event_id`` of the transition, and may
  deliver an event again (a retry after a receiver or a process failed). The first thing a
  receiver writes is the order's note for that event, whose ``event_id`` is unique; an event
  already noted changes nothing.
- by the state: each receiver sets what the payment's state says (paid by this payment, refunded
  as much as the payment's ledger says), never adds to what is there.

Receivers get the payment or refund as read at delivery, so they trust its fields.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from django_motp import signals
from django_motp.conf import motp_settings
from django_motp.models import Payment, Refund

from .models import Order, OrderNote

logger = logging.getLogger(__name__)


def connect() -> None:
    """Connect the receivers (``ShopConfig.ready`` calls this; connecting twice is harmless)."""
    signals.payment_succeeded.connect(payment_succeeded, dispatch_uid="shop.payment_succeeded")
    signals.payment_failed.connect(payment_unpaid, dispatch_uid="shop.payment_failed")
    signals.payment_expired.connect(payment_unpaid, dispatch_uid="shop.payment_expired")
    signals.refund_succeeded.connect(refund_succeeded, dispatch_uid="shop.refund_succeeded")
    signals.refund_failed.connect(refund_failed, dispatch_uid="shop.refund_failed")


def _order_for_update(number: str) -> Order | None:
    """The order a payment is for, locked until the transaction ends; None for payments made
    elsewhere (at the admin's cashier form, say)."""
    if not number:
        return None
    return Order.objects.select_for_update().filter(number=number).first()


def _note(order: Order, event_id: UUID | None, text: str) -> bool:
    """Write the order's note for this event; False if the event was noted before (so it was
    acted upon already)."""
    try:
        with transaction.atomic():  # a savepoint: a duplicate leaves the outer transaction usable
            OrderNote.objects.create(order=order, event_id=event_id, text=text[:255])
    except IntegrityError:
        return False
    return True


def _money(amount: Any, currency: str) -> str:
    return f"{amount} {currency}"


def payment_succeeded(
    sender: Any, payment: Payment, event_id: UUID | None = None, late: bool = False, **kwargs: Any
) -> None:
    """The order is paid by the first payment that succeeds; any later one is a double charge,
    logged and shown on the order (django-motp refunds in full those it flags itself, when
    ``REFUND_DUPLICATES``)."""
    with transaction.atomic():
        order = _order_for_update(payment.reference)
        if order is None or order.payment_id == payment.pk:
            return  # not the shop's, or this payment was taken into account already
        amount = _money(payment.amount, payment.currency)
        if order.payment_id is None:
            if late:
                text = _("Paid late by %(payment)s (%(amount)s), after it had expired or failed.")
            else:
                text = _("Paid by %(payment)s (%(amount)s).")
            if not _note(
                order, event_id, text % {"payment": payment.out_trade_no, "amount": amount}
            ):
                return
            order.status = Order.Status.PAID
            order.payment = payment
            order.paid_at = payment.paid_at or timezone.now()
            order.save(update_fields=["status", "payment", "paid_at"])
            return
        first = order.payment.out_trade_no if order.payment else ""
        # django-motp refunds what it flagged as a double charge (a late success for a reference
        # already paid); another payment for a paid order (say, taken by hand at the till with
        # the order's number) is for a person to look at.
        flagged = payment.attention == Payment.Attention.DOUBLE_CHARGE
        if flagged and motp_settings.REFUND_DUPLICATES:
            then = _("It is refunded in full automatically.")
        else:
            then = _("Refund it from the admin.")
        text = _("Charged twice: %(payment)s (%(amount)s) paid an order %(first)s had paid.") % {
            "payment": payment.out_trade_no,
            "amount": amount,
            "first": first,
        }
        if not _note(order, event_id, text):
            return
        order.attention = f"{text} {then}"[:255]
        order.save(update_fields=["attention"])
    logger.warning("Order %s was paid twice: %s after %s", order.number, payment, first)


def payment_unpaid(
    sender: Any, payment: Payment, event_id: UUID | None = None, **kwargs: Any
) -> None:
    """A payment expired or was declined: the order stays as it is (open, so the buyer can ask
    for a new QR code); the note says what happened."""
    with transaction.atomic():
        order = _order_for_update(payment.reference)
        if order is None:
            return
        if payment.status == Payment.Status.EXPIRED:
            text = _("Payment %(payment)s expired unpaid.")
        else:
            text = _("Payment %(payment)s failed: %(message)s")
        _note(order, event_id, text % {"payment": payment.out_trade_no, "message": payment.message})


def refund_succeeded(
    sender: Any, refund: Refund, event_id: UUID | None = None, **kwargs: Any
) -> None:
    """A refund of the payment that paid the order makes it partly refunded or refunded; a
    refund of another payment (a double charge) is only noted."""
    with transaction.atomic():
        payment = Payment.objects.get(pk=refund.payment_id)  # its ledger as it is now
        order = _order_for_update(payment.reference)
        if order is None:
            return
        amount = _money(refund.amount, payment.currency)
        if order.payment_id != payment.pk:
            text = _("Refunded %(amount)s of the extra charge %(payment)s (%(refund)s).")
        else:
            text = _("Refunded %(amount)s (%(refund)s).")
        values = {"amount": amount, "payment": payment.out_trade_no, "refund": refund.out_refund_no}
        if not _note(order, event_id, text % values):
            return
        if order.payment_id != payment.pk:
            if order.attention and not _extra_charges_left(order):
                order.attention = ""  # every extra charge is back with the buyer
                order.save(update_fields=["attention"])
            return
        # The payment's ledger already counts every succeeded refund, this one included: set the
        # order from it rather than adding, so deliveries in any order and repeats agree.
        order.refunded_amount = max(order.refunded_amount, payment.refunded_amount)
        if order.refunded_amount >= order.total:
            order.status = Order.Status.REFUNDED
        elif order.refunded_amount > 0:
            order.status = Order.Status.PARTLY_REFUNDED
        order.save(update_fields=["refunded_amount", "status"])


def _extra_charges_left(order: Order) -> bool:
    """Whether a payment other than the one that paid the order is not yet refunded in full."""
    return (
        Payment.objects.filter(reference=order.number, status=Payment.Status.SUCCEEDED)
        .exclude(pk=order.payment_id)
        .filter(refunded_amount__lt=F("amount"))
        .exists()
    )


def refund_failed(sender: Any, refund: Refund, event_id: UUID | None = None, **kwargs: Any) -> None:
    """A refund the gateway refused: noted, the order unchanged."""
    with transaction.atomic():
        payment = Payment.objects.get(pk=refund.payment_id)
        order = _order_for_update(payment.reference)
        if order is None:
            return
        text = _("Refund %(refund)s of %(amount)s failed: %(message)s") % {
            "refund": refund.out_refund_no,
            "amount": _money(refund.amount, payment.currency),
            "message": refund.message,
        }
        _note(order, event_id, text)
