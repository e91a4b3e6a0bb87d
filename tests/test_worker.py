"""A real Celery worker consuming from Redis, polling the sandbox gateway until settled.

The worker runs in a thread of this process (Celery's own test worker), so the signals it sends
reach the receivers of the test.
"""

from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from django_motp import services, tasks
from django_motp.models import ApiCall, Payment, Refund
from django_motp.testing import (
    AUTH_CODE_PIN,
    AUTH_CODE_USERPAYING,
)
from tests.helpers import redis_worker, signal_names, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

S = Payment.Status


def succeeded_count(signal_log):
    return signal_names(signal_log).count("payment_succeeded")


def status_of(obj):
    return type(obj).objects.values_list("status", flat=True).get(pk=obj.pk)


def test_userpaying_quick_pay_settles_and_signals_once(worker, motp_sandbox, signal_log):
    motp_sandbox.configure(pay_delay=2)
    payment = services.create_quick_payment("8.80", AUTH_CODE_USERPAYING)
    assert payment.status == S.PENDING
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=15)
    # Delivered on commit, just after the status is visible.
    wait_until(lambda: succeeded_count(signal_log) >= 1, timeout=5)
    assert succeeded_count(signal_log) == 1


def test_pin_slower_than_the_call_timeout_settles_by_polling(
    worker, motp_sandbox, motp_settings, signal_log
):
    motp_settings(QUICK_PAY_TIMEOUT=1)
    motp_sandbox.configure(pin_delay=3)
    payment = services.create_quick_payment("8.80", AUTH_CODE_PIN)
    assert payment.status == S.PENDING
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=15)
    # Delivered on commit, just after the status is visible.
    wait_until(lambda: succeeded_count(signal_log) >= 1, timeout=5)
    assert succeeded_count(signal_log) == 1


def test_native_qr_paid_by_the_buyer_settles_at_the_next_poll(worker, motp_sandbox, signal_log):
    payment = services.create_native_payment("12.00")
    wait_until(lambda: motp_sandbox.calls("check_payment") >= 1, timeout=10)  # polling runs
    paid = requests.post(
        f"{motp_sandbox.url}/_sandbox/orders/{payment.out_trade_no}/pay", timeout=5
    )
    assert paid.json()["data"]["status"] == "SUCCESS"  # the buyer's phone, over HTTP
    checks_before = motp_sandbox.calls("check_payment")
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=15)
    # Delivered on commit, just after the status is visible.
    wait_until(lambda: succeeded_count(signal_log) >= 1, timeout=5)
    assert succeeded_count(signal_log) == 1
    # Seen at the next check (or the one after, if a check was on its way as the buyer paid),
    # and not checked again once settled.
    assert motp_sandbox.calls("check_payment") - checks_before in (1, 2)


def test_processing_refund_settles(worker, processing_refund, motp_sandbox, signal_log):
    wait_until(lambda: motp_sandbox.calls("check_refund") >= 1, timeout=15)  # polling runs
    assert status_of(processing_refund) == Refund.Status.PENDING
    motp_sandbox.configure(refund_delay=0)  # the wallet pays the buyer back
    wait_until(lambda: status_of(processing_refund) == Refund.Status.SUCCEEDED, timeout=15)
    payment = Payment.objects.get(pk=processing_refund.payment_id)
    assert payment.refunded_amount == Decimal("4.00")
    wait_until(lambda: "refund_succeeded" in signal_names(signal_log), timeout=5)
    assert signal_names(signal_log).count("refund_succeeded") == 1


def test_payment_whose_task_was_lost_is_recovered_by_the_sweep(
    worker, motp_sandbox, monkeypatch, signal_log
):
    monkeypatch.setattr(tasks, "enqueue_poll", lambda obj: False)  # the message is lost
    payment = services.create_native_payment("6.00")
    motp_sandbox.pay(payment.out_trade_no)
    monkeypatch.undo()
    wait_until(lambda: Payment.objects.get(pk=payment.pk).next_check_at <= timezone.now())
    assert status_of(payment) == S.PENDING
    tasks.sweep.delay()
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=10)
    # Delivered on commit, just after the status is visible.
    wait_until(lambda: succeeded_count(signal_log) >= 1, timeout=5)
    assert succeeded_count(signal_log) == 1


# The prefork pool forks its process from this multi-threaded one (the sandbox serves from
# threads); the child only talks to the sandbox over sockets and opens its own database
# connection, so no lock another thread held at the fork is ever needed in it.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_poll_stuck_past_its_time_limit_is_killed_and_the_sweep_takes_the_check_over(
    transactional_db, motp_sandbox, motp_settings, signal_log
):
    from celery.worker import state as worker_state

    # The worker's process is forked while the client's timeout is 30 s, and its polls are sent
    # with the limits of a 0.25 s timeout: a call stuck far beyond what the settings promise.
    motp_settings(TIMEOUT=30)
    with redis_worker(pool="prefork"):
        motp_settings(TIMEOUT=0.25, POLL_INTERVAL=0.5)
        motp_sandbox.configure(slow_delay=600)
        motp_sandbox.fault("slow", operation="check_payment")
        payment = services.create_native_payment("7.00")
        motp_sandbox.pay(payment.out_trade_no)
        wait_until(lambda: motp_sandbox.calls("check_payment") == 1, timeout=30)  # stuck
        # Killed at its time limit (about 4 s), long before its own call would time out (30 s)
        # and gone without a word: a call that ended would have been logged.
        wait_until(lambda: not worker_state.active_requests, timeout=20, step=0.1)
        assert not ApiCall.objects.filter(operation="check_payment").exists()
        assert status_of(payment) == S.PENDING
        # Its claim's lease runs out; the sweep takes the check over.
        now = timezone.now()
        Payment.objects.filter(pk=payment.pk).update(next_check_at=now, checking_until=now)
        assert tasks.sweep(inline=True) == 1
    assert status_of(payment) == S.SUCCEEDED
    assert motp_sandbox.calls("check_payment") == 2
    # Delivered on commit, just after the status is visible.
    wait_until(lambda: succeeded_count(signal_log) >= 1, timeout=5)
    assert succeeded_count(signal_log) == 1
