"""Refunds through the REST API against the sandbox gateway, and what pages of rows cost."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from django_motp.models import Payment, Refund
from django_motp.testing import (
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
    AUTH_CODE_USERPAYING,
)
from tests.api_helpers import PAYMENTS, REFUNDS, pay, post_raw, refund_url, row

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.fixtures_api"]


def test_full_refund_answers_201_refunded(api, motp_sandbox, make_user):
    paid = pay(api, "12.00").json()
    response = api.post(refund_url(paid["out_trade_no"]), {"reason": "wrong size"}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "succeeded"
    assert data["amount"] == "12.00"
    assert data["payment"] == paid["out_trade_no"]
    assert data["reason"] == "wrong size"
    refund = Refund.objects.get()
    assert refund.requested_by is not None
    payment = api.get(f"{PAYMENTS}{paid['out_trade_no']}/").json()
    assert payment["refunded_amount"] == "12.00"
    assert payment["refundable_amount"] == "0.00"


def test_partial_refund_and_too_much(api, motp_sandbox):
    paid = pay(api, "10.00").json()
    url = refund_url(paid["out_trade_no"])
    response = post_raw(api, url, '{"amount": 3.5}')
    assert response.status_code == 201
    assert response.json()["amount"] == "3.50"
    response = api.post(url, {"amount": "6.51"}, format="json")
    assert response.status_code == 400
    assert "At most 6.50" in response.json()["amount"][0]
    assert Refund.objects.count() == 1
    assert motp_sandbox.calls("refund") == 1


def test_refund_still_processing_answers_202(api, motp_sandbox):
    paid = pay(api, auth_code=AUTH_CODE_REFUND_PROCESSING).json()
    response = api.post(refund_url(paid["out_trade_no"]), {}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "pending"


def test_refund_refused_by_the_gateway_answers_402(api, motp_sandbox):
    paid = pay(api, auth_code=AUTH_CODE_REFUND_REFUSED).json()
    response = api.post(refund_url(paid["out_trade_no"]), {}, format="json")
    assert response.status_code == 402
    assert response.json()["status"] == "failed"
    assert "REFUNDNOTALLOWED" in response.json()["message"]


@pytest.mark.parametrize("body", [{"amount": "1.005"}, {"amount": "0"}, {"reason": "x" * 256}])
def test_bad_refund_input_is_a_400_with_no_row_and_no_call(api, motp_sandbox, body):
    paid = pay(api).json()
    response = api.post(refund_url(paid["out_trade_no"]), body, format="json")
    assert response.status_code == 400
    assert set(body) <= set(response.json())
    assert Refund.objects.count() == 0
    assert motp_sandbox.calls("refund") == 0


def test_refunding_an_unpaid_payment_is_a_400(api, motp_sandbox):
    pending = pay(api, auth_code=AUTH_CODE_USERPAYING).json()
    response = api.post(refund_url(pending["out_trade_no"]), {}, format="json")
    assert response.status_code == 400
    assert "Only succeeded payments" in response.json()["non_field_errors"][0]
    assert Refund.objects.count() == 0


def test_refunding_an_unknown_payment_is_a_404(api, motp_sandbox):
    assert api.post(refund_url("NOSUCH"), {}, format="json").status_code == 404


def test_refund_list_detail_and_filters(api, motp_sandbox):
    first = pay(api, "5.00").json()["out_trade_no"]
    second = pay(api, "6.00", auth_code=AUTH_CODE_REFUND_REFUSED).json()["out_trade_no"]
    refunded = api.post(refund_url(first), {"amount": "1.00"}, format="json").json()
    refused = api.post(refund_url(second), {}, format="json").json()

    def numbers(**params):
        response = api.get(REFUNDS, params)
        assert response.status_code == 200
        return [r["out_refund_no"] for r in response.json()["results"]]

    assert numbers() == [refused["out_refund_no"], refunded["out_refund_no"]]
    assert numbers(payment=first) == [refunded["out_refund_no"]]
    assert numbers(status="failed") == [refused["out_refund_no"]]
    assert numbers(created_before=(timezone.now() - timedelta(hours=1)).isoformat()) == []
    assert api.get(REFUNDS, {"status": "lost"}).status_code == 400
    detail = api.get(f"{REFUNDS}{refunded['out_refund_no']}/")
    assert detail.status_code == 200
    assert detail.json() == refunded
    assert api.get(f"{REFUNDS}NOSUCH/").status_code == 404


def test_a_page_costs_the_same_queries_however_many_rows(api, motp_sandbox):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(path):
        with CaptureQueriesContext(connection) as captured:
            assert api.get(path).status_code == 200
        return len(captured)

    def add_rows(start, count):
        for n in range(start, start + count):
            payment = row(f"Q{n}", status=Payment.Status.SUCCEEDED)
            Refund.objects.create(payment=payment, out_refund_no=f"R{n}", amount=Decimal("1.00"))

    add_rows(0, 2)
    queries(PAYMENTS)  # the user's permissions are read once, then cached
    few = queries(PAYMENTS), queries(REFUNDS)
    assert few == (1, 1)
    add_rows(2, 10)
    assert (queries(PAYMENTS), queries(REFUNDS)) == few
