"""Due checks made in batches on threads (``services.check_due``, the engine of
``tasks.poll_due``): they settle payments and refunds exactly as the per-row polls do, one
checker per row, with faults, and with two checkers racing; and they send no message per check."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from django_motp import services
from django_motp.models import ApiCall, Event, Payment, Refund
from django_motp.services import batch
from django_motp.testing import AUTH_CODE_NEVER_PAID, AUTH_CODE_REFUND_PROCESSING
from tests.helpers import at_once, signal_names

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
R = Refund.Status


@pytest.fixture
def enqueued(monkeypatch):
    """Every next check handed to the broker (``tasks.enqueue_poll``), as the rows."""
    sent = []
    monkeypatch.setattr("django_motp.tasks.enqueue_poll", sent.append)
    return sent


def make_due(*objs):
    for obj in objs:
        type(obj).objects.filter(pk=obj.pk).update(next_check_at=timezone.now())


def native(count, amount="3.00"):
    return [services.create_native_payment(amount) for _ in range(count)]


def test_due_payments_are_checked_once_each_and_the_paid_ones_settle(
    motp_sandbox, enqueued, signal_log
):
    payments = native(5)
    not_due = services.create_native_payment("4.00")
    motp_sandbox.pay(payments[0].out_trade_no)
    make_due(*payments)
    enqueued.clear()

    assert services.check_due(threads=3) == 5

    assert motp_sandbox.calls("check_payment") == 5
    assert not enqueued  # the schedule stays in the rows: no message per check
    paid = Payment.objects.get(pk=payments[0].pk)
    assert paid.status == S.SUCCEEDED
    assert paid.next_check_at is None
    assert signal_names(signal_log).count("payment_succeeded") == 1
    now = timezone.now()
    for payment in Payment.objects.filter(pk__in=[p.pk for p in payments[1:]]):
        assert payment.status == S.PENDING
        assert payment.checking_until is None  # the claim is over
        assert now < payment.next_check_at <= now + timedelta(seconds=3)
    assert Payment.objects.get(pk=not_due.pk).next_check_at == not_due.next_check_at
    assert ApiCall.objects.filter(operation="check_payment").count() == 5


def test_nothing_due_checks_nothing(motp_sandbox):
    native(2)
    assert services.check_due() == 0
    assert motp_sandbox.calls("check_payment") == 0


def test_a_quick_payment_past_its_deadline_expires_and_gets_its_late_checks(
    motp_sandbox, signal_log
):
    payment = services.create_quick_payment("5.00", AUTH_CODE_NEVER_PAID)
    assert payment.status == S.PENDING
    past = timezone.now() - timedelta(seconds=1)
    Payment.objects.filter(pk=payment.pk).update(deadline_at=past, next_check_at=past)

    assert services.check_due() == 1

    payment.refresh_from_db()
    assert payment.status == S.EXPIRED
    assert payment.next_check_at is not None  # the late-success watch
    assert signal_names(signal_log).count("payment_expired") == 1
    motp_sandbox.pay(payment.out_trade_no)
    make_due(payment)
    assert services.check_due() == 1
    payment.refresh_from_db()
    assert payment.status == S.SUCCEEDED
    event = Event.objects.get(payment=payment, signal="payment_succeeded")
    assert event.late is True


def test_refunds_are_settled_in_the_same_batch(motp_sandbox, enqueued, signal_log):
    motp_sandbox.configure(refund_delay=60)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "2.00")
    assert refund.status == R.PENDING
    unpaid = services.create_native_payment("1.00")
    motp_sandbox.configure(refund_delay=0)
    make_due(refund, unpaid)

    assert services.check_due() == 2

    refund.refresh_from_db()
    assert refund.status == R.SUCCEEDED
    assert Payment.objects.get(pk=payment.pk).refunded_amount == refund.amount
    assert signal_names(signal_log).count("refund_succeeded") == 1
    assert Payment.objects.get(pk=unpaid.pk).status == S.PENDING


@pytest.mark.parametrize("kind", ["502", "reset", "cutoff", "html"])
def test_a_check_without_an_answer_keeps_the_payment_pending(motp_sandbox, kind, signal_log):
    [payment] = native(1)
    motp_sandbox.pay(payment.out_trade_no)
    motp_sandbox.fault(kind, "check_payment", when="before", count=3)
    make_due(payment)

    assert services.check_due() == 1

    payment.refresh_from_db()
    assert payment.status == S.PENDING
    assert payment.checking_until is None
    assert payment.next_check_at > timezone.now()
    assert "payment_succeeded" not in signal_names(signal_log)
    make_due(payment)  # the gateway answers again
    assert services.check_due() == 1
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert signal_names(signal_log).count("payment_succeeded") == 1


def test_an_answer_lost_after_the_gateway_acted_is_settled_by_the_next_check(
    motp_sandbox, signal_log
):
    motp_sandbox.configure(refund_delay=0)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    motp_sandbox.fault("reset", "refund", when="after")
    refund = services.refund_payment(payment, "3.00")
    assert refund.status == R.CREATED  # the gateway took it; we did not hear
    past = timezone.now() - timedelta(seconds=1)
    Refund.objects.filter(pk=refund.pk).update(next_check_at=past, created_at=past - timedelta(1))

    assert services.check_due() == 1

    refund.refresh_from_db()
    assert refund.status == R.SUCCEEDED
    assert len(motp_sandbox.refunds(payment.out_trade_no)) == 1  # never sent twice
    assert signal_names(signal_log).count("refund_succeeded") == 1


def test_two_checkers_racing_check_each_row_once(motp_sandbox, signal_log):
    payments = native(12)
    for payment in payments[:4]:
        motp_sandbox.pay(payment.out_trade_no)
    make_due(*payments)

    made = at_once(lambda: services.check_due(threads=4), times=2)

    assert sum(made) == 12
    assert motp_sandbox.calls("check_payment") == 12
    assert signal_names(signal_log).count("payment_succeeded") == 4
    assert Event.objects.filter(signal="payment_succeeded").count() == 4


@pytest.mark.postgres
def test_two_checkers_racing_on_postgresql_split_the_rows(motp_sandbox, signal_log):
    payments = native(30)
    for payment in payments[::3]:
        motp_sandbox.pay(payment.out_trade_no)
    make_due(*payments)

    made = at_once(lambda: services.check_due(threads=4), times=3)

    assert sum(made) == 30
    assert motp_sandbox.calls("check_payment") == 30
    assert Payment.objects.filter(status=S.SUCCEEDED).count() == 10
    assert signal_names(signal_log).count("payment_succeeded") == 10


def test_a_row_held_by_another_checker_is_left_to_it(motp_sandbox):
    first, second = native(2)
    make_due(first, second)
    claimed = services.claim_check(Payment, first.pk, None)  # a per-row poll holds it
    assert claimed is not None

    assert services.check_due() == 1

    assert motp_sandbox.calls("check_payment") == 1
    assert Payment.objects.get(pk=first.pk).checking_until == claimed.checking_until


def test_a_check_that_raises_is_backed_off_and_the_others_go_on(motp_sandbox, monkeypatch):
    broken, fine = native(2)
    make_due(broken, fine)
    real = batch.check_payment_claimed

    def check(payment):
        if payment.pk == broken.pk:
            raise RuntimeError("a receiver's bug")
        return real(payment)

    monkeypatch.setattr(batch, "check_payment_claimed", check)

    assert services.check_due() == 1

    broken.refresh_from_db()
    assert broken.checking_until is None
    assert broken.next_check_at > timezone.now() + timedelta(seconds=30)  # not at full speed
    assert Payment.objects.get(pk=fine.pk).checking_until is None


def test_a_database_error_frees_the_row_for_a_check_soon(motp_sandbox, monkeypatch):
    [payment] = native(1)
    make_due(payment)

    def check(obj):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(batch, "check_payment_claimed", check)

    assert services.check_due() == 0

    payment.refresh_from_db()
    assert payment.checking_until is None
    assert payment.next_check_at <= timezone.now() + timedelta(seconds=3)
    monkeypatch.undo()
    make_due(payment)
    assert services.check_due() == 1


def test_the_backlog_bounds_what_one_claim_takes(motp_sandbox):
    payments = native(6)
    make_due(*payments)
    with services.BatchChecker(threads=2, backlog=4) as checker:
        assert checker.claim() == 4
        checker.wait()
        assert checker.claim() == 2
    assert motp_sandbox.calls("check_payment") == 6
    assert not Payment.objects.filter(checking_until__isnull=False).exists()
