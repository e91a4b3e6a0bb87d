"""Refunds against the sandbox gateway: reserving, sending, confirming, resending, refunds
never failed on time alone, settling by hand, and races on PostgreSQL."""

import multiprocessing
import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_motp import services
from django_motp.exceptions import MOTPAPIError
from django_motp.models import ApiCall, Event, Payment, Refund
from django_motp.testing import (
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
)
from tests.fixtures_money import *  # noqa: F403  (the fixtures)
from tests.fixtures_money import move_past_deadline, system_error
from tests.helpers import at_once

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
R = Refund.Status


def test_full_refund(motp_sandbox, signal_log, paid_payment, refund_of):
    payment = paid_payment("10.00")
    refund = refund_of(payment, reason="changed mind")
    assert refund.status == R.SUCCEEDED
    assert refund.amount == Decimal("10.00")
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("10.00")
    assert payment.refundable_amount == Decimal("0")
    assert [e for e in signal_log if e[0].startswith("refund")] == [
        ("refund_status_changed", refund.pk, "created", "pending"),
        ("refund_status_changed", refund.pk, "pending", "succeeded"),
        ("refund_succeeded", refund.pk),
    ]


def test_partial_refunds_add_up(motp_sandbox, paid_payment, refund_of):
    payment = paid_payment("10.00")
    for amount in ("3.00", "2.50", "4.50"):
        assert refund_of(payment, Decimal(amount)).status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("10.00")
    assert sum(r.amount for r in payment.refunds.all()) == Decimal("10.00")
    with pytest.raises(ValidationError, match="nothing left"):
        refund_of(payment)


def test_over_refund_is_refused_with_no_row_and_no_call(motp_sandbox, paid_payment, refund_of):
    payment = paid_payment("10.00")
    refund_of(payment, "6.00")
    refunds_sent = motp_sandbox.calls("refund")
    with pytest.raises(ValidationError) as caught:
        refund_of(payment, "4.01")
    assert "At most 4.00" in caught.value.message_dict["amount"][0]
    assert Refund.objects.count() == 1
    assert motp_sandbox.calls("refund") == refunds_sent


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "0.001"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"reason": "x" * 256}, "reason"),
        ({"out_refund_no": "no spaces please"}, "out_refund_no"),
    ],
)
def test_bad_refund_input_is_refused_before_any_call(
    motp_sandbox, options, field, paid_payment, refund_of
):
    payment = paid_payment("10.00")
    with pytest.raises(ValidationError) as caught:
        refund_of(payment, **options)
    assert field in caught.value.message_dict
    assert Refund.objects.count() == 0
    assert motp_sandbox.calls("refund") == 0


def test_refunding_an_unpaid_payment_is_refused(motp_sandbox, refund_of):
    payment = services.create_native_payment("5.00")
    with pytest.raises(ValidationError, match="Only succeeded payments"):
        refund_of(payment)
    assert Refund.objects.count() == 0
    assert motp_sandbox.calls("refund") == 0


def test_processing_refund_counts_against_refundable_then_settles(
    motp_sandbox, signal_log, paid_payment, refund_of
):
    motp_sandbox.configure(refund_delay=60)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    assert refund.status == R.PENDING
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")
    assert payment.refunded_amount == Decimal("0")
    with pytest.raises(ValidationError, match="still being processed"):
        refund_of(payment, "1.00")
    motp_sandbox.configure(refund_delay=0)  # the wallet finishes
    assert services.sync_refund(refund).status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("4.00")
    assert [e[0] for e in signal_log].count("refund_succeeded") == 1
    with pytest.raises(ValidationError, match=r"At most 6\.00"):
        refund_of(payment, "6.01")


def test_refused_refund_fails_and_frees_the_amount(
    motp_sandbox, signal_log, paid_payment, refund_of
):
    payment = paid_payment("10.00", AUTH_CODE_REFUND_REFUSED)
    refund = refund_of(payment, "4.00")
    assert refund.status == R.FAILED
    assert "REFUNDNOTALLOWED" in refund.message
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")
    assert [e[0] for e in signal_log].count("refund_failed") == 1


def test_lost_refund_answer_is_found_by_a_status_check_not_resent(
    motp_sandbox, signal_log, paid_payment, refund_of
):
    payment = paid_payment("10.00")
    motp_sandbox.fault("reset", operation="refund", when="after")
    refund = refund_of(payment, "4.00")
    assert refund.status == R.CREATED  # the gateway may or may not have it
    assert services.sync_refund(refund).status == R.SUCCEEDED
    assert motp_sandbox.calls("refund") == 1  # it had it: nothing sent twice
    assert len(motp_sandbox.refunds(payment.out_trade_no)) == 1
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("4.00")
    assert [e[0] for e in signal_log].count("refund_succeeded") == 1


def test_refund_never_received_is_resent_with_the_same_number(
    motp_sandbox, paid_payment, refund_of
):
    payment = paid_payment("10.00")
    motp_sandbox.fault("502", operation="refund", when="before")
    refund = refund_of(payment, "4.00")
    assert refund.status == R.CREATED
    assert motp_sandbox.refunds(payment.out_trade_no) == []
    assert services.sync_refund(refund).status == R.SUCCEEDED
    sent = ApiCall.objects.filter(operation="refund").values_list("out_refund_no", flat=True)
    assert list(sent) == [refund.out_refund_no, refund.out_refund_no]
    assert len(motp_sandbox.refunds(payment.out_trade_no)) == 1


def test_a_resent_refund_the_gateway_refuses_fails(motp_sandbox, paid_payment, refund_of):
    payment = paid_payment("10.00", AUTH_CODE_REFUND_REFUSED)
    motp_sandbox.fault("502", operation="refund", when="before")
    refund = refund_of(payment, "4.00")
    assert refund.status == R.CREATED
    assert services.sync_refund(refund).status == R.FAILED
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")


def test_one_refund_at_a_time_per_payment(motp_sandbox, paid_payment, refund_of):
    motp_sandbox.configure(refund_delay=60)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    first = refund_of(payment, "1.00")
    assert first.status == R.PENDING
    with pytest.raises(ValidationError, match="still being processed"):
        refund_of(payment, "2.00")
    assert Refund.objects.count() == 1
    motp_sandbox.configure(refund_delay=0)
    assert services.sync_refund(first).status == R.SUCCEEDED
    assert refund_of(payment, "2.00").status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("3.00")


def test_cents_add_up_exactly(motp_sandbox, paid_payment, refund_of):
    payment = paid_payment("0.30")
    for _ in range(3):
        assert refund_of(payment, "0.10").status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("0.30")
    assert payment.reserved_amount == Decimal("0.30")
    assert payment.refundable_amount == Decimal("0")


def test_refund_still_processing_at_its_deadline_keeps_its_amount_reserved(
    motp_sandbox, paid_payment, refund_of
):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.PENDING
    refund.refresh_from_db()
    assert refund.next_check_at >= timezone.now() + timedelta(seconds=290)
    assert refund.attention == Refund.Attention.OVERDUE
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")


def test_an_accepted_refund_the_gateway_no_longer_finds_is_never_failed_on_time(
    motp_sandbox, paid_payment, signal_log, caplog, refund_of
):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    assert refund.status == R.PENDING
    motp_sandbox.state.reset()  # the gateway has lost the order and its refund
    assert services.sync_refund(refund).status == R.PENDING  # before the deadline: wait
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.PENDING  # it accepted it: money may move
    assert services.sync_refund(refund).status == R.PENDING
    refund.refresh_from_db()
    assert refund.attention == Refund.Attention.OVERDUE
    assert refund in Refund.objects.needs_attention()
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")
    assert "refund_failed" not in [e[0] for e in signal_log]
    overdue_logs = [r for r in caplog.records if "after its deadline" in r.message]
    assert [r.levelname for r in overdue_logs] == ["WARNING"]  # once


def test_a_used_refund_number_is_refused(motp_sandbox, paid_payment, refund_of):
    payment = paid_payment("10.00")
    refund_of(payment, "1.00", out_refund_no="RF-1")
    with pytest.raises(ValidationError, match="already used"):
        refund_of(payment, "1.00", out_refund_no="RF-1")


def test_database_refuses_refunds_above_the_amount(motp_sandbox, paid_payment):
    payment = paid_payment("10.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(reserved_amount=Decimal("10.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(refunded_amount=Decimal("1.00"))


@pytest.mark.postgres
def test_concurrent_refunds_never_exceed_the_amount(motp_sandbox, paid_payment, refund_of):
    payment = paid_payment("10.00")
    outcomes = at_once(lambda: refund_of(Payment.objects.get(pk=payment.pk), "6.00"), times=4)
    refunds = [o for o in outcomes if isinstance(o, Refund)]
    assert len(refunds) == 1
    assert all(isinstance(o, (Refund, ValidationError)) for o in outcomes)
    assert refunds[0].status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("6.00")
    assert payment.reserved_amount == Decimal("6.00")
    assert Refund.objects.count() == 1


def test_a_refund_whose_fate_cannot_be_asked_is_neither_resent_nor_failed(
    motp_sandbox, paid_payment, refund_of
):
    payment = paid_payment("10.00")
    motp_sandbox.fault("reset", operation="refund", when="before")
    refund = refund_of(payment, "4.00")
    motp_sandbox.fault("reset", operation="check_refund", count=2)
    assert services.sync_refund(refund).status == R.CREATED
    assert motp_sandbox.calls("refund") == 1
    refund.refresh_from_db()
    assert refund.next_check_at > timezone.now()
    assert services.sync_refund(refund).status == R.SUCCEEDED  # once it can be asked


def test_after_a_refund_both_payment_objects_show_the_reservation(
    motp_sandbox, paid_payment, refund_of
):
    motp_sandbox.configure(refund_delay=60)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    assert refund.status == R.PENDING
    assert payment.refundable_amount == Decimal("6.00")
    assert refund.payment.refundable_amount == Decimal("6.00")


# Refunds never failed on time alone -------------------------------------------------------------


@pytest.mark.parametrize("message", ["Refund processing", "refund PENDING at the bank"])
def test_a_refund_the_gateway_calls_processing_in_words_is_not_failed_at_its_deadline(
    motp_sandbox, paid_payment, refund_of, gateway_says, signal_log, message
):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    move_past_deadline(refund)
    gateway_says("check_refund", lambda real: {**real, "message": message})
    assert services.sync_refund(refund).status == R.PENDING
    assert "refund_failed" not in [e[0] for e in signal_log]
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")


def test_a_refund_answered_systemerror_waits_and_is_never_failed(
    motp_sandbox, paid_payment, gateway_says, signal_log
):
    payment = paid_payment("10.00")
    gateway_says("refund", MOTPAPIError("SYSTEMERROR: system busy"))  # no sandbox refund
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.PENDING  # in progress, as far as anyone can tell
    gateway_says("check_refund", system_error())
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.PENDING
    refund.refresh_from_db()
    assert refund.attention == Refund.Attention.OVERDUE
    assert "refund_failed" not in [e[0] for e in signal_log]


def test_a_refund_the_gateway_never_had_fails_at_its_deadline(
    motp_sandbox, paid_payment, refund_of
):
    payment = paid_payment("10.00")
    motp_sandbox.fault("reset", operation="refund", when="before")
    refund = refund_of(payment, "4.00")
    assert refund.status == R.CREATED
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.FAILED  # never acknowledged, not found
    assert motp_sandbox.calls("refund") == 1  # not sent again past its deadline
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")


def test_a_refused_refund_whose_answer_was_lost_fails_at_once(
    motp_sandbox, paid_payment, refund_of, signal_log
):
    payment = paid_payment("10.00", AUTH_CODE_REFUND_REFUSED)
    motp_sandbox.fault("502", operation="refund", when="after")  # refused, answer lost
    refund = refund_of(payment, "4.00")
    assert refund.status == R.CREATED
    assert services.sync_refund(refund).status == R.FAILED  # the status check says refused
    assert "REFUNDNOTALLOWED" in refund.message
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")  # nothing held for 24 hours
    assert refund_of(payment, "1.00").status == R.FAILED  # and another refund can be tried


def test_a_refused_resend_that_the_gateway_may_have_is_no_failure(
    motp_sandbox, paid_payment, refund_of, gateway_says
):
    payment = paid_payment("10.00")
    motp_sandbox.fault("502", operation="refund", when="before")
    refund = refund_of(payment, "4.00")
    gateway_says("refund", MOTPAPIError("duplicate out_refund_no"))
    motp_sandbox.fault("504", operation="check_refund", count=4)  # cannot be asked
    assert services.sync_refund(refund).status == R.CREATED
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")


@pytest.mark.parametrize(
    "changes",
    [
        {"out_refund_no": "SOMEONE-ELSES"},
        {"out_trade_no": "ANOTHER-ORDER"},
        {"amount": Decimal("40.00")},
        {"currency": "CNY"},
    ],
)
def test_a_refund_success_that_does_not_match_is_not_trusted(
    motp_sandbox, paid_payment, refund_of, gateway_says, caplog, changes
):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    gateway_says("check_refund", lambda real: {**real, "is_success": True, **changes})
    assert services.sync_refund(refund).status == R.PENDING
    refund.refresh_from_db()
    assert refund.attention == Refund.Attention.ANSWER_MISMATCH
    assert "does not match" in caplog.text
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("0")


def test_a_success_naming_no_refund_is_trusted_only_for_a_payments_only_refund(
    motp_sandbox, paid_payment, refund_of, gateway_says
):
    motp_sandbox.configure(refund_delay=0)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    motp_sandbox.configure(refund_delay=600)
    first = refund_of(payment, "1.00")
    gateway_says("check_refund", lambda real: {**real, "out_refund_no": None})
    motp_sandbox.configure(refund_delay=0)
    assert services.sync_refund(first).status == R.SUCCEEDED  # its only refund
    motp_sandbox.configure(refund_delay=600)
    second = services.refund_payment(payment, "2.00")
    motp_sandbox.configure(refund_delay=0)
    assert services.sync_refund(second).status == R.PENDING  # which of the two?
    assert Refund.objects.get(pk=second.pk).attention == Refund.Attention.ANSWER_MISMATCH


# Settling by hand -------------------------------------------------------------------------------


@pytest.fixture
def overdue_refund(motp_sandbox, paid_payment, refund_of):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.PENDING
    return refund


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("operator")


@pytest.mark.parametrize(("succeeded", "refunded"), [(True, "4.00"), (False, "0.00")])
def test_an_operator_resolves_an_overdue_refund(
    overdue_refund, operator, signal_log, succeeded, refunded
):
    refund = services.resolve_refund(
        overdue_refund, succeeded, by=operator, note="Support ticket 881 confirmed it"
    )
    refund.refresh_from_db()
    assert refund.status == (R.SUCCEEDED if succeeded else R.FAILED)
    assert refund.resolved_by == operator
    assert refund.resolved_at is not None
    assert refund.resolution_note == "Support ticket 881 confirmed it"
    assert refund.attention == Refund.Attention.RESOLVED_BY_HAND
    assert refund.next_check_at is None
    payment = Payment.objects.get(pk=refund.payment_id)
    assert payment.refunded_amount == Decimal(refunded)
    assert payment.reserved_amount == Decimal(refunded)
    signal = "refund_succeeded" if succeeded else "refund_failed"
    assert (signal, refund.pk) in signal_log


def test_resolving_by_hand_is_refused_when_it_is_not_for_a_person(
    motp_sandbox, paid_payment, refund_of, overdue_refund, operator
):
    with pytest.raises(ValidationError, match="note"):
        services.resolve_refund(overdue_refund, True, by=operator, note="  ")
    settled = refund_of(paid_payment("5.00"), "1.00")
    with pytest.raises(ValidationError, match="already succeeded"):
        services.resolve_refund(settled, False, by=operator, note="oops")
    motp_sandbox.configure(refund_delay=600)
    fresh = refund_of(paid_payment("5.00", AUTH_CODE_REFUND_PROCESSING), "1.00")
    with pytest.raises(ValidationError, match="not past its deadline"):
        services.resolve_refund(fresh, False, by=operator, note="impatient")
    assert Refund.objects.get(pk=overdue_refund.pk).status == R.PENDING
    assert Refund.objects.get(pk=fresh.pk).status == R.PENDING


# Checks by hand and races -----------------------------------------------------------------------


def test_a_refund_whose_first_call_may_be_in_flight_is_never_resent(motp_sandbox, paid_payment):
    payment = paid_payment("10.00")
    # Another process has written the refund and is calling the gateway right now.
    refund = Refund.objects.create(
        payment=payment,
        out_refund_no="IN-FLIGHT-1",
        amount=Decimal("1.00"),
        status=R.CREATED,
        deadline_at=timezone.now() + timedelta(days=1),
        next_check_at=timezone.now() + timedelta(seconds=60),
    )
    assert services.sync_refund(refund).status == R.CREATED
    motp_sandbox.fault("504", operation="check_refund", count=2)  # a check without an answer
    assert services.sync_refund(refund).status == R.CREATED
    assert services.sync_refund(refund).status == R.CREATED
    assert motp_sandbox.calls("check_refund") == 4
    assert motp_sandbox.calls("refund") == 0  # never resent while it may be in flight


def test_two_refunds_racing_for_one_out_refund_no_make_one(motp_sandbox, paid_payment):
    payments = [paid_payment("10.00"), paid_payment("10.00")]
    outcomes = at_once(
        lambda: services.refund_payment(
            Payment.objects.get(pk=payments[len(Refund.objects.all()) % 2].pk),
            "1.00",
            out_refund_no="SAME-RF",
        )
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["Refund", "ValidationError"]
    assert Refund.objects.filter(out_refund_no="SAME-RF").count() == 1
    assert motp_sandbox.calls("refund") == 1


@pytest.fixture
def pending_refund(motp_sandbox, paid_payment, refund_of):
    """A refund the wallet is processing; it has finished by the time anyone checks it."""
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    assert refund.status == R.PENDING
    motp_sandbox.configure(refund_delay=0)
    return refund


def assert_credited_once(refund):
    payment = Payment.objects.get(pk=refund.payment_id)
    assert Refund.objects.get(pk=refund.pk).status == R.SUCCEEDED
    assert payment.refunded_amount == Decimal("4.00")
    assert payment.reserved_amount == Decimal("4.00")
    assert Event.objects.filter(refund=refund, signal="refund_succeeded").count() == 1


@pytest.mark.postgres
def test_concurrent_sync_refund_threads_never_double_credit(pending_refund, signal_log):
    # Two workers that each believe they hold the check (one stuck past its lease): only the
    # conditional UPDATE stands between them and a double credit.
    outcomes = at_once(
        lambda: services.check_refund_claimed(Refund.objects.get(pk=pending_refund.pk)), 4
    )
    assert all(isinstance(o, Refund) for o in outcomes)
    assert_credited_once(pending_refund)
    assert [e[0] for e in signal_log].count("refund_succeeded") == 1
    outcomes = at_once(lambda: services.sync_refund(Refund.objects.get(pk=pending_refund.pk)), 3)
    assert [o.status for o in outcomes] == [R.SUCCEEDED] * 3
    assert_credited_once(pending_refund)


def _check_in_a_process(pk, start):
    start.wait()
    try:
        services.check_refund_claimed(Refund.objects.get(pk=pk))
    finally:
        connection.close()
    os._exit(0)


@pytest.mark.postgres
def test_concurrent_sync_refund_processes_never_double_credit(pending_refund):
    connection.close()  # each child opens its own connection
    context = multiprocessing.get_context("fork")
    start = context.Event()
    children = [
        context.Process(target=_check_in_a_process, args=(pending_refund.pk, start))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0, 0]
    assert_credited_once(pending_refund)


def test_an_auth_failure_mid_poll_past_the_deadline_keeps_the_refund_pending(
    motp_sandbox, paid_payment, refund_of, motp_settings, signal_log
):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = refund_of(payment, "4.00")
    motp_settings(PASSWORD="changed-since")
    services.get_client().forget_token()
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.PENDING
    assert "refund_failed" not in [e[0] for e in signal_log]
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")
    assert "changed-since" not in Refund.objects.get(pk=refund.pk).message
