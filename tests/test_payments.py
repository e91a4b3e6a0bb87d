"""Taking payments against the sandbox gateway: creating, settling by status checks, late
successes and double charges, what is sent to the gateway, and the API call log."""

import logging
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from django_motp import services, signals, tasks
from django_motp.exceptions import CheckInProgress, MOTPAPIError, MOTPConfigurationError
from django_motp.models import ApiCall, Payment, Refund
from django_motp.services import answers, claims
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_USERPAYING,
)
from tests.fixtures_money import *  # noqa: F403  (the fixtures)
from tests.fixtures_money import (
    assert_gateway_has_payment,
    make_due,
    move_past_deadline,
    settled_ago,
    system_error,
)
from tests.helpers import at_once, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
R = Refund.Status


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


def test_quick_payment_paid_at_once(motp_sandbox, signal_log, paid_payment):
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
    assert motp_sandbox.calls("jsapi_pay") == 1
    assert motp_sandbox.calls("quick_pay") == 0
    assert_gateway_has_payment(motp_sandbox, payment)


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


def test_a_used_out_trade_no_is_refused(motp_sandbox, paid_payment):
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


def test_an_outage_past_the_deadline_keeps_the_payment_pending(motp_sandbox):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    move_past_deadline(payment)
    motp_sandbox.fault("502", operation="check_payment", count=2)  # the check and its retry
    assert services.sync_payment(payment).status == S.PENDING  # no answer settles nothing
    payment.refresh_from_db()
    assert payment.next_check_at >= timezone.now() + timedelta(seconds=55)
    assert services.sync_payment(payment).status == S.EXPIRED  # an answer does


def test_the_buyer_gets_the_whole_deadline_after_a_slow_call(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "QUICK_PAY_TIMEOUT": 2}
    motp_sandbox.configure(pin_delay=4)  # the call takes the whole 2 s timeout
    called = timezone.now()
    payment = services.create_quick_payment("4.00", AUTH_CODE_PIN)
    returned = timezone.now()
    assert payment.status == S.PENDING
    # 45 s from the answer on: not from creation (2 s earlier), not later than the return.
    assert payment.deadline_at >= called + timedelta(seconds=2 + 45)
    assert payment.deadline_at <= returned + timedelta(seconds=45)


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


def test_every_call_is_logged_with_secrets_redacted(motp_sandbox, settings, caplog, paid_payment):
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


def test_call_log_can_be_switched_off(motp_sandbox, settings, paid_payment):
    settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": False}
    paid_payment()
    assert ApiCall.objects.count() == 0


def test_purge_command_deletes_old_rows(motp_sandbox, paid_payment):
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


# What each status answer means (issue: one table of what each gateway answer means) ------------


@pytest.mark.parametrize(
    "refusal",
    ["SYSTEMERROR: system busy", "Too many requests, slow down", "IP 10.0.0.7 not whitelisted"],
)
def test_a_refused_check_at_the_deadline_never_expires_the_payment(
    motp_sandbox, gateway_says, signal_log, refusal
):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    move_past_deadline(payment)
    gateway_says("check_payment", MOTPAPIError(refusal))
    assert services.sync_payment(payment).status == S.PENDING
    assert refusal in Payment.objects.get(pk=payment.pk).message
    assert [e[0] for e in signal_log].count("payment_expired") == 0
    assert payment in Payment.objects.needs_attention()  # unsettled past its deadline


def test_a_refused_late_check_is_not_counted(motp_sandbox, gateway_says):
    payment = services.create_quick_payment("4.00", AUTH_CODE_DECLINED)
    settled_ago(payment, 61)
    gateway_says("check_payment", system_error())
    assert services.sync_payment(payment).status == S.FAILED
    payment.refresh_from_db()
    assert payment.late_checks_done == 0
    assert payment.next_check_at > timezone.now()


def test_not_found_is_no_answer_for_an_order_the_gateway_acknowledged(motp_sandbox, signal_log):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    assert Payment.objects.get(pk=payment.pk).acknowledged
    motp_sandbox.state.reset()  # the gateway lost the order it had answered about
    move_past_deadline(payment)
    assert services.sync_payment(payment).status == S.PENDING
    assert [e[0] for e in signal_log].count("payment_expired") == 0


@pytest.mark.parametrize(
    "changes",
    [{"out_trade_no": "SOMEONE-ELSE"}, {"amount": Decimal("4.01")}, {"currency": "CNY"}],
)
def test_a_success_answer_that_does_not_match_is_not_trusted(
    motp_sandbox, gateway_says, signal_log, caplog, changes
):
    payment = services.create_native_payment("4.00")
    motp_sandbox.pay(payment.out_trade_no)
    gateway_says("check_payment", lambda real: {**real, **changes})
    assert services.sync_payment(payment).status == S.PENDING
    payment.refresh_from_db()
    assert payment.attention == Payment.Attention.ANSWER_MISMATCH
    assert payment in Payment.objects.needs_attention()
    assert "does not match" in caplog.text
    assert [r.levelname for r in caplog.records if "does not match" in r.message] == ["ERROR"]
    assert "payment_succeeded" not in [e[0] for e in signal_log]


def test_not_paid_about_another_order_is_no_answer(motp_sandbox, gateway_says, signal_log):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    move_past_deadline(payment)
    gateway_says("check_payment", lambda real: {**real, "out_trade_no": "SOMEONE-ELSE"})
    assert services.sync_payment(payment).status == S.PENDING
    assert "payment_expired" not in [e[0] for e in signal_log]


def test_expiry_is_judged_by_when_the_check_was_sent(motp_sandbox, signal_log):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    Payment.objects.filter(pk=payment.pk).update(deadline_at=timezone.now() + timedelta(seconds=1))
    motp_sandbox.configure(slow_delay=2)
    motp_sandbox.fault("slow", operation="check_payment")  # the answer comes after the deadline
    assert services.sync_payment(payment).status == S.PENDING  # asked before it: not expired
    move_past_deadline(payment)
    assert services.sync_payment(payment).status == S.EXPIRED


def test_an_auth_failure_mid_poll_past_the_deadline_keeps_the_payment_pending(
    motp_sandbox, motp_settings, signal_log
):
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    motp_settings(PASSWORD="changed-since")
    services.get_client().forget_token()
    move_past_deadline(payment)
    assert services.sync_payment(payment).status == S.PENDING
    assert "payment_expired" not in [e[0] for e in signal_log]
    assert "changed-since" not in Payment.objects.get(pk=payment.pk).message


# Late successes and double charges ------------------------------------------------------------


def late_paid(sandbox, reference="ORDER-7"):
    """A payment that expired, then the buyer paid it after all."""
    payment = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID, reference=reference)
    move_past_deadline(payment)
    assert services.sync_payment(payment).status == S.EXPIRED
    sandbox.pay(payment.out_trade_no)
    return payment


def test_a_late_success_is_signalled_late_and_flagged(motp_sandbox):
    seen = []

    def receiver(sender, payment, late, event_id, **kwargs):
        seen.append((payment.pk, late, event_id))

    signals.payment_succeeded.connect(receiver)
    try:
        on_time = services.create_quick_payment("1.00", AUTH_CODE_PAID)
        payment = late_paid(motp_sandbox, reference="")
        assert services.sync_payment(payment).status == S.SUCCEEDED
    finally:
        signals.payment_succeeded.disconnect(receiver)
    assert [(pk, late) for pk, late, _ in seen] == [(on_time.pk, False), (payment.pk, True)]
    assert seen[1][2] == payment.events.get(signal="payment_succeeded").pk
    payment.refresh_from_db()
    assert payment.attention == Payment.Attention.LATE_SUCCESS
    assert payment.refunds.count() == 0  # no other payment for its reference


def test_a_late_success_for_a_reference_already_paid_is_refunded_in_full(
    motp_sandbox, paid_payment, signal_log, caplog
):
    payment = late_paid(motp_sandbox)
    other = paid_payment("4.00", reference="ORDER-7")  # the cashier charged again
    assert services.sync_payment(payment).status == S.SUCCEEDED
    payment.refresh_from_db()
    assert payment.attention == Payment.Attention.DOUBLE_CHARGE
    assert payment.duplicate_of == other
    assert payment in Payment.objects.needs_attention()
    [refund] = payment.refunds.all()
    assert refund.status == R.SUCCEEDED
    assert refund.amount == payment.amount == payment.refunded_amount
    assert other.out_trade_no in refund.reason
    assert [r["amount"] for r in motp_sandbox.refunds(payment.out_trade_no)] == [Decimal("4.00")]
    assert motp_sandbox.refunds(other.out_trade_no) == []
    assert "Paid twice" in caplog.text
    heard = [e[:2] for e in signal_log]
    assert heard.index(("payment_succeeded", payment.pk)) < heard.index(
        ("refund_succeeded", refund.pk)
    )  # the shop hears of the payment before its refund


def test_a_double_charge_is_only_flagged_without_refund_duplicates(
    motp_sandbox, paid_payment, motp_settings
):
    motp_settings(REFUND_DUPLICATES=False)
    payment = late_paid(motp_sandbox)
    paid_payment("4.00", reference="ORDER-7")
    assert services.sync_payment(payment).status == S.SUCCEEDED
    payment.refresh_from_db()
    assert payment.attention == Payment.Attention.DOUBLE_CHARGE
    assert payment.refunds.count() == 0
    assert motp_sandbox.calls("refund") == 0


def test_the_double_charge_flag_is_written_with_the_transition(motp_sandbox, paid_payment):
    payment = late_paid(motp_sandbox)
    paid_payment("4.00", reference="ORDER-7")
    flags_at_the_signal = []

    def receiver(sender, payment, **kwargs):
        flags_at_the_signal.append(payment.attention)

    signals.payment_succeeded.connect(receiver)
    try:
        services.sync_payment(payment)
    finally:
        signals.payment_succeeded.disconnect(receiver)
    assert flags_at_the_signal == [Payment.Attention.DOUBLE_CHARGE]


# Checks by hand beside the workers --------------------------------------------------------------


def test_a_check_by_hand_never_runs_beside_a_workers_check(motp_sandbox, monkeypatch):
    monkeypatch.setattr(claims, "HAND_WAIT", 0.3)
    payment = services.create_native_payment("3.00")
    held = services.claim_check(Payment, payment.pk, make_due(payment))  # a worker has it
    assert held is not None
    with pytest.raises(CheckInProgress, match="being checked right now"):
        services.sync_payment(payment)
    assert motp_sandbox.calls("check_payment") == 0
    services.release(Payment, payment.pk, held.checking_until)  # the worker is done
    assert services.sync_payment(payment).status == S.PENDING
    assert motp_sandbox.calls("check_payment") == 1


def test_a_poll_finds_nothing_to_claim_while_a_person_checks(motp_sandbox):
    payment = services.create_native_payment("3.00")
    due = make_due(payment)
    with claims.held_by_hand(payment):
        assert services.claim_check(Payment, payment.pk, due) is None
        assert services.claim_due(Payment, 10)[0] == []
    assert services.claim_check(Payment, payment.pk, due) is not None


# Smaller faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["out_trade_no"])
def test_a_number_ending_in_a_newline_is_refused(motp_sandbox, field):
    with pytest.raises(ValidationError) as caught:
        services.create_native_payment("1.00", **{field: "SHOP-1\n"})
    assert field in caught.value.message_dict
    assert motp_sandbox.calls() == 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"service_id": 2**31}, "service_id"),
        ({"reference": "ORDER\x00-1"}, "reference"),
        ({"sub_store_name": "Till\x001"}, "sub_store_name"),
        ({"metadata": {"note": "a\x00b"}}, "metadata"),
    ],
)
def test_what_a_database_cannot_store_is_refused_before_anything(motp_sandbox, options, field):
    with pytest.raises(ValidationError) as caught:
        services.create_native_payment("1.00", **options)
    assert field in caught.value.message_dict
    assert motp_sandbox.calls() == 0
    assert not Payment.objects.exists()


def test_a_scanned_code_ending_in_a_newline_is_sent_without_it(motp_sandbox):
    payment = services.create_quick_payment("1.00", AUTH_CODE_PAID + "\n")
    assert payment.status == S.SUCCEEDED


@pytest.mark.parametrize(
    ("amount", "rate", "total"),
    [
        ("1.25", "2", "1.28"),
        ("0.25", "2", "0.26"),
        ("10.00", "2.5", "10.25"),
        ("0.01", "50", "0.02"),
    ],
)
def test_the_buyer_total_rounds_half_up_as_the_gateway_does(
    motp_sandbox, paid_payment, amount, rate, total
):
    assert Payment(amount=Decimal(amount), fee_rate=Decimal(rate)).buyer_total == Decimal(total)
    paid_payment(amount, fee_rate=Decimal(rate))  # the fixture compares it with the gateway's


# With a real worker -----------------------------------------------------------------------------


@pytest.mark.redis
def test_a_never_paid_quick_payment_expires_at_its_deadline_with_a_worker(
    worker, motp_sandbox, motp_settings, signal_log
):
    # The worker reads the settings live: a 3 s deadline polled every 0.5 s keeps the meaning
    # of the spec's 45 s polled every 3 s, without the wait.
    motp_settings(QUICK_PAY_DEADLINE=3, POLL_INTERVAL=0.5)
    payment = services.create_quick_payment("5.00", AUTH_CODE_NEVER_PAID)
    answered = timezone.now()
    assert payment.status == S.PENDING
    wait_until(lambda: Payment.objects.get(pk=payment.pk).status == S.EXPIRED, timeout=30)
    payment.refresh_from_db()
    assert payment.settled_at >= payment.deadline_at  # never before its deadline
    assert payment.deadline_at <= answered + timedelta(seconds=3)  # 3 s from the answer
    assert payment.deadline_at >= payment.created_at + timedelta(seconds=3)
    # Delivered on commit, a moment after the status is visible to this thread.
    wait_until(lambda: ("payment_expired", payment.pk) in signal_log, timeout=5)
    assert [e[0] for e in signal_log].count("payment_expired") == 1
    assert motp_sandbox.calls("check_payment") >= 4  # polled all along, every 0.5 s


def test_a_call_log_that_raises_never_breaks_a_payment(motp_sandbox, monkeypatch, caplog):
    def broken_record(call):
        raise RuntimeError("call log table is gone")

    monkeypatch.setattr(services.get_client(), "on_call", broken_record)
    payment = services.create_quick_payment("2.00", AUTH_CODE_PAID)
    assert payment.status == S.SUCCEEDED
    assert "Recording the MOTP quick_pay call failed" in caplog.text
