"""Helpers for the REST API tests: the API's paths and requests as a till sends them."""

from __future__ import annotations

from decimal import Decimal

from django_motp.models import Payment
from django_motp.testing import AUTH_CODE_PAID

PAYMENTS = "/motp/payments/"
REFUNDS = "/motp/refunds/"


def pay(api, amount="10.00", auth_code=AUTH_CODE_PAID, method="quick", **fields):
    body = {"method": method, "amount": amount, **fields}
    if method != "native":
        body["auth_code"] = auth_code
    return api.post(PAYMENTS, body, format="json")


def post_raw(api, path, text):
    """POST ``text`` as it is, so that JSON numbers keep every digit written."""
    return api.post(path, data=text, content_type="application/json")


def row(out_trade_no, **fields):
    """A payment written straight to the database, for the list and filter tests."""
    values = {
        "out_trade_no": out_trade_no,
        "method": "native",
        "amount": Decimal("1.00"),
        "service_id": 30,
        "store_id": "1",
        "status": Payment.Status.PENDING,
        **fields,
    }
    return Payment.objects.create(**values)


def refund_url(out_trade_no):
    return f"{PAYMENTS}{out_trade_no}/refunds/"
