"""Payments through the REST API against the sandbox gateway: taking, reading and checking
them, every answer code and validation error, as a POS terminal or a checkout page sees them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from django_motp.models import Payment
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_USERPAYING,
)
from tests.api_helpers import PAYMENTS, REFUNDS, pay, post_raw, refund_url, row

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.fixtures_api"]


# Taking payments --------------------------------------------------------------------------------


def test_native_payment_answers_201_with_its_qr_code_and_buyer_total(api, motp_sandbox):
    response = pay(api, "19.90", method="native", fee_rate="2", reference="order 42")
    assert response.status_code == 201, response.data
    data = response.json()
    assert data["status"] == "pending"
    assert data["qr_code"].startswith("weixin://")
    assert data["amount"] == "19.90"
    assert data["fee_rate"] == "2.00"
    assert data["buyer_total"] == "20.30"
    assert data["refundable_amount"] == "0.00"
    assert data["reference"] == "order 42"
    assert "auth_code" not in data
    assert Payment.objects.get(out_trade_no=data["out_trade_no"]).amount == Decimal("19.90")


def test_quick_payment_paid_answers_201(api, motp_sandbox):
    response = pay(api, "7.50", metadata={"till": 3})
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "succeeded"
    assert data["refundable_amount"] == "7.50"
    assert data["metadata"] == {"till": 3}
    assert data["transaction_id"]


def test_quick_payment_with_a_pin_typed_in_time_answers_201(api, motp_sandbox):
    response = pay(api, auth_code=AUTH_CODE_PIN)
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"


def test_jsapi_payment_answers_201(api, motp_sandbox):
    response = pay(api, method="jsapi")
    assert response.status_code == 201
    assert response.json()["method"] == "jsapi"


def test_payment_still_in_progress_answers_202_pending(api, motp_sandbox):
    response = pay(api, auth_code=AUTH_CODE_USERPAYING)
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert Payment.objects.get().status == Payment.Status.PENDING


def test_declined_payment_answers_402_with_the_gateways_message(api, motp_sandbox):
    response = pay(api, auth_code=AUTH_CODE_DECLINED)
    assert response.status_code == 402
    data = response.json()
    assert data["status"] == "failed"
    assert data["detail"] == "PAYERROR: insufficient balance"
    assert data["out_trade_no"] == Payment.objects.get().out_trade_no


@pytest.mark.parametrize(
    ("kind", "when"), [("reset", "before"), ("502", "after"), ("cutoff", "after")]
)
def test_gateway_unreachable_answers_202_and_keeps_the_payment(api, motp_sandbox, kind, when):
    motp_sandbox.fault(kind, operation="quick_pay", when=when)
    response = pay(api)
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PENDING
    assert payment.next_check_at is not None
    assert motp_sandbox.calls("quick_pay") == 1


def test_a_json_number_amount_is_read_exactly(api, motp_sandbox):
    response = post_raw(
        api, PAYMENTS, f'{{"method": "quick", "amount": 0.29, "auth_code": "{AUTH_CODE_PAID}"}}'
    )
    assert response.status_code == 201
    assert response.json()["amount"] == "0.29"
    assert Payment.objects.get().amount == Decimal("0.29")


@pytest.mark.parametrize(
    "amount",
    ["0.125", "1.001", "0", "0.00", "-1.00", "abc", "NaN", "Infinity", "", "10000000000.00", None],
)
def test_bad_amount_is_a_400_with_no_row_and_no_call(api, motp_sandbox, amount):
    response = pay(api, amount)
    assert response.status_code == 400
    assert "amount" in response.json()
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


@pytest.mark.parametrize("number", ["0.125", "10.001", "1e-3", "true", "[1]", '{"a": 1}'])
def test_a_json_number_with_three_decimals_or_no_number_is_a_400(api, motp_sandbox, number):
    text = f'{{"method": "quick", "amount": {number}, "auth_code": "{AUTH_CODE_PAID}"}}'
    response = post_raw(api, PAYMENTS, text)
    assert response.status_code == 400
    assert "amount" in response.json()
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "card", "amount": "1.00"}, "method"),
        ({"amount": "1.00"}, "method"),
        ({"method": "quick", "amount": "1.00"}, "auth_code"),
        ({"method": "quick", "amount": "1.00", "auth_code": "12ab"}, "auth_code"),
        ({"method": "native", "amount": "1.00", "auth_code": AUTH_CODE_PAID}, "auth_code"),
        ({"method": "native", "amount": "1.00", "fee_rate": "100.01"}, "fee_rate"),
        ({"method": "native", "amount": "1.00", "fee_rate": "1.005"}, "fee_rate"),
        ({"method": "native", "amount": "1.00", "reference": "x" * 256}, "reference"),
        ({"method": "native", "amount": "1.00", "metadata": [1]}, "metadata"),
        ({"method": "native", "amount": "1.00", "out_trade_no": "no spaces"}, "out_trade_no"),
        ({"method": "native", "amount": "1.00", "service_id": 0}, "service_id"),
        ({"method": "native", "amount": "1.00", "service_id": 2**31}, "service_id"),
        ({"method": "native", "amount": "1.00", "metadata": {"note": "a\x00b"}}, "metadata"),
        ({"method": "native", "amount": "1.00", "sub_store_name": "x" * 65}, "sub_store_name"),
    ],
)
def test_bad_fields_are_a_400_naming_the_field_with_no_row_and_no_call(
    api, motp_sandbox, body, field
):
    response = api.post(PAYMENTS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


def test_a_body_that_is_not_json_is_a_400(api, motp_sandbox):
    response = post_raw(api, PAYMENTS, '{"method": "native", "amount": ')
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert Payment.objects.count() == 0


def test_text_that_is_no_unicode_is_a_400(api, motp_sandbox):
    response = post_raw(
        api, PAYMENTS, '{"method": "native", "amount": "1.00", "reference": "\\ud800"}'
    )
    assert response.status_code == 400
    assert Payment.objects.count() == 0


def test_a_used_out_trade_no_is_a_400(api, motp_sandbox):
    assert pay(api, out_trade_no="TILL1-0001").status_code == 201
    response = pay(api, out_trade_no="TILL1-0001")
    assert response.status_code == 400
    assert "already used" in response.json()["out_trade_no"][0]
    assert Payment.objects.count() == 1
    assert motp_sandbox.calls("quick_pay") == 1


def test_form_encoded_payment_is_taken_too(api, motp_sandbox):
    response = api.post(
        PAYMENTS, {"method": "quick", "amount": "3.10", "auth_code": AUTH_CODE_PAID}
    )
    assert response.status_code == 201
    assert response.json()["amount"] == "3.10"


# Reading payments -------------------------------------------------------------------------------


def test_read_a_payment_and_a_404_for_an_unknown_number(api, motp_sandbox):
    created = pay(api).json()
    response = api.get(f"{PAYMENTS}{created['out_trade_no']}/")
    assert response.status_code == 200
    assert response.json() == created
    assert api.get(f"{PAYMENTS}NOSUCHNUMBER/").status_code == 404


def test_list_is_newest_first_in_cursor_pages(api, motp_sandbox):
    now = timezone.now()
    for n in range(5):
        row(f"P{n}", created_at=now - timedelta(minutes=n))
    first = api.get(PAYMENTS, {"page_size": 2}).json()
    assert [p["out_trade_no"] for p in first["results"]] == ["P0", "P1"]
    assert first["previous"] is None
    second = api.get(first["next"]).json()
    assert [p["out_trade_no"] for p in second["results"]] == ["P2", "P3"]
    third = api.get(second["next"]).json()
    assert [p["out_trade_no"] for p in third["results"]] == ["P4"]
    assert third["next"] is None


def test_the_browsable_api_renders_for_a_person(api, motp_sandbox):
    number = pay(api).json()["out_trade_no"]
    refund = api.post(refund_url(number), {"amount": "1.00"}, format="json").json()
    for url, shown in [
        (PAYMENTS, number),
        (f"{PAYMENTS}{number}/", number),
        (REFUNDS, refund["out_refund_no"]),
        (f"{REFUNDS}{refund['out_refund_no']}/", refund["out_refund_no"]),
    ]:
        page = api.get(url, {"status": "succeeded"}, HTTP_ACCEPT="text/html")
        assert page.status_code == 200
        assert shown in page.content.decode()


def test_a_bad_cursor_is_a_404(api, motp_sandbox):
    assert api.get(PAYMENTS, {"cursor": "garbage"}).status_code == 404


def test_list_filters(api, motp_sandbox):
    now = timezone.now()
    row("OLD", created_at=now - timedelta(days=3), reference="A")
    row("QUICK", method="quick", status=Payment.Status.SUCCEEDED, reference="B")
    row("FAILED", status=Payment.Status.FAILED, reference="A")

    def numbers(**params):
        response = api.get(PAYMENTS, params)
        assert response.status_code == 200
        return {p["out_trade_no"] for p in response.json()["results"]}

    assert numbers() == {"OLD", "QUICK", "FAILED"}
    assert numbers(status="succeeded") == {"QUICK"}
    assert numbers(status=["succeeded", "failed"]) == {"QUICK", "FAILED"}
    assert numbers(method="quick") == {"QUICK"}
    assert numbers(reference="A") == {"OLD", "FAILED"}
    assert numbers(reference="nothing") == set()
    day_ago = (now - timedelta(days=1)).isoformat()
    assert numbers(created_after=day_ago) == {"QUICK", "FAILED"}
    assert numbers(created_before=day_ago) == {"OLD"}
    assert numbers(created_after=day_ago, method="native") == {"FAILED"}


@pytest.mark.parametrize(
    "params",
    [{"status": "lost"}, {"method": "card"}, {"created_after": "yesterday"}, {"page_size": "x"}],
)
def test_bad_filter_values_are_a_400(api, motp_sandbox, params):
    response = api.get(PAYMENTS, params)
    if "page_size" in params:  # DRF falls back to the default page size
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert set(params) <= set(response.json())


# Status checks ----------------------------------------------------------------------------------


def test_sync_asks_the_gateway_and_answers_the_payment_as_it_is_now(api, motp_sandbox):
    created = pay(api, method="native").json()
    url = f"{PAYMENTS}{created['out_trade_no']}/sync/"
    assert api.post(url).json()["status"] == "pending"
    motp_sandbox.pay(created["out_trade_no"])
    response = api.post(url)
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response.json()["paid_at"]
    assert motp_sandbox.calls("check_payment") == 2


def test_sync_while_a_worker_checks_the_payment_is_a_409_and_frees_the_key(
    api, motp_sandbox, monkeypatch
):
    from django_motp.services import claims

    monkeypatch.setattr(claims, "HAND_WAIT", 0.3)  # how long the API waits for the worker
    number = pay(api, method="native").json()["out_trade_no"]
    url = f"{PAYMENTS}{number}/sync/"
    with claims.held_by_hand(Payment.objects.get()):  # a worker's check is under way
        response = api.post(url, HTTP_IDEMPOTENCY_KEY="sync-1")
    assert response.status_code == 409
    assert "being checked right now" in response.json()["detail"]
    assert motp_sandbox.calls("check_payment") == 0
    again = api.post(url, HTTP_IDEMPOTENCY_KEY="sync-1")  # the check is over: it runs now
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again
    assert motp_sandbox.calls("check_payment") == 1


def test_sync_of_an_unknown_payment_is_a_404(api, motp_sandbox):
    assert api.post(f"{PAYMENTS}NOSUCH/sync/").status_code == 404
    assert motp_sandbox.calls() == 0
