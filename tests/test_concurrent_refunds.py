"""Fifty callers refunding one payment at the same time, on PostgreSQL's real row locks.

Each caller asks again and again for a partial refund of 1.50 of one 10.00 payment until the
service answers that nothing (or not enough) is left. Whatever the interleaving, the refunds
that did not fail never add up to more than was paid: not in our rows, not at the gateway. The
callers are threads of this process, then processes of their own (each with its own database
connection and gateway client), which is how a shop's web workers and Celery workers meet.
"""

from __future__ import annotations

import multiprocessing
from decimal import Decimal

import pytest
from django.db import connection

from django_motp import services
from django_motp.models import Payment, Refund
from django_motp.testing import AUTH_CODE_PAID
from tests import fixtures_campaign
from tests.helpers import at_once

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CALLERS = 50
PAID = Decimal("10.00")
PART = Decimal("1.50")
FIT = 6  # refunds of 1.50 that fit in 10.00 (9.00); a seventh would be 10.50
#: The service's answers that end a caller's loop: the payment cannot take another 1.50.
ENOUGH = {"nothing_left", "too_much"}
#: Answers that only mean "not now, another refund is on its way": ask again.
BUSY = {"refund_in_progress"}


def refund_until_exhausted(payment_pk: int) -> list[str | None]:
    return fixtures_campaign.refund_until_exhausted(payment_pk, PART, ENOUGH, BUSY)


def assert_never_over_refunded(sandbox, payment: Payment) -> None:
    payment.refresh_from_db()
    kept = Refund.objects.filter(payment=payment).exclude(status=Refund.Status.FAILED)
    local_total = sum((r.amount for r in kept), Decimal(0))
    gateway = [r for r in sandbox.refunds(payment.out_trade_no) if r["status"] != "FAILED"]
    gateway_total = sum((r["amount"] for r in gateway), Decimal(0))
    assert local_total == gateway_total == PART * FIT
    assert payment.refunded_amount == PART * FIT <= PAID
    assert payment.refundable_amount == PAID - PART * FIT
    # Every refund we kept is one the gateway has, and the other way round: none sent twice,
    # none the gateway holds that we lost.
    assert sorted(r.out_refund_no for r in kept) == sorted(r["out_refund_no"] for r in gateway)
    assert all(r.status == Refund.Status.SUCCEEDED for r in kept)


def paid_payment() -> Payment:
    payment = services.create_quick_payment(PAID, AUTH_CODE_PAID)
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def test_fifty_threads_never_refund_more_than_was_paid(motp_sandbox):
    payment = paid_payment()
    outcomes = at_once(lambda: refund_until_exhausted(payment.pk), times=CALLERS)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors[:3]
    assert all(o[-1] in ENOUGH for o in outcomes)  # each stopped only for lack of money
    assert_never_over_refunded(motp_sandbox, payment)


def test_fifty_processes_never_refund_more_than_was_paid(motp_sandbox, settings):
    payment = paid_payment()
    # Spawned, not forked: a child forked from this multi-threaded process can inherit a lock
    # held at the fork (libpq's among them) and hang.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(CALLERS)
    results = context.Queue()
    database = connection.settings_dict["NAME"]
    args = (PART, ENOUGH, BUSY)
    children = [
        context.Process(
            target=fixtures_campaign.refund_in_child,
            args=(database, settings.MOTP, payment.pk, args, barrier, results),
        )
        for _ in range(CALLERS)
    ]
    for child in children:
        child.start()
    answers = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert [kind for kind, _ in answers] == ["ok"] * CALLERS, answers
    assert all(seen[-1] in ENOUGH for _, seen in answers)
    assert_never_over_refunded(motp_sandbox, payment)
