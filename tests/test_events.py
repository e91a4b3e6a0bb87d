"""Signals through the outbox: one event per transition, delivered in a transaction that a
raising receiver rolls back, redelivered with back-off, in order, exactly once."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from django_motp import schedule, services, signals, tasks
from django_motp.models import Event, Payment, Refund
from django_motp.services import events as event_delivery
from django_motp.testing import AUTH_CODE_NEVER_PAID, AUTH_CODE_PAID
from tests.fixtures_money import *  # noqa: F403  (the fixtures)
from tests.fixtures_money import make_events_due, move_past_deadline
from tests.helpers import at_once

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status


def names(signal_log):
    return [e[0] for e in signal_log]


@pytest.fixture
def connected():
    """``connected(signal, receiver)``: connect for the test, disconnected after it."""
    made = []

    def connect(signal, receiver):
        signal.connect(receiver, weak=False)
        made.append((signal, receiver))

    yield connect
    for signal, receiver in made:
        signal.disconnect(receiver)


@pytest.fixture
def broken_receiver(connected):
    """A receiver of ``payment_status_changed`` (the first signal sent), connected before any
    other, that writes a row and then raises, while ``broken`` is True."""
    state = {"broken": True}

    def receiver(sender, payment, **kwargs):
        Group.objects.create(name=f"shipped {payment.pk} {Group.objects.count()}")
        if state["broken"]:
            raise ValueError("receiver bug: deadlock in the shop's handler")

    connected(signals.payment_status_changed, receiver)
    return state


def test_each_transition_writes_one_event_delivered_on_commit(motp_sandbox, signal_log):
    payment = services.create_quick_payment("2.00", AUTH_CODE_PAID)
    [event] = Event.objects.filter(payment=payment)
    assert (event.signal, event.old_status, event.new_status) == (
        "payment_succeeded",
        "created",
        "succeeded",
    )
    assert event.delivered_at is not None
    assert event.attempts == 0
    assert names(signal_log) == ["payment_status_changed", "payment_succeeded"]


def test_a_raising_receiver_rolls_its_delivery_back_and_it_is_delivered_later(
    motp_sandbox, broken_receiver, signal_log, caplog
):
    payment = services.create_quick_payment("2.00", AUTH_CODE_PAID)
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED  # the payment stands
    assert names(signal_log) == []  # the first receiver raised: nobody heard of it
    assert not Group.objects.exists()  # what it wrote was rolled back
    [event] = Event.objects.undelivered()
    assert event.attempts == 1
    assert "receiver bug" in event.last_error
    assert "Traceback" in event.last_error
    assert event.next_attempt_at > timezone.now()
    assert [r.levelname for r in caplog.records if "receiver of event" in r.message] == ["ERROR"]
    assert motp_sandbox.password not in event.last_error

    assert services.deliver_events() == 0  # its back-off is not over
    make_events_due()
    assert services.deliver_events() == 0  # still broken: attempt 2, later still
    event.refresh_from_db()
    assert event.attempts == 2

    broken_receiver["broken"] = False  # the shop fixed its handler
    make_events_due()
    assert tasks.sweep() == 0  # no check due; the sweep delivers the event
    assert names(signal_log) == ["payment_status_changed", "payment_succeeded"]
    assert Group.objects.count() == 1  # written exactly once
    assert services.deliver_events(Event.objects.all()) == 0  # delivered: never again
    assert Group.objects.count() == 1


def test_an_event_whose_process_died_after_commit_is_delivered_by_the_sweep(
    motp_sandbox, signal_log, monkeypatch
):
    monkeypatch.setattr(event_delivery, "deliver_soon", lambda event: None)  # died at COMMIT
    payment = services.create_quick_payment("2.00", AUTH_CODE_PAID)
    monkeypatch.undo()
    assert names(signal_log) == []
    tasks.sweep()
    assert names(signal_log) == []  # the fast path may still be running: wait a few seconds
    make_events_due()
    tasks.sweep()
    assert signal_log == [
        ("payment_status_changed", payment.pk, "created", "succeeded"),
        ("payment_succeeded", payment.pk),
    ]


def test_receivers_get_the_object_as_it_is_at_delivery(
    motp_sandbox, paid_payment, connected, signal_log
):
    seen = []

    def receiver(sender, refund, **kwargs):
        seen.append((refund.status, refund.payment.refunded_amount))

    connected(signals.refund_succeeded, receiver)
    payment = paid_payment("10.00")
    services.refund_payment(payment, "4.00")
    assert seen == [("succeeded", Decimal("4.00"))]  # the refund counted, not the old 0.00


def test_every_signal_carries_its_event_id(motp_sandbox, connected):
    seen = []

    def receiver(sender, event_id, **kwargs):
        seen.append(event_id)

    for signal in (signals.payment_status_changed, signals.payment_succeeded):
        connected(signal, receiver)
    payment = services.create_quick_payment("2.00", AUTH_CODE_PAID)
    event = Event.objects.get(payment=payment)
    assert seen == [event.pk, event.pk]  # the same id for a receiver to deduplicate on


def test_an_earlier_undelivered_event_holds_back_the_later_ones(
    motp_sandbox, broken_receiver, signal_log
):
    payment = services.create_quick_payment("2.00", AUTH_CODE_NEVER_PAID)  # created -> pending
    broken_receiver["broken"] = False
    move_past_deadline(payment)
    services.sync_payment(payment)  # pending -> expired, held back behind the first
    assert Payment.objects.get(pk=payment.pk).status == S.EXPIRED
    assert names(signal_log) == []
    make_events_due()
    assert services.deliver_events() == 2
    assert signal_log == [
        ("payment_status_changed", payment.pk, "created", "pending"),
        ("payment_status_changed", payment.pk, "pending", "expired"),
        ("payment_expired", payment.pk),
    ]


def test_two_deliverers_at_once_deliver_an_event_once(motp_sandbox, monkeypatch, connected):
    monkeypatch.setattr(event_delivery, "deliver_soon", lambda event: None)
    payment = services.create_quick_payment("2.00", AUTH_CODE_PAID)
    monkeypatch.undo()
    heard = []
    connected(signals.payment_succeeded, lambda sender, payment, **kw: heard.append(payment.pk))
    delivered = at_once(lambda: services.deliver_events(Event.objects.all()), 3)
    assert sorted(delivered) == [0, 0, 1]
    assert heard == [payment.pk]


def test_signals_are_not_delivered_when_the_callers_transaction_rolls_back(
    motp_sandbox, signal_log
):
    payment = services.create_native_payment("9.00")
    motp_sandbox.pay(payment.out_trade_no)
    signal_log.clear()

    def sync_then_fail():
        with transaction.atomic():
            services.sync_payment(payment)
            raise RuntimeError("the caller's own code failed")

    with pytest.raises(RuntimeError):
        sync_then_fail()
    assert signal_log == []
    assert not Event.objects.filter(payment=payment, new_status=S.SUCCEEDED).exists()


def test_refund_events_name_their_refund(motp_sandbox, paid_payment):
    refund = services.refund_payment(paid_payment("3.00"), "1.00")
    assert list(
        Event.objects.filter(refund=refund).order_by("created_at").values_list("signal", flat=True)
    ) == ["refund_status_changed", "refund_succeeded"]
    assert not Event.objects.filter(refund=refund, payment__isnull=False).exists()
    assert Refund.objects.get(pk=refund.pk).events.count() == 2


def test_failed_deliveries_back_off_then_slow_down():
    now = timezone.now()
    delays = [
        (schedule.event_retry(attempts, now) - now).total_seconds() for attempts in range(1, 12)
    ]
    assert delays == sorted(delays)  # never faster
    assert delays[0] == schedule.EVENT_RETRY_BASE
    assert delays[-1] == schedule.EVENT_RETRY_MAX  # slowly, but it keeps trying


def test_two_threads_syncing_the_same_payment_send_one_signal(motp_sandbox, signal_log):
    payment = services.create_native_payment("9.00")
    motp_sandbox.pay(payment.out_trade_no)
    results = at_once(lambda: services.sync_payment(Payment.objects.get(pk=payment.pk)).status)
    assert results == [S.SUCCEEDED, S.SUCCEEDED]
    assert [e[0] for e in signal_log].count("payment_succeeded") == 1
    assert signal_log.count(("payment_status_changed", payment.pk, "pending", "succeeded")) == 1


def test_signals_wait_for_the_commit(motp_sandbox, signal_log):
    payment = services.create_native_payment("9.00")
    motp_sandbox.pay(payment.out_trade_no)
    signal_log.clear()
    with transaction.atomic():
        services.sync_payment(payment)
        assert signal_log == []
    assert ("payment_succeeded", payment.pk) in signal_log


@pytest.mark.postgres
def test_concurrent_syncs_on_postgres_send_one_signal(motp_sandbox, signal_log):
    payment = services.create_native_payment("9.00")
    motp_sandbox.pay(payment.out_trade_no)
    outcomes = at_once(lambda: services.sync_payment(Payment.objects.get(pk=payment.pk)), 4)
    assert [o.status for o in outcomes] == [S.SUCCEEDED] * 4
    assert [e[0] for e in signal_log].count("payment_succeeded") == 1
