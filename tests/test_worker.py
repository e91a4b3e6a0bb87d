"""A real Celery worker consuming from Redis, polling the sandbox gateway until settled.

The worker runs in a thread of this process (Celery's own test worker), so the signals it sends
reach the receivers of the test.
"""

import os
from datetime import timedelta

import pytest
import requests
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from django_motp import services, tasks
from django_motp.models import Payment, Refund
from django_motp.testing import (
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_USERPAYING,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("MOTP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
S = Payment.Status


@pytest.fixture
def worker(transactional_db, motp_sandbox):
    """A Celery app on Redis made the default, and a worker consuming its queue."""
    from tests.celery_app import app as memory_app

    app = Celery("django-motp-worker-tests", broker=REDIS_URL)
    app.conf.update(
        task_default_queue=f"django-motp-tests-{os.getpid()}",  # runs sharing Redis stay apart
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=False,
    )
    app.set_default()
    app.set_current()
    app.finalize()
    app.control.purge()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield app
    finally:
        memory_app.set_default()
        memory_app.set_current()


def succeeded_count(signal_log):
    return [e[0] for e in signal_log].count("payment_succeeded")


def status_of(obj):
    return type(obj).objects.values_list("status", flat=True).get(pk=obj.pk)


def test_userpaying_quick_pay_settles_and_signals_once(worker, motp_sandbox, signal_log):
    motp_sandbox.configure(pay_delay=2)
    payment = services.create_quick_payment("8.80", AUTH_CODE_USERPAYING)
    assert payment.status == S.PENDING
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=15)
    assert succeeded_count(signal_log) == 1


def test_pin_slower_than_the_call_timeout_settles_by_polling(
    worker, motp_sandbox, settings, signal_log
):
    settings.MOTP = {**settings.MOTP, "QUICK_PAY_TIMEOUT": 1}
    motp_sandbox.configure(pin_delay=3)
    payment = services.create_quick_payment("8.80", AUTH_CODE_PIN)
    assert payment.status == S.PENDING
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=15)
    assert succeeded_count(signal_log) == 1


def test_native_qr_paid_by_the_buyer_settles_within_one_poll_interval(
    worker, motp_sandbox, signal_log
):
    payment = services.create_native_payment("12.00")
    wait_until(lambda: motp_sandbox.calls("check_payment") >= 1, timeout=10)  # polling runs
    paid = requests.post(
        f"{motp_sandbox.url}/_sandbox/orders/{payment.out_trade_no}/pay", timeout=5
    )
    assert paid.json()["data"]["status"] == "SUCCESS"  # the buyer's phone, over HTTP
    wait_until(lambda: status_of(payment) == S.SUCCEEDED, timeout=3 + 1)
    assert succeeded_count(signal_log) == 1


@pytest.mark.slow
def test_never_paid_quick_pay_expires_after_45_seconds(worker, motp_sandbox, signal_log):
    payment = services.create_quick_payment("5.00", AUTH_CODE_NEVER_PAID)
    assert payment.status == S.PENDING
    wait_until(lambda: status_of(payment) == S.EXPIRED, timeout=45 + 10, step=0.5)
    payment.refresh_from_db()
    assert payment.settled_at >= payment.created_at + timedelta(seconds=45)
    assert [e[0] for e in signal_log].count("payment_expired") == 1
    assert motp_sandbox.calls("check_payment") >= 10  # every 3 s, as the spec advises


def test_processing_refund_settles(worker, motp_sandbox, signal_log):
    motp_sandbox.configure(refund_delay=0)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    motp_sandbox.configure(refund_delay=2)
    refund = services.refund_payment(payment, "6.00")
    assert refund.status == Refund.Status.PENDING
    wait_until(lambda: status_of(refund) == Refund.Status.SUCCEEDED, timeout=15)
    payment.refresh_from_db()
    assert payment.refunded_amount == refund.amount
    assert [e[0] for e in signal_log].count("refund_succeeded") == 1


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
    assert succeeded_count(signal_log) == 1
