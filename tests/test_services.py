"""The payment lifecycle against the sandbox gateway: states, signals, refunds, call log."""

import logging
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_motp import services, signals, tasks
from django_motp.services import answers
from django_motp.exceptions import MOTPConfigurationError
from django_motp.models import ApiCall, Payment, Refund
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
    AUTH_CODE_USERPAYING,
)
from tests.helpers import at_once, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
R = Refund.Status


def paid_payment(amount="10.00", auth_code=AUTH_CODE_PAID, **options):
    payment = services.create_quick_payment(Decimal(amount), auth_code, **options)
    assert payment.status == S.SUCCEEDED
    return payment


def move_past_deadline(obj):
    """Move the row's deadline into the past: the clock, as far as the services can tell."""
    type(obj).objects.filter(pk=obj.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))


def settled_ago(payment, seconds):
    """Move the payment's settling time ``seconds`` into the past."""
    at = timezone.now() - timedelta(seconds=seconds)
    Payment.objects.filter(pk=payment.pk).update(settled_at=at)
    return at


# Creating payments ------------------------------------------------------------------------------


def test_native_payment_is_saved_then_pending_with_a_qr_code(motp_sandbox, signal_log):
    payment = services.create_native_payment(Decimal("19.90"), reference="order 42")
    payment.refresh_from_db()
    assert payment.status == S.PENDING
    assert payment.qr_code.startswith("weixin://")
    assert payment.amount == Decimal("19.90")
    assert payment.reference == "order 42"
    assert payment.next_check_at is not None
    assert signal_log == [("payment_status_changed", payment.pk, "created", "pending")]


def test_native_payment_paid_by_the_buyer_succeeds_once(motp_sandbox, signal_log):
    payment = services.create_native_payment(Decimal("5.00"))
    assert services.sync_payment(payment).status == S.PENDING
    motp_sandbox.pay(payment.out_trade_no)
    assert services.sync_payment(payment).status == S.SUCCEEDED
    assert services.sync_payment(payment).status == S.SUCCEEDED
    payment.refresh_from_db()
    assert payment.paid_at is not None
    assert payment.next_check_at is None
    assert [e for e in signal_log if e[0] == "payment_succeeded"] == [
        ("payment_succeeded", payment.pk)
    ]


def test_quick_payment_paid_at_once(motp_sandbox, signal_log):
    payment = paid_payment("12.34")
    payment.refresh_from_db()
    assert payment.transaction_id
    assert signal_log == [
        ("payment_status_changed", payment.pk, "created", "succeeded"),
        ("payment_succeeded", payment.pk),
    ]


def test_jsapi_payment_paid(motp_sandbox):
    payment = services.create_jsapi_payment("3.00", AUTH_CODE_PAID)
    assert payment.status == S.SUCCEEDED
    assert payment.method == Payment.Method.JSAPI


def test_buyer_typing_a_pin_within_the_timeout(motp_sandbox):
    motp_sandbox.configure(pin_delay=0.3)
    assert services.create_quick_payment("1.00", AUTH_CODE_PIN).status == S.SUCCEEDED


def test_pin_slower_than_the_timeout_stays_pending_then_polling_settles(
    motp_sandbox, settings, signal_log
):
    settings.MOTP = {**settings.MOTP, "QUICK_PAY_TIMEOUT": 0.3}
    motp_sandbox.configure(pin_delay=1)
    payment = services.create_quick_payment("1.00", AUTH_CODE_PIN)
    assert payment.status == S.PENDING  # a timeout is never a failure
    wait_until(lambda: services.sync_payment(payment).status == S.SUCCEEDED)
    assert [e[0] for e in signal_log].count("payment_succeeded") == 1


def test_userpaying_is_pending_then_paid(motp_sandbox):
    motp_sandbox.configure(pay_delay=0.3)
    payment = services.create_quick_payment("1.00", AUTH_CODE_USERPAYING)
    assert payment.status == S.PENDING
    assert "USERPAYING" in payment.message
    wait_until(lambda: services.sync_payment(payment).status == S.SUCCEEDED)


def test_declined_payment_fails_once_and_is_watched_for_a_late_success(motp_sandbox, signal_log):
    payment = services.create_quick_payment("1.00", AUTH_CODE_DECLINED)
    payment.refresh_from_db()
    assert payment.status == S.FAILED
    assert "insufficient balance" in payment.message
    assert payment.next_check_at is not None  # the first late-success check
    assert signal_log == [
        ("payment_status_changed", payment.pk, "created", "failed"),
        ("payment_failed", payment.pk),
    ]


def test_lost_answer_after_the_gateway_took_the_payment(motp_sandbox, signal_log):
    motp_sandbox.fault("502", operation="quick_pay", when="after")
    payment = services.create_quick_payment("7.00", AUTH_CODE_PAID)
    assert payment.status == S.PENDING
    assert services.sync_payment(payment).status == S.SUCCEEDED
    assert [e[0] for e in signal_log].count("payment_succeeded") == 1
    assert motp_sandbox.calls("quick_pay") == 1  # never retried blindly


@pytest.mark.parametrize("kind", ["reset", "cutoff", "504", "html", "nodata"])
def test_no_usable_answer_is_never_a_failure(motp_sandbox, kind):
    motp_sandbox.fault(kind, operation="quick_pay", when="before")
    payment = services.create_quick_payment("7.00", AUTH_CODE_PAID)
    assert payment.status == S.PENDING
    # The gateway never saw it: "not found" keeps it pending until the deadline, then expired.
    assert services.sync_payment(payment).status == S.PENDING
    move_past_deadline(payment)
    assert services.sync_payment(payment).status == S.EXPIRED


def test_native_payment_whose_qr_code_was_lost_expires_at_the_quick_deadline(motp_sandbox):
    motp_sandbox.fault("reset", operation="native_pay", when="before")
    payment = services.create_native_payment("2.00")
    payment.refresh_from_db()
    assert payment.status == S.PENDING
    assert payment.qr_code == ""
    # Nobody can pay it, so it gets the payment-code deadline, not the QR code's two hours.
    assert payment.deadline_at <= timezone.now() + timedelta(seconds=45)


def test_never_paid_expires_then_a_late_success_turns_it_succeeded(motp_sandbox, signal_log):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    assert payment.status == S.PENDING
    move_past_deadline(payment)
    assert services.sync_payment(payment).status == S.EXPIRED
    payment.refresh_from_db()
    assert payment.next_check_at == payment.settled_at + timedelta(seconds=60)
    motp_sandbox.pay(payment.out_trade_no)
    assert services.sync_payment(payment).status == S.SUCCEEDED
    names = [e[0] for e in signal_log]
    assert names.count("payment_expired") == 1
    assert names.count("payment_succeeded") == 1
    assert ("payment_status_changed", payment.pk, "expired", "succeeded") in signal_log


def test_late_checks_follow_the_offsets_then_stop(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "LATE_CHECKS": [60, 300]}
    payment = services.create_quick_payment("4.00", AUTH_CODE_DECLINED)
    payment.refresh_from_db()
    assert payment.next_check_at == payment.settled_at + timedelta(seconds=60)
    settled = payment.settled_at
    services.sync_payment(payment)  # early (a cashier's "check now"): no late check used up
    assert payment.next_check_at == settled + timedelta(seconds=60)
    settled = settled_ago(payment, 61)
    services.sync_payment(payment)
    assert payment.next_check_at == settled + timedelta(seconds=300)
    settled = settled_ago(payment, 301)
    services.sync_payment(payment)
    assert payment.next_check_at is None
    checks = motp_sandbox.calls("check_payment")
    assert services.sync_payment(payment).status == S.FAILED
    assert motp_sandbox.calls("check_payment") == checks  # nothing more to check


def test_bad_credentials_fail_the_payment_with_a_clear_message(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "PASSWORD": "wrong"}
    payment = services.create_quick_payment("1.00", AUTH_CODE_PAID)
    assert payment.status == S.FAILED
    assert "authentication failed" in payment.message.lower()
    assert "wrong" not in payment.message


@pytest.mark.parametrize(
    ("amount", "auth_code", "options", "field"),
    [
        (Decimal("0"), AUTH_CODE_PAID, {}, "amount"),
        (Decimal("-1.00"), AUTH_CODE_PAID, {}, "amount"),
        ("abc", AUTH_CODE_PAID, {}, "amount"),
        (Decimal("1.001"), AUTH_CODE_PAID, {}, "amount"),
        (19.9, AUTH_CODE_PAID, {}, "amount"),
        (Decimal("10000000000.00"), AUTH_CODE_PAID, {}, "amount"),
        ("1" * 30, AUTH_CODE_PAID, {}, "amount"),
        ("1.00", "1346abc", {}, "auth_code"),
        ("1.00", "123", {}, "auth_code"),
        ("1.00", "", {}, "auth_code"),
        ("1.00", AUTH_CODE_PAID, {"sub_store_name": "x" * 65}, "sub_store_name"),
        ("1.00", AUTH_CODE_PAID, {"out_trade_no": "has space"}, "out_trade_no"),
        ("1.00", AUTH_CODE_PAID, {"out_trade_no": "X" * 33}, "out_trade_no"),
        ("1.00", AUTH_CODE_PAID, {"fee_rate": Decimal("101")}, "fee_rate"),
        ("1.00", AUTH_CODE_PAID, {"fee_rate": "0.001"}, "fee_rate"),
        ("1.00", AUTH_CODE_PAID, {"metadata": {"when": object()}}, "metadata"),
        ("1.00", AUTH_CODE_PAID, {"service_id": 0}, "service_id"),
    ],
)
def test_bad_input_is_refused_before_any_call_and_leaves_no_row(
    motp_sandbox, amount, auth_code, options, field
):
    with pytest.raises(ValidationError) as caught:
        services.create_quick_payment(amount, auth_code, **options)
    assert field in caught.value.message_dict
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


def test_every_problem_is_listed_at_once(motp_sandbox):
    with pytest.raises(ValidationError) as caught:
        services.create_quick_payment("-1", "x", sub_store_name="y" * 70)
    assert set(caught.value.message_dict) == {"amount", "auth_code", "sub_store_name"}


def test_a_used_out_trade_no_is_refused(motp_sandbox):
    paid_payment(out_trade_no="SHOP-1")
    with pytest.raises(ValidationError, match="already used"):
        services.create_native_payment("1.00", out_trade_no="SHOP-1")
    assert Payment.objects.count() == 1


def test_missing_configuration_is_raised_before_anything_is_saved(motp_sandbox, settings):
    settings.MOTP = {k: v for k, v in settings.MOTP.items() if k != "PASSWORD"}
    with pytest.raises(MOTPConfigurationError, match="PASSWORD"):
        services.create_native_payment("1.00")
    assert Payment.objects.count() == 0


def test_no_store_id_is_a_validation_error(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "STORE_ID": ""}
    with pytest.raises(ValidationError) as caught:
        services.create_native_payment("1.00")
    assert "store_id" in caught.value.message_dict


def test_generated_numbers_are_unique_and_fit_the_gateway(motp_sandbox):
    numbers = {services.create_native_payment("1.00").out_trade_no for _ in range(5)}
    assert len(numbers) == 5
    assert all(len(n) <= 32 for n in numbers)


# Signals ----------------------------------------------------------------------------------------


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


def test_signals_are_not_sent_when_the_transaction_rolls_back(motp_sandbox, signal_log):
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
    assert Payment.objects.get(pk=payment.pk).status == S.PENDING


def test_a_failing_receiver_is_logged_and_breaks_nothing(motp_sandbox, signal_log, caplog):
    def broken(sender, **kwargs):
        raise ValueError("receiver bug")

    signals.payment_succeeded.connect(broken)
    try:
        payment = paid_payment()
    finally:
        signals.payment_succeeded.disconnect(broken)
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert ("payment_succeeded", payment.pk) in signal_log
    assert "receiver bug" in caplog.text


# Refunds ----------------------------------------------------------------------------------------


def test_full_refund(motp_sandbox, signal_log):
    payment = paid_payment("10.00")
    refund = services.refund_payment(payment, reason="changed mind")
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


def test_partial_refunds_add_up(motp_sandbox):
    payment = paid_payment("10.00")
    for amount in ("3.00", "2.50", "4.50"):
        assert services.refund_payment(payment, Decimal(amount)).status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("10.00")
    assert sum(r.amount for r in payment.refunds.all()) == Decimal("10.00")
    with pytest.raises(ValidationError, match="nothing left"):
        services.refund_payment(payment)


def test_over_refund_is_refused_with_no_row_and_no_call(motp_sandbox):
    payment = paid_payment("10.00")
    services.refund_payment(payment, "6.00")
    refunds_sent = motp_sandbox.calls("refund")
    with pytest.raises(ValidationError) as caught:
        services.refund_payment(payment, "4.01")
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
def test_bad_refund_input_is_refused_before_any_call(motp_sandbox, options, field):
    payment = paid_payment("10.00")
    with pytest.raises(ValidationError) as caught:
        services.refund_payment(payment, **options)
    assert field in caught.value.message_dict
    assert Refund.objects.count() == 0
    assert motp_sandbox.calls("refund") == 0


def test_refunding_an_unpaid_payment_is_refused(motp_sandbox):
    payment = services.create_native_payment("5.00")
    with pytest.raises(ValidationError, match="Only succeeded payments"):
        services.refund_payment(payment)
    assert Refund.objects.count() == 0
    assert motp_sandbox.calls("refund") == 0


def test_processing_refund_counts_against_refundable_then_settles(motp_sandbox, signal_log):
    motp_sandbox.configure(refund_delay=60)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.PENDING
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")
    assert payment.refunded_amount == Decimal("0")
    with pytest.raises(ValidationError, match="still being processed"):
        services.refund_payment(payment, "1.00")
    motp_sandbox.configure(refund_delay=0)  # the wallet finishes
    assert services.sync_refund(refund).status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("4.00")
    assert [e[0] for e in signal_log].count("refund_succeeded") == 1
    with pytest.raises(ValidationError, match=r"At most 6\.00"):
        services.refund_payment(payment, "6.01")


def test_refused_refund_fails_and_frees_the_amount(motp_sandbox, signal_log):
    payment = paid_payment("10.00", AUTH_CODE_REFUND_REFUSED)
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.FAILED
    assert "REFUNDNOTALLOWED" in refund.message
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")
    assert [e[0] for e in signal_log].count("refund_failed") == 1


def test_lost_refund_answer_is_found_by_a_status_check_not_resent(motp_sandbox, signal_log):
    payment = paid_payment("10.00")
    motp_sandbox.fault("reset", operation="refund", when="after")
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.CREATED  # the gateway may or may not have it
    assert services.sync_refund(refund).status == R.SUCCEEDED
    assert motp_sandbox.calls("refund") == 1  # it had it: nothing sent twice
    assert len(motp_sandbox.refunds(payment.out_trade_no)) == 1
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("4.00")
    assert [e[0] for e in signal_log].count("refund_succeeded") == 1


def test_refund_never_received_is_resent_with_the_same_number(motp_sandbox):
    payment = paid_payment("10.00")
    motp_sandbox.fault("502", operation="refund", when="before")
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.CREATED
    assert motp_sandbox.refunds(payment.out_trade_no) == []
    assert services.sync_refund(refund).status == R.SUCCEEDED
    sent = ApiCall.objects.filter(operation="refund").values_list("out_refund_no", flat=True)
    assert list(sent) == [refund.out_refund_no, refund.out_refund_no]
    assert len(motp_sandbox.refunds(payment.out_trade_no)) == 1


def test_a_resent_refund_the_gateway_refuses_fails(motp_sandbox):
    payment = paid_payment("10.00", AUTH_CODE_REFUND_REFUSED)
    motp_sandbox.fault("502", operation="refund", when="before")
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.CREATED
    assert services.sync_refund(refund).status == R.FAILED
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")


def test_one_refund_at_a_time_per_payment(motp_sandbox):
    motp_sandbox.configure(refund_delay=60)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    first = services.refund_payment(payment, "1.00")
    assert first.status == R.PENDING
    with pytest.raises(ValidationError, match="still being processed"):
        services.refund_payment(payment, "2.00")
    assert Refund.objects.count() == 1
    motp_sandbox.configure(refund_delay=0)
    assert services.sync_refund(first).status == R.SUCCEEDED
    assert services.refund_payment(payment, "2.00").status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("3.00")


def test_cents_add_up_exactly(motp_sandbox):
    payment = paid_payment("0.30")
    for _ in range(3):
        assert services.refund_payment(payment, "0.10").status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("0.30")
    assert payment.reserved_amount == Decimal("0.30")
    assert payment.refundable_amount == Decimal("0")


def test_refund_still_processing_at_its_deadline_keeps_its_amount_reserved(motp_sandbox):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "4.00")
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.PENDING
    refund.refresh_from_db()
    assert refund.next_check_at >= timezone.now() + timedelta(seconds=290)
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("6.00")


def test_refund_the_gateway_does_not_know_at_its_deadline_fails(motp_sandbox, signal_log):
    motp_sandbox.configure(refund_delay=600)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "4.00")
    motp_sandbox.state.reset()  # the gateway has lost the order and its refund
    assert services.sync_refund(refund).status == R.PENDING  # before the deadline: wait
    move_past_deadline(refund)
    assert services.sync_refund(refund).status == R.FAILED
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("10.00")
    assert ("refund_failed", refund.pk) in signal_log


def test_a_used_refund_number_is_refused(motp_sandbox):
    payment = paid_payment("10.00")
    services.refund_payment(payment, "1.00", out_refund_no="RF-1")
    with pytest.raises(ValidationError, match="already used"):
        services.refund_payment(payment, "1.00", out_refund_no="RF-1")


def test_database_refuses_refunds_above_the_amount(motp_sandbox):
    payment = paid_payment("10.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(reserved_amount=Decimal("10.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(refunded_amount=Decimal("1.00"))


# The API call log -------------------------------------------------------------------------------


def test_every_call_is_logged_with_secrets_redacted(motp_sandbox, settings, caplog):
    caplog.set_level(logging.DEBUG, logger="django_motp")
    payment = paid_payment("10.00")
    services.refund_payment(payment, "1.00")
    services.create_quick_payment("1.00", AUTH_CODE_DECLINED)
    operations = list(ApiCall.objects.order_by("pk").values_list("operation", flat=True))
    assert operations == ["token", "quick_pay", "refund", "check_refund", "quick_pay"]
    call = ApiCall.objects.filter(operation="quick_pay").first()
    assert call.out_trade_no
    assert call.http_status == 200
    assert call.outcome == ApiCall.Outcome.DECLINED
    assert ApiCall.objects.filter(operation="refund").get().outcome == ApiCall.Outcome.OK
    assert call.request["auth_code"] == "[redacted]"
    dump = repr(list(ApiCall.objects.values())) + caplog.text
    for secret in (settings.MOTP["PASSWORD"], AUTH_CODE_PAID, AUTH_CODE_DECLINED):
        assert secret not in dump
    token = services.get_client().get_token()
    assert token not in dump


def test_call_log_can_be_switched_off(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": False}
    paid_payment()
    assert ApiCall.objects.count() == 0


def test_purge_command_deletes_old_rows(motp_sandbox):
    paid_payment()
    old = ApiCall.objects.count()
    ApiCall.objects.update(created_at=timezone.now() - timedelta(days=40))
    paid_payment()
    recent = ApiCall.objects.count() - old
    assert old > 0
    assert recent > 0
    call_command("motp_purge_api_calls", "--days", "30")
    assert ApiCall.objects.count() == recent
    assert not ApiCall.objects.filter(created_at__lt=timezone.now() - timedelta(days=30)).exists()


# Row locks (PostgreSQL) -------------------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_refunds_never_exceed_the_amount(motp_sandbox):
    payment = paid_payment("10.00")
    outcomes = at_once(
        lambda: services.refund_payment(Payment.objects.get(pk=payment.pk), "6.00"), times=4
    )
    refunds = [o for o in outcomes if isinstance(o, Refund)]
    assert len(refunds) == 1
    assert all(isinstance(o, (Refund, ValidationError)) for o in outcomes)
    assert refunds[0].status == R.SUCCEEDED
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("6.00")
    assert payment.reserved_amount == Decimal("6.00")
    assert Refund.objects.count() == 1


@pytest.mark.postgres
def test_concurrent_syncs_on_postgres_send_one_signal(motp_sandbox, signal_log):
    payment = services.create_native_payment("9.00")
    motp_sandbox.pay(payment.out_trade_no)
    outcomes = at_once(lambda: services.sync_payment(Payment.objects.get(pk=payment.pk)), 4)
    assert [o.status for o in outcomes] == [S.SUCCEEDED] * 4
    assert [e[0] for e in signal_log].count("payment_succeeded") == 1


def test_an_outage_past_the_deadline_keeps_the_payment_pending(motp_sandbox):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    move_past_deadline(payment)
    motp_sandbox.fault("502", operation="check_payment", count=2)  # the check and its retry
    assert services.sync_payment(payment).status == S.PENDING  # no answer settles nothing
    payment.refresh_from_db()
    assert payment.next_check_at >= timezone.now() + timedelta(seconds=55)
    assert services.sync_payment(payment).status == S.EXPIRED  # an answer does


def test_the_buyer_gets_the_whole_deadline_after_a_slow_call(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "QUICK_PAY_TIMEOUT": 0.5}
    motp_sandbox.configure(pin_delay=2)
    payment = services.create_quick_payment("4.00", AUTH_CODE_PIN)
    returned = timezone.now()
    assert payment.status == S.PENDING
    assert payment.deadline_at >= returned + timedelta(seconds=44)  # 45 s from the answer on


def test_creating_inside_a_transaction_is_refused_before_any_call(motp_sandbox):
    def inside_atomic():
        with transaction.atomic():
            services.create_native_payment("1.00")

    with pytest.raises(RuntimeError, match="durable"):
        inside_atomic()
    assert motp_sandbox.calls("native_pay") == 0
    assert Payment.objects.count() == 0


def test_a_late_success_after_a_decline_turns_the_payment_succeeded(
    motp_sandbox, signal_log, monkeypatch
):
    payment = services.create_quick_payment("4.00", AUTH_CODE_DECLINED)
    assert payment.status == S.FAILED
    # The wallet reverses its decline: the gateway's status check now says paid.
    client = services.get_client()
    real_check = client.check_payment

    def paid_after_all(store_id, out_trade_no):
        return {**real_check(store_id, out_trade_no), "is_success": True, "message": "Paid"}

    monkeypatch.setattr(client, "check_payment", paid_after_all)
    settled_ago(payment, 61)
    assert services.sync_payment(payment).status == S.SUCCEEDED
    names = [e[0] for e in signal_log]
    assert names.count("payment_failed") == 1
    assert names.count("payment_succeeded") == 1
    assert ("payment_status_changed", payment.pk, "failed", "succeeded") in signal_log


def test_the_row_is_committed_while_the_gateway_is_being_called(motp_sandbox):
    motp_sandbox.configure(pin_delay=1)
    seen = []

    def look_from_another_connection_while_the_buyer_types_the_pin():
        try:
            row = wait_until(lambda: Payment.objects.filter(reference="till 3").first(), 5)
            seen.append(row.status)
        finally:
            connection.close()

    watcher = threading.Thread(target=look_from_another_connection_while_the_buyer_types_the_pin)
    watcher.start()
    payment = services.create_quick_payment("4.00", AUTH_CODE_PIN, reference="till 3")
    watcher.join()
    assert seen == [S.CREATED]
    assert payment.status == S.SUCCEEDED


def test_a_payment_left_created_by_a_crash_is_settled_by_the_sweep(motp_sandbox, signal_log):
    # The process saved the row, the gateway took the payment, then the process died.
    now = timezone.now()
    payment = Payment.objects.create(
        out_trade_no="CRASH-1",
        method=Payment.Method.QUICK,
        amount=Decimal("6.00"),
        service_id=30,
        store_id=motp_sandbox.store_id,
        created_at=now,
        deadline_at=now + timedelta(seconds=45),
        next_check_at=now,
    )
    services.get_client().quick_pay(
        store_id=motp_sandbox.store_id,
        service_id=30,
        amount=Decimal("6.00"),
        out_trade_no="CRASH-1",
        auth_code=AUTH_CODE_PAID,
    )
    assert tasks.sweep(inline=True) == 1
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED
    assert ("payment_status_changed", payment.pk, "created", "succeeded") in signal_log


@pytest.mark.postgres
def test_concurrent_sweeps_split_the_due_rows(motp_sandbox):
    now = timezone.now()
    Payment.objects.bulk_create(
        Payment(
            out_trade_no=f"DUE-{i}",
            method=Payment.Method.NATIVE,
            status=S.PENDING,
            amount=Decimal("1.00"),
            service_id=30,
            store_id="10001",
            created_at=now,
            deadline_at=now + timedelta(hours=2),
            next_check_at=now,
        )
        for i in range(30)
    )
    claims = at_once(lambda: services.claim_due(Payment, 30)[0], times=3)
    claimed = [pk for pks in claims for pk in pks]
    assert len(claimed) == len(set(claimed)) == 30


def test_a_late_check_without_an_answer_is_not_counted(motp_sandbox):
    payment = services.create_quick_payment("4.00", AUTH_CODE_DECLINED)
    settled_ago(payment, 61)
    motp_sandbox.fault("504", operation="check_payment", count=2)  # the check and its retry
    assert services.sync_payment(payment).status == S.FAILED
    payment.refresh_from_db()
    assert payment.late_checks_done == 0
    assert payment.next_check_at >= timezone.now() + timedelta(seconds=55)


def test_a_refund_whose_fate_cannot_be_asked_is_neither_resent_nor_failed(motp_sandbox):
    payment = paid_payment("10.00")
    motp_sandbox.fault("reset", operation="refund", when="before")
    refund = services.refund_payment(payment, "4.00")
    motp_sandbox.fault("reset", operation="check_refund", count=2)
    assert services.sync_refund(refund).status == R.CREATED
    assert motp_sandbox.calls("refund") == 1
    refund.refresh_from_db()
    assert refund.next_check_at > timezone.now()
    assert services.sync_refund(refund).status == R.SUCCEEDED  # once it can be asked


@pytest.mark.postgres
def test_two_tills_using_one_order_number_at_once_make_one_payment(motp_sandbox):
    outcomes = at_once(
        lambda: services.create_quick_payment("5.00", AUTH_CODE_PAID, out_trade_no="SAME-1"), 2
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["Payment", "ValidationError"]
    assert Payment.objects.count() == 1
    assert motp_sandbox.calls("quick_pay") == 1


def test_metadata_keeps_decimals_and_dates(motp_sandbox):
    when = timezone.now()
    payment = services.create_native_payment(
        "1.00", metadata={"basket_total": Decimal("1.00"), "opened": when}
    )
    payment.refresh_from_db()
    assert payment.metadata == {"basket_total": "1.00", "opened": when.isoformat()[:23] + "Z"}


def test_after_a_refund_both_payment_objects_show_the_reservation(motp_sandbox):
    motp_sandbox.configure(refund_delay=60)
    payment = paid_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.PENDING
    assert payment.refundable_amount == Decimal("6.00")
    assert refund.payment.refundable_amount == Decimal("6.00")


@pytest.mark.parametrize(
    ("message", "in_progress"),
    [
        ("USERPAYING: waiting for the buyer to enter the payment PIN", True),
        ("SYSTEMERROR", True),
        ("PROCESSING: refund in progress", True),
        ("Error processing refund", False),
        ("PAYERROR: insufficient balance", False),
        ("NOTUSERPAYING", False),
    ],
)
def test_in_progress_codes_are_matched_as_whole_upper_case_words(message, in_progress):
    assert answers.is_in_progress(message) is in_progress
