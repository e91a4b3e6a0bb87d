"""Polling decisions and the sweep, without a worker: tasks run in this process, and the
polls they enqueue are caught on their way to the broker."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import Retry
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.db.models import F
from django.utils import timezone

from django_motp import services, tasks
from django_motp.conf import motp_settings
from django_motp.models import Payment, Refund
from django_motp.testing import AUTH_CODE_DECLINED, AUTH_CODE_PAID, AUTH_CODE_REFUND_PROCESSING
from tests.helpers import at_once

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status


@pytest.fixture
def enqueued(monkeypatch):
    """The polls sent to the broker, as (task name, args, kwargs, countdown)."""
    sent = []

    def recorder(task):
        def apply_async(args=(), kwargs=None, countdown=None, **options):
            sent.append((task.name, tuple(args or ()), kwargs or {}, countdown))

        return apply_async

    for task in (tasks.poll_payment, tasks.poll_refund):
        monkeypatch.setattr(task, "apply_async", recorder(task))
    return sent


def make_due(obj):
    """Bring the row's next check to now, as if its time had come."""
    type(obj).objects.filter(pk=obj.pk).update(next_check_at=timezone.now())
    obj.refresh_from_db()
    return obj.next_check_at


def test_tasks_are_registered_under_their_contract_names():
    assert tasks.poll_payment.name == "django_motp.tasks.poll_payment"
    assert tasks.poll_refund.name == "django_motp.tasks.poll_refund"
    assert tasks.sweep.name == "django_motp.tasks.sweep"
    for task in (tasks.poll_payment, tasks.poll_refund):
        assert task.acks_late is True
        assert task.ignore_result is True
        assert task.time_limit > 45


def test_the_first_poll_is_enqueued_once_the_row_is_committed(motp_sandbox, monkeypatch):
    seen_by_another_connection = []

    def apply_async(kwargs=None, countdown=None, **options):
        def look():
            try:
                seen_by_another_connection.append(
                    Payment.objects.filter(pk=kwargs["payment_id"], status=S.PENDING).exists()
                )
            finally:
                connection.close()

        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
        sent.append((kwargs, countdown))

    sent = []
    monkeypatch.setattr(tasks.poll_payment, "apply_async", apply_async)
    payment = services.create_native_payment("3.00")
    [(kwargs, countdown)] = sent
    assert seen_by_another_connection == [True]  # a worker can load it
    payment.refresh_from_db()
    assert kwargs == {"payment_id": payment.pk, "due": payment.next_check_at.isoformat()}
    assert 2 <= countdown <= 3


def test_a_settled_payment_enqueues_nothing(motp_sandbox, enqueued):
    services.create_quick_payment("3.00", AUTH_CODE_PAID)
    assert enqueued == []


def test_a_far_off_late_check_is_left_to_the_sweep(motp_sandbox, enqueued, settings):
    settings.MOTP = {**settings.MOTP, "LATE_CHECKS": [1800]}
    payment = services.create_quick_payment("3.00", AUTH_CODE_DECLINED)
    assert payment.status == S.FAILED
    assert payment.next_check_at > timezone.now() + timedelta(seconds=tasks.MAX_COUNTDOWN)
    assert enqueued == []


def test_late_checks_within_the_countdown_window_are_enqueued(motp_sandbox, enqueued, settings):
    settings.MOTP = {**settings.MOTP, "LATE_CHECKS": [60, 3600]}
    payment = services.create_quick_payment("3.00", AUTH_CODE_DECLINED)
    [(_, _, kwargs, countdown)] = enqueued
    assert 59 <= countdown <= 60
    Payment.objects.filter(pk=payment.pk).update(settled_at=F("settled_at") - timedelta(seconds=60))
    tasks.poll_payment.run(**kwargs)  # its time has come
    payment.refresh_from_db()
    assert payment.late_checks_done == 1
    assert len(enqueued) == 1  # the 3600 s check is beyond MAX_COUNTDOWN: the sweep's


def test_poll_checks_once_and_schedules_the_next(motp_sandbox, enqueued):
    payment = services.create_native_payment("3.00")
    due = make_due(payment)
    tasks.poll_payment.run(payment.pk, due=due.isoformat())
    assert motp_sandbox.calls("check_payment") == 1
    payment.refresh_from_db()
    assert payment.status == S.PENDING
    assert enqueued[-1][2] == {"payment_id": payment.pk, "due": payment.next_check_at.isoformat()}


def test_a_duplicate_delivery_does_nothing(motp_sandbox, enqueued):
    payment = services.create_native_payment("3.00")
    due = make_due(payment).isoformat()
    tasks.poll_payment.run(payment.pk, due=due)
    tasks.poll_payment.run(payment.pk, due=due)
    assert motp_sandbox.calls("check_payment") == 1


def test_two_workers_polling_at_the_same_moment_check_once(motp_sandbox, signal_log, enqueued):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    due = make_due(payment).isoformat()
    assert at_once(lambda: tasks.poll_payment.run(payment.pk, due=due)) == [None, None]
    assert motp_sandbox.calls("check_payment") == 1
    assert [e[0] for e in signal_log].count("payment_succeeded") == 1


def test_a_poll_that_is_not_due_does_nothing(motp_sandbox, enqueued):
    payment = services.create_native_payment("3.00")
    tasks.poll_payment.run(payment.pk)  # no due given, and the row is not due yet
    tasks.poll_payment.run(payment.pk, due=timezone.now().isoformat())  # an outdated schedule
    assert motp_sandbox.calls("check_payment") == 0


def test_poll_refund_settles_a_processing_refund(motp_sandbox, enqueued):
    motp_sandbox.configure(refund_delay=0)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    motp_sandbox.configure(refund_delay=60)
    refund = services.refund_payment(payment, "2.00")
    assert refund.status == Refund.Status.PENDING
    motp_sandbox.configure(refund_delay=0)
    tasks.poll_refund.run(refund.pk, due=make_due(refund).isoformat())
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED


def test_a_transient_database_error_is_retried_under_the_same_claim(
    motp_sandbox, enqueued, monkeypatch
):
    payment = services.create_native_payment("3.00")
    due = make_due(payment).isoformat()
    real_check = services.check_claimed

    def flaky(obj):
        monkeypatch.setattr(services, "check_claimed", real_check)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "check_claimed", flaky)
    retried = []
    monkeypatch.setattr(
        tasks.poll_payment, "retry", lambda **kw: retried.append(kw) or Retry("retrying")
    )
    with pytest.raises(Retry):
        tasks.poll_payment.run(payment.pk, due=due)
    [retry] = retried
    lease = Payment.objects.get(pk=payment.pk).next_check_at
    assert retry["kwargs"] == {"payment_id": payment.pk, "due": lease.isoformat()}
    assert 0 <= retry["countdown"] <= 1
    tasks.poll_payment.run(**retry["kwargs"])  # the retry holds the claim and checks
    assert motp_sandbox.calls("check_payment") == 1


def test_broker_down_never_breaks_a_payment(motp_sandbox, monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.poll_payment, "apply_async", unreachable)
    payment = services.create_native_payment("3.00")
    assert payment.status == S.PENDING
    assert "sweep will take it" in caplog.text


def test_eager_mode_does_not_chain_polls(motp_sandbox, settings):
    tasks.poll_payment.app.conf.task_always_eager = True
    try:
        payment = services.create_native_payment("3.00")
    finally:
        tasks.poll_payment.app.conf.task_always_eager = False
    assert payment.status == S.PENDING
    assert motp_sandbox.calls("check_payment") == 0


# The sweep ---------------------------------------------------------------------------------------


def test_sweep_claims_due_rows_once_and_hands_them_to_polls(motp_sandbox, enqueued):
    due_payment = services.create_native_payment("3.00")
    later = services.create_native_payment("4.00")
    make_due(due_payment)
    enqueued.clear()
    assert tasks.sweep() == 1
    [(_, _, kwargs, _)] = enqueued
    assert kwargs["payment_id"] == due_payment.pk
    assert kwargs["due"] == Payment.objects.get(pk=due_payment.pk).next_check_at.isoformat()
    assert tasks.sweep() == 0  # claimed: not due again until its lease runs out
    assert Payment.objects.get(pk=later.pk).next_check_at > timezone.now()


def test_a_lost_task_is_recovered_by_the_sweep(motp_sandbox, enqueued, signal_log):
    payment = services.create_native_payment("3.00")
    enqueued.clear()  # the message was lost
    motp_sandbox.pay(payment.out_trade_no)
    make_due(payment)
    assert tasks.sweep(inline=True) == 1
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert ("payment_succeeded", payment.pk) in signal_log


def test_a_dead_workers_claim_is_taken_over_when_its_lease_runs_out(motp_sandbox, enqueued):
    payment = services.create_native_payment("3.00")
    make_due(payment)
    assert tasks.sweep() == 1  # handed to a worker that dies without checking
    assert tasks.sweep() == 0
    ran_out = timezone.now() - timedelta(seconds=1)  # the lease ran out
    Payment.objects.filter(pk=payment.pk).update(next_check_at=ran_out, checking_until=ran_out)
    assert tasks.sweep(inline=True) == 1
    assert motp_sandbox.calls("check_payment") == 1


def test_sweep_takes_refunds_too(motp_sandbox, enqueued):
    motp_sandbox.configure(refund_delay=60)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "1.00")
    motp_sandbox.configure(refund_delay=0)
    make_due(refund)
    assert tasks.sweep(inline=True) == 1
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.SUCCEEDED


def test_sweep_runs_polls_inline_when_the_broker_is_down(motp_sandbox, monkeypatch):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    make_due(payment)

    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.poll_payment, "apply_async", unreachable)
    assert tasks.sweep() == 1
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED


# motp_sync -------------------------------------------------------------------------------------


def test_motp_sync_checks_everything_unsettled(motp_sandbox, enqueued, capsys):
    paid = services.create_native_payment("3.00")
    unpaid = services.create_native_payment("4.00")
    services.create_quick_payment("5.00", AUTH_CODE_PAID)  # settled: not checked
    motp_sandbox.pay(paid.out_trade_no)
    call_command("motp_sync")
    out = capsys.readouterr().out
    assert "Checked 2: 1 payments pending, 1 payments succeeded." in out
    assert "[" + "#" * 30 + "] 2/2" in out
    assert Payment.objects.get(pk=unpaid.pk).status == S.PENDING


def test_motp_sync_checks_given_numbers(motp_sandbox, enqueued, capsys):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    call_command("motp_sync", payment.out_trade_no)
    assert "Checked 1: 1 payments succeeded." in capsys.readouterr().out
    with pytest.raises(CommandError, match="NOPE-1"):
        call_command("motp_sync", "NOPE-1")


def test_motp_sync_with_nothing_to_do(motp_sandbox, capsys):
    call_command("motp_sync")
    assert "Nothing to check" in capsys.readouterr().out


def test_payment_amounts_stay_decimal_through_a_poll(motp_sandbox, enqueued):
    payment = services.create_native_payment("19.90")
    motp_sandbox.pay(payment.out_trade_no)
    tasks.poll_payment.run(payment.pk, due=make_due(payment).isoformat())
    payment.refresh_from_db()
    assert payment.amount == Decimal("19.90")
    assert payment.status == S.SUCCEEDED


def test_polls_are_killed_before_their_claim_can_pass_to_another_worker(motp_sandbox, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.poll_payment, "apply_async", lambda **options: sent.append(options))
    payment = services.create_native_payment("3.00")
    make_due(payment)
    tasks.sweep()
    assert len(sent) == 2  # the first poll, and the sweep's
    for options in sent:
        assert options["soft_time_limit"] < options["time_limit"] < services.claim_lease()
        assert options["soft_time_limit"] > 2 * motp_settings.TIMEOUT  # a check and its retry
