"""Property-based run against the live test server, the sandbox gateway behind it: whatever a
client sends, the API never answers 500, and a 400 leaves no row and makes no gateway call."""

from __future__ import annotations

import json
import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_motp.models import IdempotencyKey, Payment, Refund
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PAID,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
    AUTH_CODE_USERPAYING,
)

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.fixtures_api"]

RUN = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MISSING = object()

# Amounts as a client might write them: valid, too precise, negative, huge, or not numbers.
number_text = st.one_of(
    st.decimals(min_value=-100, max_value=10**11, places=2, allow_nan=False).map(str),
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False).map(str),
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.sampled_from(["1e3", "1E-2", "0.1e1", "-0", "NaN", "Infinity", "1_000", " 5.00 "]),
)


@st.composite
def json_value(draw, text: st.SearchStrategy[str]) -> str:
    """A JSON literal for a field: the number as written, as a string, or another JSON type."""
    raw = draw(text)
    kind = draw(st.sampled_from(["raw", "string", "other"]))
    if kind == "raw":
        try:
            json.loads(raw)
            return raw
        except ValueError:
            pass
    if kind == "other":
        return json.dumps(draw(st.sampled_from([None, True, [], {}, [raw]])))
    return json.dumps(raw)


test_codes = st.sampled_from(
    [
        AUTH_CODE_PAID,
        AUTH_CODE_DECLINED,
        AUTH_CODE_USERPAYING,
        AUTH_CODE_NEVER_PAID,
        AUTH_CODE_REFUND_PROCESSING,
        AUTH_CODE_REFUND_REFUSED,
    ]
)
clean_text = st.text(st.characters(exclude_characters="\x00"), max_size=64)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
order_number = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=32)
money = st.decimals(min_value="0.01", max_value=10000, places=2).map(str)


def either(raw_or_string: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The value written as a JSON number, or as a string."""
    return st.one_of(raw_or_string, raw_or_string.map(json.dumps))


#: Per field: (what a correct client sends, anything else), each as JSON text.
PAYMENT_FIELDS = {
    "method": (
        st.sampled_from(["native", "quick", "jsapi"]).map(json.dumps),
        st.sampled_from(["card", "", "QUICK", 1, None]).map(json.dumps),
    ),
    "amount": (either(money), json_value(number_text)),
    "auth_code": (
        test_codes.map(json.dumps),
        st.one_of(st.text(string.digits, max_size=26), st.text(max_size=30)).map(json.dumps),
    ),
    "fee_rate": (
        either(st.decimals(min_value=0, max_value=100, places=2).map(str)),
        json_value(number_text),
    ),
    "reference": (clean_text.map(json.dumps), st.text(max_size=300).map(json.dumps)),
    "metadata": (
        st.dictionaries(clean_text, json_leaves, max_size=4).map(json.dumps),
        st.one_of(st.lists(json_leaves, max_size=3), json_leaves, st.just({"\x00": 1})).map(
            json.dumps
        ),
    ),
    "out_trade_no": (
        order_number.map(json.dumps),
        st.text(string.ascii_letters + " /.", max_size=40).map(json.dumps),
    ),
    "service_id": (
        st.one_of(st.integers(1, 100), st.sampled_from([2**31 - 1, 2**31, 2**40])).map(str),
        json_value(st.integers(-5, 2**70).map(str)),
    ),
    "sub_store_id": (clean_text.map(json.dumps), st.text(max_size=70).map(json.dumps)),
    "sub_store_name": (clean_text.map(json.dumps), st.text(max_size=70).map(json.dumps)),
}
REFUND_FIELDS = {
    "amount": (either(money), json_value(number_text)),
    "reason": (
        st.text(st.characters(exclude_characters="\x00"), max_size=255).map(json.dumps),
        st.text(max_size=300).map(json.dumps),
    ),
    "out_refund_no": (
        order_number.map(json.dumps),
        st.text(string.ascii_letters + " /.", max_size=40).map(json.dumps),
    ),
}
keys = st.one_of(st.none(), st.text(string.ascii_letters + string.digits + "-_", max_size=260))


@st.composite
def body(draw, fields: dict, required: tuple[str, ...] = ()) -> str:
    """A JSON object written by hand (numbers keep the digits drawn): each field present or not
    (``required`` ones mostly present), in half the examples all of them as a correct client
    writes them, in the other half all but one, written any other way."""
    wild = draw(st.one_of(st.none(), st.sampled_from(list(fields))))
    values = {}
    for name, (good, bad) in fields.items():
        present = draw(st.integers(0, 9)) > 0 if name in required else draw(st.booleans())
        if present or name == wild:
            values[name] = draw(bad if name == wild else good)
    if values.get("method") == '"native"' and wild != "auth_code":
        values.pop("auth_code", None)  # a QR code payment takes none
    return "{" + ", ".join(f"{json.dumps(name)}: {text}" for name, text in values.items()) + "}"


def counts() -> tuple[int, int, int]:
    return Payment.objects.count(), Refund.objects.count(), IdempotencyKey.objects.count()


@pytest.fixture
def terminal(live_server, make_user, motp_sandbox):
    """A requests session logged in with HTTP Basic as a user holding every API permission."""
    user = make_user("view_payment", "add_payment", "refund_payment")
    session = requests.Session()
    session.auth = (user.username, "secret")
    session.headers["Content-Type"] = "application/json"
    yield session
    session.close()


def check(response: requests.Response, before: tuple[int, int, int], calls_before: int, sandbox):
    assert response.status_code < 500, response.text
    if response.status_code == 400:
        assert counts() == before, response.text
        assert sandbox.calls() == calls_before


def send(session, url, text, key):
    headers = {} if key is None else {"Idempotency-Key": key}
    return session.post(url, data=text.encode(), headers=headers, timeout=30)


def test_creating_payments_never_fails_and_a_400_saves_nothing(terminal, live_server, motp_sandbox):
    url = f"{live_server.url}/motp/payments/"

    @RUN
    @given(text=body(PAYMENT_FIELDS, required=("method", "amount", "auth_code")), key=keys)
    def run(text, key):
        before, calls = counts(), motp_sandbox.calls()
        check(send(terminal, url, text, key), before, calls, motp_sandbox)

    run()


def test_refunding_never_fails_and_a_400_saves_nothing(terminal, live_server, motp_sandbox):
    paid = []
    for auth_code in (AUTH_CODE_PAID, AUTH_CODE_REFUND_PROCESSING, AUTH_CODE_REFUND_REFUSED):
        response = terminal.post(
            f"{live_server.url}/motp/payments/",
            json={"method": "quick", "amount": "50.00", "auth_code": auth_code},
            timeout=30,
        )
        assert response.status_code == 201
        paid.append(response.json()["out_trade_no"])

    @RUN
    @given(
        number=st.sampled_from([*paid, "NOSUCH", "a b"]),
        text=body(REFUND_FIELDS),
        key=keys,
    )
    def run(number, text, key):
        before, calls = counts(), motp_sandbox.calls()
        url = f"{live_server.url}/motp/payments/{number}/refunds/"
        check(send(terminal, url, text, key), before, calls, motp_sandbox)

    run()


def test_lists_never_fail_whatever_the_query(terminal, live_server, motp_sandbox):
    words = st.text(max_size=30)
    params = st.dictionaries(
        st.sampled_from(
            [
                "status",
                "method",
                "reference",
                "created_after",
                "created_before",
                "page_size",
                "cursor",
                "payment",
            ]
        ),
        st.one_of(words, st.sampled_from(["pending", "quick", "2026-11-26T10:00:00Z", "2"])),
    )

    @RUN
    @given(path=st.sampled_from(["payments", "refunds"]), query=params)
    def run(path, query):
        response = terminal.get(f"{live_server.url}/motp/{path}/", params=query, timeout=30)
        assert response.status_code in (200, 400, 404), response.text

    run()
