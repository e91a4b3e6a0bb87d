"""The example shop's receivers: each event changes its order once, whatever is delivered twice.

The signals are sent here as django-motp delivers them (``event_id``, and ``late`` on
``payment_succeeded``), with the payment or refund as read at delivery.
"""

import logging
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from django_motp import services
from django_motp.models import Event, Payment, Refund
from django_motp.signals import (
    payment_expired,
    payment_failed,
    payment_succeeded,
    refund_failed,
    refund_succeeded,
)
from shop.models import Order, OrderNote
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db

S = Payment.Status


@pytest.fixture
def order():
    return Order.objects.create(
        items=[{"sku": "tea", "name": "Tea", "quantity": 2, "unit_price": "5.00"}],
        description="2 x Tea",
        total=Decimal("10.00"),
    )


def make_payment(order, status=S.SUCCEEDED, **fields):
    return Payment.objects.create(
        out_trade_no=f"P{uuid.uuid4().hex[:20]}",
        method=Payment.Method.NATIVE,
        status=status,
        amount=order.total,
        service_id=30,
        store_id="10001",
        reference=order.number,
        paid_at=timezone.now() if status == S.SUCCEEDED else None,
        **fields,
    )


def refund_of(payment, amount, status=Refund.Status.SUCCEEDED, message=""):
    """A refund as django-motp leaves it: the payment's ledger already counts it."""
    refund = Refund.objects.create(
        payment=payment,
        out_refund_no=f"R{uuid.uuid4().hex[:20]}",
        amount=Decimal(amount),
        status=status,
        message=message,
    )
    if status != Refund.Status.FAILED:
        payment.reserved_amount += refund.amount
    if status == Refund.Status.SUCCEEDED:
        payment.refunded_amount += refund.amount
    payment.save()
    return Refund.objects.get(pk=refund.pk)


def deliver_success(payment, event_id, late=False):
    payment = Payment.objects.get(pk=payment.pk)  # read at delivery
    payment_succeeded.send(sender=Payment, payment=payment, event_id=event_id, late=late)


def deliver_refund(refund, event_id, signal=refund_succeeded):
    signal.send(sender=Refund, refund=Refund.objects.get(pk=refund.pk), event_id=event_id)


def fresh(order):
    return Order.objects.get(pk=order.pk)


def test_payment_succeeded_delivered_twice_marks_the_order_paid_once(order):
    payment = make_payment(order)
    event = uuid.uuid4()

    deliver_success(payment, event)
    paid = fresh(order)
    deliver_success(payment, event)

    again = fresh(order)
    assert again.status == Order.Status.PAID
    assert again.payment == payment
    assert again.paid_at == paid.paid_at == payment.paid_at
    assert list(again.notes.values_list("text", flat=True)) == [
        f"Paid by {payment.out_trade_no} (10.00 USD)."
    ]


def test_payment_succeeded_without_event_id_is_idempotent_by_state(order):
    payment = make_payment(order)
    payment_succeeded.send(sender=Payment, payment=payment)
    payment_succeeded.send(sender=Payment, payment=payment)
    assert fresh(order).status == Order.Status.PAID
    assert order.notes.count() == 1


def test_a_late_payment_still_pays_an_open_order(order):
    payment = make_payment(order)
    deliver_success(payment, uuid.uuid4(), late=True)
    assert fresh(order).status == Order.Status.PAID
    assert "Paid late" in order.notes.get().text


def test_refund_succeeded_delivered_twice_refunds_the_order_once(order):
    payment = make_payment(order)
    deliver_success(payment, uuid.uuid4())
    half = refund_of(payment, "5.00")
    event = uuid.uuid4()

    deliver_refund(half, event)
    deliver_refund(half, event)

    partly = fresh(order)
    assert partly.status == Order.Status.PARTLY_REFUNDED
    assert partly.refunded_amount == Decimal("5.00")
    assert OrderNote.objects.filter(event_id=event).count() == 1

    rest = refund_of(payment, "5.00")
    deliver_refund(rest, uuid.uuid4())
    deliver_refund(half, event)  # the first refund's event again, after the second one

    refunded = fresh(order)
    assert refunded.status == Order.Status.REFUNDED
    assert refunded.refunded_amount == Decimal("10.00")
    assert refunded.notes.count() == 3  # paid, and one per refund


def test_refunds_delivered_out_of_order_agree(order):
    payment = make_payment(order)
    deliver_success(payment, uuid.uuid4())
    first = refund_of(payment, "3.00")
    second = refund_of(payment, "2.00")

    deliver_refund(second, uuid.uuid4())  # both read at delivery: the ledger counts both
    deliver_refund(first, uuid.uuid4())

    assert fresh(order).refunded_amount == Decimal("5.00")
    assert fresh(order).status == Order.Status.PARTLY_REFUNDED


def test_a_late_double_charge_is_shown_on_the_order_and_logged_once(order, caplog):
    first = make_payment(order)
    deliver_success(first, uuid.uuid4())
    second = make_payment(order, attention=Payment.Attention.DOUBLE_CHARGE, duplicate_of=first)
    event = uuid.uuid4()

    with caplog.at_level(logging.WARNING, logger="shop.receivers"):
        deliver_success(second, event, late=True)
        deliver_success(second, event, late=True)

    flagged = fresh(order)
    assert flagged.status == Order.Status.PAID
    assert flagged.payment == first  # the order stays paid by the first payment
    assert second.out_trade_no in flagged.attention
    assert "Charged twice" in flagged.attention
    assert "refunded in full automatically" in flagged.attention
    assert OrderNote.objects.filter(event_id=event).count() == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"Order {order.number} was paid twice: {Payment.objects.get(pk=second.pk)} after "
        f"{first.out_trade_no}"
    ]


def test_a_second_payment_django_motp_did_not_flag_is_left_to_a_person(order):
    first = make_payment(order)
    deliver_success(first, uuid.uuid4())
    by_hand = make_payment(order)  # taken at the till with the order's number, say
    deliver_success(by_hand, uuid.uuid4())
    assert fresh(order).attention.endswith("Refund it from the admin.")


def test_refunding_the_double_charge_leaves_the_order_paid(order):
    first = make_payment(order)
    deliver_success(first, uuid.uuid4())
    second = make_payment(order, attention=Payment.Attention.DOUBLE_CHARGE, duplicate_of=first)
    deliver_success(second, uuid.uuid4(), late=True)

    deliver_refund(refund_of(second, "10.00"), uuid.uuid4())

    after = fresh(order)
    assert after.status == Order.Status.PAID
    assert after.refunded_amount == Decimal("0.00")
    assert after.attention == ""  # the extra charge is back with the buyer
    assert "of the extra charge" in after.notes.last().text


def test_a_partly_refunded_double_charge_still_needs_attention(order):
    first = make_payment(order)
    deliver_success(first, uuid.uuid4())
    second = make_payment(order, attention=Payment.Attention.DOUBLE_CHARGE, duplicate_of=first)
    deliver_success(second, uuid.uuid4(), late=True)

    deliver_refund(refund_of(second, "4.00"), uuid.uuid4())

    assert "Charged twice" in fresh(order).attention


@pytest.mark.parametrize(
    ("signal", "status", "text"),
    [
        (payment_expired, S.EXPIRED, "expired unpaid"),
        (payment_failed, S.FAILED, "failed: PAYERROR: declined"),
    ],
)
def test_an_unpaid_payment_leaves_the_order_open(order, signal, status, text):
    payment = make_payment(order, status=status, message="PAYERROR: declined")
    event = uuid.uuid4()
    signal.send(sender=Payment, payment=payment, event_id=event)
    signal.send(sender=Payment, payment=payment, event_id=event)
    assert fresh(order).status == Order.Status.OPEN
    assert text in order.notes.get().text


def test_a_failed_refund_is_noted_and_changes_nothing(order):
    payment = make_payment(order)
    deliver_success(payment, uuid.uuid4())
    refused = refund_of(payment, "4.00", status=Refund.Status.FAILED, message="REFUND refused")
    event = uuid.uuid4()
    deliver_refund(refused, event, signal=refund_failed)
    deliver_refund(refused, event, signal=refund_failed)
    after = fresh(order)
    assert (after.status, after.refunded_amount) == (Order.Status.PAID, Decimal("0.00"))
    assert "failed: REFUND refused" in OrderNote.objects.get(event_id=event).text


def test_payments_for_something_else_are_ignored(order):
    elsewhere = make_payment(order)
    Payment.objects.filter(pk=elsewhere.pk).update(reference="till 3")
    deliver_success(elsewhere, uuid.uuid4())
    deliver_refund(refund_of(Payment.objects.get(pk=elsewhere.pk), "1.00"), uuid.uuid4())
    assert fresh(order).status == Order.Status.OPEN
    assert not OrderNote.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_real_events_delivered_again_change_the_order_once(motp_sandbox):
    """The same, through django-motp's own outbox: each transition's event delivered on commit,
    then delivered once more (as after a lost acknowledgement)."""
    order = Order.objects.create(description="2 x Tea", total=Decimal("8.50"))
    payment = services.create_native_payment(order.total, reference=order.number)
    motp_sandbox.pay(payment.out_trade_no)
    services.sync_payment(payment)
    refund = services.refund_payment(Payment.objects.get(pk=payment.pk), Decimal("4.25"))
    wait_until(lambda: services.sync_refund(Refund.objects.get(pk=refund.pk)).is_final)

    before = fresh(order)
    assert (before.status, before.refunded_amount) == (
        Order.Status.PARTLY_REFUNDED,
        Decimal("4.25"),
    )
    events = Event.objects.filter(signal__in=["payment_succeeded", "refund_succeeded"])
    assert set(before.notes.values_list("event_id", flat=True)) == {e.pk for e in events}

    events.update(delivered_at=None)
    assert services.deliver_events(events.order_by("created_at")) == 2

    after = fresh(order)
    assert (after.status, after.refunded_amount, after.paid_at) == (
        before.status,
        before.refunded_amount,
        before.paid_at,
    )
    assert after.notes.count() == 2
