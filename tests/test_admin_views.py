"""The payment page's own views through Django's test client: live status, check now, the refund
form, and the changelist actions; each with its permission."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection

from django_motp import services
from django_motp.models import Payment, Refund
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_PAID,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
)
from tests.fixtures_admin import changelist, client_for, make_payment, page_text

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
R = Refund.Status


def url(payment: Payment, what: str) -> str:
    return f"/admin/django_motp/payment/{payment.pk}/{what}/"


def paid(amount: str = "10.00", code: str = AUTH_CODE_PAID) -> Payment:
    payment = services.create_quick_payment(amount, code)
    assert payment.status == S.SUCCEEDED
    return payment


# Live status ----------------------------------------------------------------------------------


def test_status_json_follows_the_payment(motp_sandbox):
    payment = services.create_native_payment("7.00")
    viewer = client_for("viewer")
    data = viewer.get(url(payment, "status")).json()
    assert data["status"] == "pending"
    assert data["final"] is False
    assert data["headline"] == "WAITING FOR THE BUYER TO SCAN"
    assert data["next_check_at"]
    assert data["refundable_amount"] == "0.00"
    motp_sandbox.pay(payment.out_trade_no)
    services.sync_payment(payment)
    data = viewer.get(url(payment, "status")).json()
    assert data["status"] == "succeeded"
    assert data["final"] is True
    assert data["headline"] == "PAID"
    assert data["refunded_amount"] == "0.00"
    assert data["refundable_amount"] == "7.00"
    assert data["next_check_at"] is None
    assert set(data) >= {"status", "message", "refunded_amount", "refundable_amount"}


def test_status_json_needs_view_payment():
    payment = make_payment()
    assert client_for("nobody").get(url(payment, "status")).status_code == 403
    assert client_for("viewer").get(url(payment, "status")).status_code == 200


def test_a_settled_payment_page_does_not_poll_or_refresh(motp_sandbox):
    payment = paid()
    content = client_for("viewer").get(url(payment, "change")).content.decode()
    assert "data-motp-status-url" not in content
    assert 'http-equiv="refresh"' not in content
    assert "PAID" in page_text(client_for("viewer").get(url(payment, "change"))).split()


# Check now ------------------------------------------------------------------------------------


def test_check_now_asks_the_gateway_once_and_says_what_it_found(motp_sandbox):
    payment = services.create_native_payment("7.00")
    viewer = client_for("viewer")
    before = motp_sandbox.calls("check_payment")
    response = viewer.post(url(payment, "check"), follow=True)
    assert motp_sandbox.calls("check_payment") == before + 1
    assert "Checked with the gateway: still Pending" in page_text(response)
    motp_sandbox.pay(payment.out_trade_no)
    response = viewer.post(url(payment, "check"), follow=True)
    assert "Checked with the gateway: Pending \u2192 Succeeded" in page_text(response)
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED


def test_check_now_is_a_post_and_needs_view_payment(motp_sandbox):
    payment = services.create_native_payment("7.00")
    before = motp_sandbox.calls("check_payment")
    assert client_for("viewer").get(url(payment, "check")).status_code == 405
    assert client_for("nobody").post(url(payment, "check")).status_code == 403
    assert motp_sandbox.calls("check_payment") == before


def test_check_now_works_under_atomic_requests(motp_sandbox, monkeypatch):
    payment = services.create_native_payment("7.00")
    motp_sandbox.pay(payment.out_trade_no)
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    client_for("viewer").post(url(payment, "check"))
    assert Payment.objects.get(pk=payment.pk).status == S.SUCCEEDED


# The refund form ------------------------------------------------------------------------------


def test_refund_form_is_prefilled_with_what_is_refundable(motp_sandbox):
    payment = paid("10.00")
    response = client_for("manager").get(url(payment, "refund"))
    assert response.status_code == 200
    assert 'name="amount" value="10.00"' in response.content.decode()
    text = page_text(response)
    assert "Can still be refunded 10.00 USD" in text
    assert "Max: 10.00 USD" in text


def test_partial_refund_is_made_logged_and_listed_on_the_payment(motp_sandbox):
    payment = paid("10.00")
    manager = client_for("manager")
    response = manager.post(
        url(payment, "refund"), {"amount": "4.00", "reason": "one item back"}, follow=True
    )
    refund = Refund.objects.get()
    assert refund.amount == Decimal("4.00")
    assert refund.reason == "one item back"
    assert refund.requested_by.username.startswith("manager")
    assert response.redirect_chain[-1][0] == url(payment, "change")
    text = page_text(response)
    assert f"Refunded 4.00 USD (refund {refund.out_refund_no})." in text
    assert refund.out_refund_no in text  # the refunds inline
    entry = LogEntry.objects.get(object_id=str(payment.pk))
    assert refund.out_refund_no in entry.get_change_message()
    # the next form counts what was refunded
    again = manager.get(url(payment, "refund"))
    assert 'name="amount" value="6.00"' in again.content.decode()


def test_a_refund_still_processing_is_reported_and_counted_by_the_max(motp_sandbox):
    payment = paid("10.00", AUTH_CODE_REFUND_PROCESSING)
    manager = client_for("manager")
    response = manager.post(url(payment, "refund"), {"amount": "3.00"}, follow=True)
    assert Refund.objects.get().status == R.PENDING
    assert "was accepted; the gateway has not confirmed it yet" in page_text(response)
    form = manager.get(url(payment, "refund"))
    assert "Max: 7.00 USD" in page_text(form)
    assert "Refund not settled yet 3.00 USD" in page_text(form)


def test_a_refused_refund_says_why(motp_sandbox):
    payment = paid("10.00", AUTH_CODE_REFUND_REFUSED)
    response = client_for("manager").post(url(payment, "refund"), {"amount": "3.00"}, follow=True)
    assert Refund.objects.get().status == R.FAILED
    assert "was refused: REFUNDNOTALLOWED" in page_text(response)


@pytest.mark.parametrize(
    ("setup", "amount", "error"),
    [
        ("paid", "10.01", "At most 10.00 USD can be refunded"),
        ("declined", "1.00", "Only succeeded payments can be refunded"),
        ("processing", "1.00", "is still being processed"),
    ],
)
def test_refusals_are_form_errors_and_nothing_is_sent(motp_sandbox, setup, amount, error):
    if setup == "declined":
        payment = services.create_quick_payment("10.00", AUTH_CODE_DECLINED)
    elif setup == "processing":
        payment = paid("10.00", AUTH_CODE_REFUND_PROCESSING)
        services.refund_payment(payment, "2.00")
    else:
        payment = paid("10.00")
    refunds_before = Refund.objects.count()
    sent_before = motp_sandbox.calls("refund")
    response = client_for("manager").post(url(payment, "refund"), {"amount": amount})
    assert response.status_code == 200
    assert error in page_text(response)
    assert Refund.objects.count() == refunds_before
    assert motp_sandbox.calls("refund") == sent_before


def test_refund_needs_refund_payment_and_the_button_shows_only_with_it(motp_sandbox):
    payment = paid("10.00")
    cashier = client_for("cashier")
    assert cashier.get(url(payment, "refund")).status_code == 403
    assert cashier.post(url(payment, "refund"), {"amount": "1.00"}).status_code == 403
    assert Refund.objects.count() == 0
    assert "Refund\u2026" not in page_text(cashier.get(url(payment, "change")))
    assert "Refund\u2026" in page_text(client_for("manager").get(url(payment, "change")))


# Actions --------------------------------------------------------------------------------------


def act(client, action: str, payments, **extra):
    data = {"action": action, "_selected_action": [p.pk for p in payments], **extra}
    return client.post(changelist("payment"), data, follow=True)


def test_check_status_action_reports_each_outcome_once(motp_sandbox):
    paid_now = services.create_native_payment("1.00")
    still = services.create_native_payment("2.00")
    motp_sandbox.pay(paid_now.out_trade_no)
    response = act(client_for("viewer"), "check_status", [paid_now, still])
    text = page_text(response)
    assert f"Checked, now Succeeded (1): {paid_now.out_trade_no}" in text
    assert f"Checked, now Pending (1): {still.out_trade_no}" in text


def test_refund_in_full_lists_every_payment_and_amount_before_anything_moves(motp_sandbox):
    one, two = paid("10.00"), paid("5.50")
    services.refund_payment(two, "0.50")
    declined = services.create_quick_payment("3.00", AUTH_CODE_DECLINED)
    manager = client_for("manager")
    confirm = act(manager, "refund_in_full", [one, two, declined])
    text = page_text(confirm)
    assert confirm.redirect_chain[-1][0].startswith("/admin/django_motp/payment/refund-in-full/")
    assert f"{one.out_trade_no}" in text
    assert "10.00 USD" in text
    assert "5.00 USD" in text  # what is left of the second
    assert "nothing (it will be refused)" in text
    assert "Total 15.00 USD" in text
    assert Refund.objects.count() == 1  # nothing moved yet
    ids = confirm.context["ids"]
    done = manager.post(
        "/admin/django_motp/payment/refund-in-full/", {"ids": ids, "reason": "closing"}, follow=True
    )
    text = page_text(done)
    assert "Refunded in full (2):" in text
    assert "Not refunded (1):" in text
    assert "Only succeeded payments can be refunded" in text
    assert Payment.objects.get(pk=one.pk).refunded_amount == Decimal("10.00")
    assert Payment.objects.get(pk=two.pk).refunded_amount == Decimal("5.50")


def test_refund_in_full_is_hidden_and_forbidden_without_refund_payment(motp_sandbox):
    payment = paid("10.00")
    cashier = client_for("cashier")
    page = cashier.get(changelist("payment")).content.decode()
    assert 'value="check_status"' in page
    assert 'value="refund_in_full"' not in page
    assert (
        'value="refund_in_full"'
        in client_for("manager").get(changelist("payment")).content.decode()
    )
    act(cashier, "refund_in_full", [payment])
    forbidden = cashier.post("/admin/django_motp/payment/refund-in-full/", {"ids": str(payment.pk)})
    assert forbidden.status_code == 403
    assert (
        cashier.get(f"/admin/django_motp/payment/refund-in-full/?ids={payment.pk}").status_code
        == 403
    )
    assert Refund.objects.count() == 0


def test_nothing_is_editable_or_deletable(motp_sandbox):
    payment = paid("10.00")
    manager = client_for("manager")
    page = manager.get(url(payment, "change"))
    assert 'name="_save"' not in page.content.decode()
    assert 'name="amount"' not in page.content.decode()
    manager.post(url(payment, "change"), {"amount": "1.00", "status": "failed"})
    payment.refresh_from_db()
    assert payment.amount == Decimal("10.00")
    assert payment.status == S.SUCCEEDED
    assert manager.post(url(payment, "delete"), {"post": "yes"}).status_code == 403


def test_actions_refuse_more_than_a_hundred_payments_at_once(motp_sandbox):
    payments = [make_payment() for _ in range(101)]
    for action in ("check_status", "refund_in_full"):
        response = act(client_for("manager"), action, payments)
        assert "Select at most 100 rows at once; nothing was done." in page_text(response)
    assert motp_sandbox.calls() == 0
    assert Refund.objects.count() == 0


def test_the_cashier_takes_the_next_payment_from_the_last_ones_page(motp_sandbox):
    payment = paid()
    cashier_page = client_for("cashier").get(url(payment, "change")).content.decode()
    assert 'href="/admin/django_motp/payment/add/" class="addlink">Take a payment' in cashier_page
    viewer_page = client_for("viewer").get(url(payment, "change")).content.decode()
    assert "Take a payment" not in viewer_page


def test_refund_in_full_reports_a_gateway_without_an_answer(motp_sandbox):
    payment = paid("10.00")
    motp_sandbox.fault("502", "refund")
    response = client_for("manager").post(
        "/admin/django_motp/payment/refund-in-full/", {"ids": str(payment.pk)}, follow=True
    )
    text = page_text(response)
    assert "No answer from the gateway yet, it is tried again (1):" in text
    assert payment.out_trade_no in text
    assert Refund.objects.get().status == R.CREATED
