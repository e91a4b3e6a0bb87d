"""The payments admin through Django's test client: the changelist, and taking payments."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_motp.models import ApiCall, Payment
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_USERPAYING,
)
from tests.fixtures_admin import changelist, client_for, make_payment, page_text

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
ADD = "/admin/django_motp/payment/add/"


# The changelist -------------------------------------------------------------------------------


def test_changelist_shows_what_a_shop_needs_per_payment():
    viewer_client = client_for("viewer")
    make_payment(
        out_trade_no="P-ONE",
        reference="till-7",
        amount=Decimal("20.00"),
        fee_rate=Decimal("2.50"),
        method=Payment.Method.QUICK,
        refunded_amount=Decimal("5.00"),
    )
    response = viewer_client.get(changelist("payment"))
    assert response.status_code == 200
    text = page_text(response)
    for seen in ("P-ONE", "till-7", "20.00 USD", "20.50 USD", "Payment code"):
        assert seen in text
    assert "5.00 USD" in text  # refunded
    assert '<span class="motp-badge motp-status-succeeded">Succeeded</span>' in (
        response.content.decode()
    )


def test_changelist_filters_by_status_method_refund_state_and_attention():
    viewer_client = client_for("viewer")
    make_payment(out_trade_no="PAID-NONE")
    make_payment(out_trade_no="PAID-PART", refunded_amount=Decimal("3.00"))
    make_payment(out_trade_no="PAID-FULL", refunded_amount=Decimal("10.00"))
    make_payment(out_trade_no="DECLINED", status=S.FAILED, method=Payment.Method.QUICK)
    make_payment(out_trade_no="DOUBLE", attention=Payment.Attention.DOUBLE_CHARGE)
    overdue = make_payment(out_trade_no="OVERDUE", status=S.PENDING)
    Payment.objects.filter(pk=overdue.pk).update(deadline_at="2000-01-01T00:00:00Z")

    def shown(query: str) -> set[str]:
        text = page_text(viewer_client.get(changelist("payment") + query))
        names = {"PAID-NONE", "PAID-PART", "PAID-FULL", "DECLINED", "DOUBLE", "OVERDUE"}
        return {name for name in names if name in text.split()}

    assert shown("?status__exact=failed") == {"DECLINED"}
    assert shown("?method__exact=quick") == {"DECLINED"}
    assert shown("?refunded=partial") == {"PAID-PART"}
    assert shown("?refunded=full") == {"PAID-FULL"}
    assert "PAID-NONE" in shown("?refunded=none")
    assert shown("?attention=yes") == {"DOUBLE", "OVERDUE"}
    assert shown("?attention=double_charge") == {"DOUBLE"}
    assert shown("?attention=past_deadline") == {"OVERDUE"}


def test_changelist_search_by_order_number_transaction_id_and_reference():
    viewer_client = client_for("viewer")
    make_payment(out_trade_no="FINDME", transaction_id="4200001234", reference="inv-2026-001")
    make_payment(out_trade_no="OTHER", reference="something")
    for query in ("FINDME", "4200001234", "inv-2026-001", " FINDME "):
        text = page_text(viewer_client.get(changelist("payment"), {"q": query}))
        assert "FINDME" in text
        assert "OTHER" not in text.split()


def changelist_queries(client, rows: int) -> int:
    Payment.objects.all().delete()
    for n in range(rows):
        make_payment(
            status=(S.SUCCEEDED, S.PENDING, S.FAILED)[n % 3],
            attention=Payment.Attention.LATE_SUCCESS if n % 7 == 0 else "",
            refunded_amount=Decimal("1.00") if n % 5 == 0 else Decimal("0"),
        )
    with CaptureQueriesContext(connection) as queries:
        response = client.get(changelist("payment"), {"all": ""})
    assert response.status_code == 200
    assert response.content.decode().count("motp-badge motp-status-") == rows
    return len(queries)


def test_changelist_queries_do_not_grow_with_the_rows_shown():
    viewer = client_for("viewer")
    assert changelist_queries(viewer, 20) == changelist_queries(viewer, 100)


def test_changelist_needs_view_permission():
    nobody_client = client_for("nobody")
    assert nobody_client.get(changelist("payment")).status_code == 403


# Taking a payment -----------------------------------------------------------------------------


def take(client, **fields):
    data = {"method": "quick", "amount": "10.00", "auth_code": "", "reference": ""}
    data.update(fields)
    return client.post(ADD, data, follow=True)


def test_add_page_is_the_cashiers_form_with_the_code_field_autofocused():
    cashier_client = client_for("cashier")
    response = cashier_client.get(ADD)
    assert response.status_code == 200
    content = response.content.decode()
    for name in ("method", "amount", "auth_code", "reference", "fee_rate", "sub_store_name"):
        assert f'name="{name}"' in content
    code_input = re.search(r"<input[^>]*name=\"auth_code\"[^>]*>", content).group(0)
    assert "autofocus" in code_input
    assert content.count("autofocus") == 1


def test_qr_payment_goes_to_its_page_with_the_qr_code_and_the_buyers_total(motp_sandbox):
    response = take(client_for("cashier"), method="native", amount="12.00", fee_rate="2.5")
    payment = Payment.objects.get()
    assert response.redirect_chain[-1][0] == f"/admin/django_motp/payment/{payment.pk}/change/"
    content = response.content.decode()
    assert "<svg" in content
    assert payment.qr_code
    text = page_text(response)
    assert "WAITING FOR THE BUYER TO SCAN" in text
    assert "12.00 USD" in text
    assert "The buyer pays 12.30 USD" in text
    assert f'data-motp-status-url="/admin/django_motp/payment/{payment.pk}/status/"' in content
    assert '<noscript><meta http-equiv="refresh"' in content


def test_payment_code_paid_shows_paid_and_never_the_code(motp_sandbox):
    response = take(client_for("cashier"), auth_code=AUTH_CODE_PAID, reference="till-3")
    payment = Payment.objects.get()
    assert payment.status == S.SUCCEEDED
    assert payment.reference == "till-3"
    text = page_text(response)
    assert "PAID" in text.split()
    assert (
        f"Paid: 10.00 USD from payment code \u2022\u2022\u2022\u2022{AUTH_CODE_PAID[-4:]}" in text
    )
    assert AUTH_CODE_PAID not in response.content.decode()


def test_payment_code_waiting_for_a_pin_shows_waiting_and_time_left(motp_sandbox):
    motp_sandbox.configure(pay_delay=30)
    response = take(client_for("cashier"), auth_code=AUTH_CODE_USERPAYING)
    payment = Payment.objects.get()
    assert payment.status == S.PENDING
    text = page_text(response)
    assert "WAITING FOR THE BUYER (PIN)" in text
    assert "Time left:" in text
    seconds = response.context["seconds_left"]
    assert 0 < seconds <= 45


def test_payment_code_that_waits_for_a_pin_within_the_call_is_paid(motp_sandbox):
    response = take(client_for("cashier"), auth_code=AUTH_CODE_PIN)
    assert Payment.objects.get().status == S.SUCCEEDED
    assert "PAID" in page_text(response).split()


def test_declined_payment_code_shows_declined_with_the_gateways_reason(motp_sandbox):
    response = take(client_for("cashier"), auth_code=AUTH_CODE_DECLINED)
    assert Payment.objects.get().status == S.FAILED
    text = page_text(response)
    assert "DECLINED" in text.split()
    assert "PAYERROR: insufficient balance" in text


@pytest.mark.parametrize(
    ("fields", "field", "error"),
    [
        ({"auth_code": ""}, "auth_code", "Scan the buyer's payment code."),
        ({"auth_code": "12ab"}, "auth_code", "The payment code must be 10 to 24 digits"),
        ({"amount": "0"}, "amount", "Ensure this value is greater than or equal to 0.01."),
        ({"amount": "1.234", "auth_code": AUTH_CODE_PAID}, "amount", "no more than 2 decimal"),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_is_saved_or_sent(motp_sandbox, fields, field, error):
    response = take(client_for("cashier"), **fields)
    assert response.status_code == 200
    assert error in " ".join(str(e) for e in response.context["form"].errors[field])
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0
    assert "12ab" not in response.content.decode()  # a code typed is never written back


def test_service_errors_without_a_form_field_show_at_the_top(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "STORE_ID": ""}
    response = take(client_for("cashier"), method="native")
    assert "No store id" in page_text(response)
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


def test_taking_a_payment_works_under_atomic_requests(motp_sandbox, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    take(client_for("cashier"), auth_code=AUTH_CODE_PAID)
    assert Payment.objects.get().status == S.SUCCEEDED


def test_taking_a_payment_needs_add_payment(motp_sandbox):
    viewer_client = client_for("viewer")
    assert viewer_client.get(ADD).status_code == 403
    response = viewer_client.post(ADD, {"method": "native", "amount": "5.00"})
    assert response.status_code == 403
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0
    assert "Take a payment" not in page_text(viewer_client.get(changelist("payment")))


def test_the_cashier_sees_take_a_payment():
    cashier_client = client_for("cashier")
    assert "Take a payment" in page_text(cashier_client.get(changelist("payment")))


def test_api_calls_on_the_payment_page_are_redacted(motp_sandbox):
    cashier_client = client_for("cashier")
    take(cashier_client, auth_code=AUTH_CODE_PAID)
    payment = Payment.objects.get()
    assert ApiCall.objects.filter(out_trade_no=payment.out_trade_no).exists()
    content = cashier_client.get(f"/admin/django_motp/payment/{payment.pk}/change/").content
    assert b"quick_pay" in content
    for secret in (AUTH_CODE_PAID, motp_sandbox.password):
        assert secret.encode() not in content


def test_date_drill_down_offers_the_months_and_days_between_the_first_and_last_payment():
    make_payment(created_at=datetime(2025, 1, 15, 12, tzinfo=UTC))
    make_payment(created_at=datetime(2025, 3, 2, 12, tzinfo=UTC))
    viewer = client_for("viewer")
    text = page_text(viewer.get(changelist("payment")))
    for month in ("January 2025", "February 2025", "March 2025"):
        assert month in text
    assert "April 2025" not in text
    march = page_text(
        viewer.get(changelist("payment"), {"created_at__year": 2025, "created_at__month": 3})
    )
    assert "March 1" in march
    assert "March 31" in march
    assert "\u2039 2025" in march  # back to the year
