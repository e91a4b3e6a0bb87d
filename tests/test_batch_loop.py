"""The ``poll_due`` task: the loop that claims due checks in batches, one loop per process, and
keeps itself going; with a real worker on Redis it settles what the per-row polls settle."""

import threading

import pytest
from django.core.cache import cache
from django.utils import timezone

from django_motp import services, tasks
from django_motp.models import Event, Payment
from django_motp.services import batch
from django_motp.testing import AUTH_CODE_PAID, AUTH_CODE_USERPAYING
from tests.helpers import database_fails, signal_names, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status


@pytest.fixture(autouse=True)
def _no_loop_left():
    """A loop a test ran (in a worker thread too) leaves no mark on the next test."""
    yield
    tasks._shutting_down.clear()
    cache.delete(tasks.LOOP_ALIVE_KEY)


@pytest.fixture
def successors(monkeypatch):
    """The ``poll_due`` tasks each loop sends to take over, as their options."""
    sent = []
    monkeypatch.setattr(tasks.poll_due, "apply_async", lambda **options: sent.append(options))
    return sent


def make_due(*objs):
    for obj in objs:
        type(obj).objects.filter(pk=obj.pk).update(next_check_at=timezone.now())


def test_the_loop_is_registered_under_its_name():
    assert tasks.poll_due.name == "django_motp.tasks.poll_due"
    assert tasks.poll_due.ignore_result is True


def test_the_loop_checks_what_is_due_and_hands_over_to_the_next(
    motp_sandbox, successors, signal_log
):
    paid, unpaid = (services.create_native_payment("2.00") for _ in range(2))
    motp_sandbox.pay(paid.out_trade_no)
    make_due(paid, unpaid)

    assert tasks.poll_due.run(seconds=0.3, threads=2) == 2

    assert Payment.objects.get(pk=paid.pk).status == S.SUCCEEDED
    assert signal_names(signal_log).count("payment_succeeded") == 1
    assert Payment.objects.get(pk=unpaid.pk).checking_until is None
    [successor] = successors
    assert successor["kwargs"] == {"seconds": 0.3, "threads": 2}
    assert successor["expires"] >= 0.3


def test_one_loop_per_process_at_a_time(motp_sandbox, successors, monkeypatch):
    [payment] = [services.create_native_payment("2.00")]
    make_due(payment)
    started, go_on = threading.Event(), threading.Event()
    real = batch.check_payment_claimed

    def held(obj):
        started.set()
        go_on.wait(10)
        return real(obj)

    monkeypatch.setattr(batch, "check_payment_claimed", held)
    outcome: list = []
    # Celery's current app is per thread: the loop's thread must see the task ``successors``
    # patched, whatever default app an earlier test left behind.
    app = tasks.poll_due.app

    def run_first():
        app.set_current()
        try:
            outcome.append(tasks.poll_due.run(seconds=0.2, threads=1))
        except Exception as err:
            outcome.append(err)

    first = threading.Thread(target=run_first)
    first.start()
    try:
        assert started.wait(10)
        assert tasks.poll_due.run(seconds=0.2, threads=1) == 0  # the loop runs already
    finally:
        go_on.set()
        first.join()
    assert outcome == [1]  # the first loop made the check and ended normally
    assert motp_sandbox.calls("check_payment") == 1
    assert len(successors) == 1  # only the loop that ran hands over


def test_a_warm_shutdown_ends_the_loop_without_a_successor(motp_sandbox, successors):
    tasks._shutting_down.set()
    try:
        assert tasks.poll_due.run(seconds=30, threads=1) == 0
    finally:
        tasks._shutting_down.clear()
    assert successors == []


def test_a_poll_for_a_row_the_loop_took_does_nothing(motp_sandbox, successors, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks, "_send", lambda task, kwargs, countdown=0: sent.append(kwargs))
    payment = services.create_native_payment("2.00")
    [first_poll] = sent  # creating it sends its first check, with a countdown
    make_due(payment)
    due = Payment.objects.get(pk=payment.pk).next_check_at.isoformat()
    assert services.check_due() == 1  # the loop was first

    tasks.poll_payment.run(payment.pk, due=due)

    assert motp_sandbox.calls("check_payment") == 1
    assert sent == [first_poll]  # the loop's check sent no poll either


@pytest.mark.redis
def test_a_real_worker_running_the_loop_settles_payments(worker, motp_sandbox, signal_log):
    motp_sandbox.configure(pay_delay=1)
    quick = services.create_quick_payment("8.80", AUTH_CODE_USERPAYING)
    qr = services.create_native_payment("3.30")
    make_due(quick, qr)
    motp_sandbox.pay(qr.out_trade_no)

    tasks.poll_due.apply_async(kwargs={"seconds": 2.0, "threads": 4})

    wait_until(
        lambda: set(Payment.objects.values_list("status", flat=True)) == {S.SUCCEEDED},
        timeout=20,
    )
    wait_until(lambda: signal_names(signal_log).count("payment_succeeded") == 2)
    assert signal_names(signal_log).count("payment_succeeded") == 2


def test_a_claim_that_meets_a_database_error_does_not_end_the_loop(motp_sandbox, successors):
    [payment] = [services.create_native_payment("2.00")]
    make_due(payment)
    first = [True]

    def once(sql):
        failing, first[0] = first[0], False
        return failing

    with database_fails(once) as failed:
        assert tasks.poll_due.run(seconds=1.5, threads=1) == 1

    assert len(failed) == 1
    assert motp_sandbox.calls("check_payment") == 1
    assert len(successors) == 1


def test_a_poll_in_the_process_of_the_loop_leaves_the_check_to_it(motp_sandbox, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks, "_send", lambda task, kwargs, countdown=0: sent.append(kwargs))
    payment = services.create_native_payment("2.00")
    make_due(payment)
    due = Payment.objects.get(pk=payment.pk).next_check_at
    sent.clear()

    with tasks._loop_lock:  # the loop runs in this process
        tasks.poll_payment.run(payment.pk, due=due.isoformat())

    assert motp_sandbox.calls("check_payment") == 0
    assert sent == []  # no chain of polls beside the loop
    assert Payment.objects.get(pk=payment.pk).next_check_at == due  # still due: the loop's
    assert services.check_due() == 1


def test_the_sweep_leaves_due_rows_to_the_loop_of_its_process_and_delivers_events(
    motp_sandbox, monkeypatch, signal_log
):
    sent = []
    monkeypatch.setattr(tasks, "_send", lambda task, kwargs, countdown=0: sent.append(kwargs))
    monkeypatch.setattr("django_motp.services.events.deliver_soon", lambda event: None)
    paid = services.create_quick_payment("2.00", AUTH_CODE_PAID)  # its event waits
    assert paid.status == S.SUCCEEDED
    waiting = services.create_native_payment("2.00")
    make_due(waiting)
    Event.objects.update(next_attempt_at=timezone.now())  # its fast path is overdue
    sent.clear()

    with tasks._loop_lock:
        assert tasks.sweep() == 0

    assert sent == []
    assert Payment.objects.get(pk=waiting.pk).checking_until is None  # left to the loop
    assert signal_names(signal_log).count("payment_succeeded") == 1


def test_while_a_loop_runs_new_checks_are_not_sent_as_polls(motp_sandbox, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks, "_send", lambda task, kwargs, countdown=0: sent.append(kwargs))
    [payment] = [services.create_native_payment("2.00")]
    make_due(payment)
    sent.clear()
    started, go_on = threading.Event(), threading.Event()
    real = batch.check_payment_claimed

    def held(obj):
        started.set()
        go_on.wait(10)
        return real(obj)

    monkeypatch.setattr(batch, "check_payment_claimed", held)
    loop = threading.Thread(target=lambda: tasks.poll_due.run(seconds=0.2, threads=1))
    loop.start()
    try:
        assert started.wait(10)
        assert tasks.loop_alive()
        created = services.create_native_payment("3.00")  # its first check: the loop's
    finally:
        go_on.set()
        loop.join()
    assert sent == []
    assert not tasks.loop_alive()  # a loop that ended says so
    assert tasks.enqueue_poll(created) is True
    assert len(sent) == 1


def test_a_claimed_poll_reaching_the_loop_hands_its_claim_back(motp_sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "_send", lambda task, kwargs, countdown=0: None)
    payment = services.create_native_payment("2.00")
    make_due(payment)
    [pk], lease = services.claim_due(Payment, 10)  # a sweep elsewhere hands it to a poll

    with tasks._loop_lock:
        tasks.poll_payment.run(pk, due=lease.isoformat())

    payment.refresh_from_db()
    assert payment.checking_until is None
    assert payment.next_check_at <= timezone.now()  # due now: the loop's next claim takes it
    assert services.check_due() == 1
