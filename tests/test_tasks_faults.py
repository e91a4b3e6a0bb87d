"""Polls and the sweep when the infrastructure fails: a broker that is down (a real Celery app on a
loopback port where nothing listens, so kombu's own connection retries run), and database errors
inside a check, through its retries to their end, and inside the claim itself."""

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from django_motp import services, tasks
from django_motp.models import Payment
from tests.helpers import database_fails, signal_names

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status


def make_due(obj: Any) -> str:
    """Bring the row's next check to now, as if its time (or its claim's lease) had come; the
    ``due`` a poll for it carries."""
    now = timezone.now()
    type(obj).objects.filter(pk=obj.pk).update(next_check_at=now, checking_until=now)
    obj.refresh_from_db()
    return obj.next_check_at.isoformat()


def is_claim(sql: str) -> bool:
    """A claim: the UPDATE that moves only a payment's ``next_check_at`` (a lease ahead)."""
    head = sql.split(" WHERE ")[0]
    columns = set(re.findall(r'"(\w+)" =', head))
    return head.startswith('UPDATE "django_motp_payment" SET') and columns == {
        "next_check_at",
        "checking_until",
    }


def after_each_claim() -> Callable[[str], bool]:
    """The database goes away right after each claim: the claim holds, the check's next query
    (whatever it is) fails."""
    claimed = [False]

    def when(sql: str) -> bool:
        if claimed[0]:
            claimed[0] = False
            return True
        claimed[0] = is_claim(sql)
        return False

    return when


def first_claim() -> Callable[[str], bool]:
    """The first claim fails, nothing else."""
    done = [False]

    def when(sql: str) -> bool:
        if done[0] or not is_claim(sql):
            return False
        done[0] = True
        return True

    return when


# The broker is down ------------------------------------------------------------------------------


def test_a_payment_goes_ahead_when_the_broker_is_down(broker_down, motp_sandbox, caplog):
    payment = services.create_native_payment("3.00")
    assert payment.status == S.PENDING
    assert payment.qr_code  # the cashier can show it
    saved = Payment.objects.get(pk=payment.pk)
    assert (saved.status, saved.next_check_at) == (S.PENDING, payment.next_check_at)
    assert "the sweep will take it" in caplog.text  # after kombu's retries gave up


def test_the_sweep_checks_inline_when_the_broker_is_down(broker_down, motp_sandbox, signal_log):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    make_due(payment)
    assert tasks.sweep() == 1
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert signal_names(signal_log).count("payment_succeeded") == 1


# Database errors -------------------------------------------------------------------------------


def test_a_poll_whose_database_keeps_failing_gives_up_and_leaves_the_check_to_the_sweep(
    motp_sandbox, signal_log
):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    due = make_due(payment)
    attempts = tasks.poll_payment.max_retries + 1
    with database_fails(after_each_claim()) as failed:
        # Run as a worker would, retries included (eagerly: their countdowns are not waited).
        result = tasks.poll_payment.apply(kwargs={"payment_id": payment.pk, "due": due})
    assert result.failed()
    assert isinstance(result.result, OperationalError)
    assert len(failed) == attempts
    assert motp_sandbox.calls("check_payment") <= attempts  # never more than one per claim
    payment.refresh_from_db()
    # Nothing applied and nothing lost: still pending, claimed until the last lease runs out.
    assert payment.status == S.PENDING
    assert payment.next_check_at > timezone.now()
    assert signal_names(signal_log).count("payment_succeeded") == 0
    make_due(payment)  # the lease ran out
    assert tasks.sweep(inline=True) == 1
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert signal_names(signal_log).count("payment_succeeded") == 1


def test_a_database_error_inside_the_claim_loses_no_check(motp_sandbox, signal_log):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    due = make_due(payment)
    with database_fails(first_claim()) as failed:
        tasks.poll_payment.apply(kwargs={"payment_id": payment.pk, "due": due})
    assert len(failed) == 1
    # Whether the poll retried or gave up, the row was not left claimed by nobody: it is
    # settled, or still due for the next sweep.
    tasks.sweep(inline=True)
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert motp_sandbox.calls("check_payment") == 1
    assert signal_names(signal_log).count("payment_succeeded") == 1


def test_a_database_error_inside_the_sweeps_claim_loses_no_check(motp_sandbox, signal_log):
    payment = services.create_native_payment("3.00")
    motp_sandbox.pay(payment.out_trade_no)
    make_due(payment)
    with (
        database_fails(lambda sql: sql.startswith('UPDATE "django_motp_payment"')) as failed,
        pytest.raises(OperationalError),
    ):
        tasks.sweep(inline=True)
    assert failed
    assert motp_sandbox.calls("check_payment") == 0
    assert Payment.objects.get(pk=payment.pk).next_check_at <= timezone.now()  # still due
    assert tasks.sweep(inline=True) == 1  # the next sweep
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert signal_names(signal_log).count("payment_succeeded") == 1
