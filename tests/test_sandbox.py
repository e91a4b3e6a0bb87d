"""The sandbox gateway over loopback, with raw ``requests`` calls (no gateway client).

What is asserted is what a client of the gateway sees: HTTP statuses, raw answer text and shapes;
and what a person sees on the buyer page and through the control API.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.cache import cache

from django_motp import __version__, conf
from django_motp.client import MOTPClient
from django_motp.sandbox import ENDPOINTS, NotFound, Refused, SandboxServer
from django_motp.sandbox.cli import add_arguments
from django_motp.sandbox.faults import Fault, FaultKind, When
from django_motp.sandbox.jsonio import dumps
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
    AUTH_CODE_USERPAYING,
    FIXTURE_DELAYS,
)
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
STORE_ID = "10001"


class Gateway:
    """Raw HTTP calls to a sandbox, as a gateway client makes them."""

    def __init__(self, url: str, user: str = "sandbox", password: str = "sandbox") -> None:
        self.url = url
        self.user, self.password = user, password
        self.session = requests.Session()
        self._token: str | None = None

    def send(
        self,
        operation: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: str | None = None,
        content_type: str = "application/json",
        **kwargs: Any,
    ) -> requests.Response:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 10)
        data = raw if raw is not None else dumps(body)
        return self.session.post(
            self.url + ENDPOINTS[operation], data=data, headers=headers, **kwargs
        )

    def token(self) -> str:
        answer = self.send("token", {"user": self.user, "password": self.password})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["data"]["token"]
        return token

    def call(self, operation: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if self._token is None:
            self._token = self.token()
        return self.send(operation, body, token=self._token, **kwargs)

    def ok(self, operation: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The ``data`` of a successful answer (amounts as ``Decimal``)."""
        answer = self.call(operation, body, **kwargs)
        assert answer.status_code == 200, answer.text
        payload = answer.json(parse_float=Decimal)
        assert set(payload) == {"success", "data"}
        assert payload["success"] is True, answer.text
        data: dict[str, Any] = payload["data"]
        return data

    def refused(self, operation: str, body: Any = None, **kwargs: Any) -> str:
        """The message of a ``success: false`` answer, which must come with HTTP 200."""
        answer = self.call(operation, body, **kwargs)
        assert answer.status_code == 200, answer.text
        payload = answer.json()
        assert payload["success"] is False, answer.text
        message: str = payload["data"]["message"]
        return message


def payment(
    out_trade_no: str, amount: str = "1.00", auth_code: Any = AUTH_CODE_PAID, **extra: Any
) -> dict[str, Any]:
    body = native(out_trade_no, amount, **extra)
    body["auth_code"] = auth_code
    return body


def native(out_trade_no: str, amount: str = "1.00", **extra: Any) -> dict[str, Any]:
    return {
        "service_id": 30,
        "store_id": STORE_ID,
        "amount": Decimal(amount),
        "out_trade_no": out_trade_no,
        **extra,
    }


def refund(out_trade_no: str, out_refund_no: str, amount: str = "1.00") -> dict[str, Any]:
    return {
        "service_id": 30,
        "store_id": STORE_ID,
        "refund_amount": Decimal(amount),
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "reason": "returned",
    }


def check(out_trade_no: str, out_refund_no: str | None = None) -> dict[str, Any]:
    body = {"store_id": STORE_ID, "out_trade_no": out_trade_no}
    if out_refund_no:
        body["out_refund_no"] = out_refund_no
    return body


def exists(sandbox: Any, out_trade_no: str) -> bool:
    try:
        sandbox.order(out_trade_no)
    except NotFound:
        return False
    return True


@pytest.fixture
def gw(motp_sandbox):
    gateway = Gateway(motp_sandbox.url)
    yield gateway
    gateway.session.close()


def control(sandbox: Any, method: str, path: str, body: Any = None) -> requests.Response:
    data = None if body is None else dumps(body)
    headers = {"Content-Type": "application/json"} if data else {}
    return requests.request(method, sandbox.url + path, data=data, headers=headers, timeout=10)


# The package


def test_paths_are_the_default_endpoints_of_the_settings():
    assert ENDPOINTS == conf.DEFAULT_ENDPOINTS


def _python(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def test_the_sandbox_needs_no_django():
    code = (
        "import sys, django_motp.sandbox, django_motp.sandbox.cli; "
        "assert 'django' not in sys.modules, 'django was imported'"
    )
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr


def test_module_help_lists_the_options():
    result = _python("-m", "django_motp.sandbox", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m django_motp.sandbox")
    for option in ("--port", "--host", "--store-id", "--pin-delay", "--fault-rate", "--verbose"):
        assert option in result.stdout


def _start(*args: str, settings_module: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a sandbox process on a free port; it and the URL it announces on its first line."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONUNBUFFERED"] = "1"
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    process = subprocess.Popen(
        [sys.executable, *args, "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        process.kill()
        pytest.fail(f"no URL announced: {line!r} {process.communicate()[1]}")
    return process, match.group(0)


def _interrupt(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()


def test_module_serves_with_its_command_line_options():
    process, url = _start(
        "-m", "django_motp.sandbox", "--username", "shop", "--password", "pw", "--store-id", "42"
    )
    gateway = Gateway(url, "shop", "pw")
    body = {**native("CLI-1"), "store_id": "42"}
    assert gateway.ok("native_pay", body)["out_trade_no"] == "CLI-1"
    assert gateway.send("token", {"user": "sandbox", "password": "sandbox"}).status_code == 401
    gateway.session.close()
    assert _interrupt(process) == 0


def test_management_command_takes_the_projects_credentials():
    process, url = _start(
        "-m", "django", "motp_sandbox", "--pin-delay", "0.1", settings_module="tests.settings"
    )
    # tests/settings.py: USERNAME "tests", PASSWORD "tests-password", STORE_ID "10001".
    gateway = Gateway(url, "tests", "tests-password")
    data = gateway.ok("quick_pay", payment("CMD-1", auth_code=AUTH_CODE_PIN))
    assert data["result_code"] == "SUCCESS"
    gateway.session.close()
    assert _interrupt(process) == 0
    assert process.stderr is not None
    assert f"set it to {url}" in process.stderr.read()


# Tokens and authentication


def test_token_answer_is_the_specs_shape(gw):
    answer = gw.send("token", {"user": "sandbox", "password": "sandbox"})
    assert answer.status_code == 200
    payload = answer.json()
    assert set(payload) == {"success", "data"}
    assert payload["success"] is True
    assert payload["data"]["message"] == "SUCCESS"
    assert len(payload["data"]["token"]) >= 32
    assert gw.token() != payload["data"]["token"]


@pytest.mark.parametrize(
    "credentials",
    [{"user": "sandbox", "password": "wrong"}, {"user": "someone", "password": "sandbox"}],
)
def test_wrong_credentials_are_401(gw, credentials):
    answer = gw.send("token", credentials)
    assert answer.status_code == 401
    assert answer.json() == {"success": False, "data": {"message": "Invalid user or password"}}


def test_token_call_without_password_names_the_field(gw):
    answer = gw.send("token", {"user": "sandbox"})
    assert answer.status_code == 200
    assert answer.json()["data"]["message"] == "password is required"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-token", "Basic c2FuZGJveDpzYW5kYm94"],
)
def test_calls_without_a_valid_token_are_401(gw, authorization):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    answer = gw.session.post(
        gw.url + ENDPOINTS["check_payment"], data=dumps(check("X")), headers=headers, timeout=10
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json() == {
        "success": False,
        "data": {"message": "Unauthenticated: token is missing or expired"},
    }


def test_tokens_expire_after_their_ttl(motp_sandbox, gw):
    motp_sandbox.configure(token_ttl=0.3)
    token = gw.token()
    assert gw.send("native_pay", native("TTL-1"), token=token).json()["success"] is True
    wait_until(lambda: gw.send("check_payment", check("TTL-1"), token=token).status_code == 401)
    assert gw.send("check_payment", check("TTL-1"), token=gw.token()).status_code == 200


def test_expire_control_call_voids_every_token(motp_sandbox, gw):
    tokens = [gw.token(), gw.token()]
    answer = control(motp_sandbox, "POST", "/_sandbox/tokens/expire")
    assert answer.json() == {"success": True, "data": {"expired": 2}}
    for token in tokens:
        assert gw.send("check_payment", check("X"), token=token).status_code == 401
    assert gw.send("check_payment", check("X"), token=gw.token()).status_code == 200


def test_auth_failure_can_come_as_http_200(motp_sandbox, gw):
    motp_sandbox.configure(auth_failure_status=200)
    token = gw.token()
    motp_sandbox.expire_tokens()
    answer = gw.send("check_payment", check("X"), token=token)
    assert answer.status_code == 200
    assert answer.json() == {"success": False, "data": {"message": "Token is invalid or expired"}}
    assert gw.send("token", {"user": "sandbox", "password": "no"}).status_code == 200


def test_legacy_token_shape(motp_sandbox, gw):
    motp_sandbox.configure(legacy_token=True)
    payload = gw.send("token", {"user": "sandbox", "password": "sandbox"}).json()
    assert set(payload) == {"status", "msg"}
    assert payload["status"] == "SUCCESS"
    answer = gw.send("native_pay", native("LEGACY-1"), token=payload["msg"])
    assert answer.json()["success"] is True


# Validation: every refusal is HTTP 200, success false, a message naming the field


REQUIRED = {
    "native_pay": (native("V-1"), ["service_id", "store_id", "amount", "out_trade_no"]),
    "quick_pay": (
        payment("V-1"),
        ["service_id", "store_id", "amount", "out_trade_no", "auth_code"],
    ),
    "jsapi_pay": (
        payment("V-1"),
        ["service_id", "store_id", "amount", "out_trade_no", "auth_code"],
    ),
    "refund": (
        refund("V-1", "VR-1"),
        ["service_id", "store_id", "refund_amount", "out_trade_no", "out_refund_no"],
    ),
    "check_payment": (check("V-1"), ["store_id", "out_trade_no"]),
    "check_refund": (check("V-1"), ["store_id", "out_trade_no"]),
}


@pytest.mark.parametrize(
    ("operation", "field"),
    [(operation, field) for operation, (_, fields) in REQUIRED.items() for field in fields],
)
def test_each_required_field_is_named_when_missing(gw, operation, field):
    body = {k: v for k, v in REQUIRED[operation][0].items() if k != field}
    assert gw.refused(operation, body) == f"{field} is required"


@pytest.mark.parametrize(
    ("operation", "changes", "message"),
    [
        ("native_pay", {"service_id": "30"}, "service_id must be a positive integer"),
        ("native_pay", {"service_id": True}, "service_id must be a positive integer"),
        ("native_pay", {"service_id": 0}, "service_id must be a positive integer"),
        ("native_pay", {"store_id": "999"}, "store_id 999 is not a store of this merchant"),
        ("native_pay", {"store_id": 999}, "store_id 999 is not a store of this merchant"),
        ("native_pay", {"amount": "1.00"}, "amount must be a JSON number such as 1.00, not a "),
        ("native_pay", {"amount": Decimal("0.00")}, "amount must be greater than 0"),
        ("native_pay", {"amount": Decimal("-1.00")}, "amount must be greater than 0"),
        ("native_pay", {"amount": Decimal("1.005")}, "amount must have at most 2 decimals"),
        ("native_pay", {"amount": Decimal("1E-7")}, "amount must have at most 2 decimals"),
        ("native_pay", {"amount": Decimal("10000000000.00")}, "amount must be at most 9999999"),
        ("native_pay", {"amount": [1]}, "amount must be a JSON number such as 1.00, not an"),
        ("native_pay", {"fee_rate": 101}, "fee_rate must be a number from 0 to 100"),
        ("native_pay", {"fee_rate": -1}, "fee_rate must be a number from 0 to 100"),
        ("native_pay", {"fee_rate": "2"}, "fee_rate must be a number from 0 to 100"),
        ("native_pay", {"sub_store_name": "x" * 65}, "sub_store_name must be a string of at m"),
        ("native_pay", {"sub_store_id": ["7"]}, "sub_store_id must be a string of at most"),
        ("native_pay", {"out_trade_no": "x" * 65}, "out_trade_no must be a non-empty string"),
        ("native_pay", {"out_trade_no": 12345}, "out_trade_no must be a non-empty string"),
        ("quick_pay", {"auth_code": "13461000000000000x"}, "auth_code is invalid"),
        ("quick_pay", {"auth_code": "123456789"}, "auth_code is invalid"),
        ("quick_pay", {"auth_code": "1" * 25}, "auth_code is invalid"),
        ("quick_pay", {"auth_code": -1234567890}, "auth_code is invalid"),
        ("jsapi_pay", {"auth_code": "abc"}, "auth_code is invalid"),
        ("refund", {"refund_amount": "1.00"}, "refund_amount must be a JSON number"),
        ("refund", {"out_refund_no": 7}, "out_refund_no must be a non-empty string"),
        ("refund", {"reason": "x" * 257}, "reason must be a string of at most 256 characters"),
        ("check_payment", {"store_id": "1"}, "store_id 1 is not a store of this merchant"),
        ("check_refund", {"out_refund_no": 3}, "out_refund_no must be a non-empty string"),
    ],
)
def test_bad_values_are_refused_naming_the_field(motp_sandbox, gw, operation, changes, message):
    body = {**REQUIRED[operation][0], **changes}
    assert gw.refused(operation, body).startswith(message)
    assert motp_sandbox.calls(operation) == 1
    assert motp_sandbox.state.order_dicts() == []


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        ('{"out_trade_no": "X"}', "text/plain", "Content-Type must be application/json"),
        ("out_trade_no=X", "application/x-www-form-urlencoded", "Content-Type must be appl"),
        ('{"out_trade_no": ', "application/json", "The request body is not valid JSON"),
        ('{"amount": NaN}', "application/json", "The request body is not valid JSON"),
        ("", "application/json", "The request body is not valid JSON"),
        ('["X"]', "application/json", "The request body must be a JSON object, not an array"),
        ('"X"', "application/json; charset=utf-8", "The request body must be a JSON object"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(gw, raw, content_type, message):
    assert gw.refused("check_payment", raw=raw, content_type=content_type).startswith(message)


@pytest.mark.parametrize(
    "changes",
    [
        {"store_id": int(STORE_ID)},
        {"amount": Decimal("9999999999.99")},
        {"amount": 5},
        {"auth_code": int(AUTH_CODE_PAID)},
        {"auth_code": "1234567890"},
        {"auth_code": "1" * 24},
        {"fee_rate": Decimal("2.5"), "sub_store_id": 7, "sub_store_name": "x" * 64},
        {"sub_store_id": "front", "sub_store_name": None, "unknown_field": True},
    ],
)
def test_valid_variants_are_accepted(gw, changes):
    data = gw.ok("quick_pay", {**payment("OK-1"), **changes})
    assert data["result_code"] == "SUCCESS"


def test_native_pay_ignores_the_auth_code(gw):
    assert gw.ok("native_pay", {**native("N-1"), "auth_code": "not digits"})["qr_code"]


# Answer shapes and amounts


def test_native_pay_answer(gw):
    answer = gw.call("native_pay", native("SHAPE-N", "0.01"))
    assert answer.headers["Content-Type"] == "application/json"
    data = answer.json(parse_float=Decimal)["data"]
    assert set(data) == {"qr_code", "amount", "out_trade_no", "result_code"}
    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=[A-Za-z0-9]+", data["qr_code"])
    assert (data["amount"], data["out_trade_no"], data["result_code"]) == (
        Decimal("0.01"),
        "SHAPE-N",
        "SUCCESS",
    )
    assert gw.ok("native_pay", native("SHAPE-N2"))["qr_code"] != data["qr_code"]


@pytest.mark.parametrize("operation", ["quick_pay", "jsapi_pay"])
def test_code_pay_answer(gw, operation):
    data = gw.ok(operation, payment("SHAPE-Q", "2.50"))
    assert set(data) == {"amount", "currency", "out_trade_no", "transaction_id", "result_code"}
    assert data["amount"] == Decimal("2.50")
    assert data["currency"] == "USD"
    assert data["out_trade_no"] == "SHAPE-Q"
    assert data["transaction_id"].isdigit()
    assert data["result_code"] == "SUCCESS"


def test_refund_and_status_answers(gw):
    paid = gw.ok("quick_pay", payment("SHAPE-R", "5.00"))
    answer = gw.call("refund", refund("SHAPE-R", "SHAPE-R-1", "1.50"))
    assert re.search(rf'"store_id":\s*{STORE_ID}[,}}]', answer.text)  # a number, not a string
    assert answer.json(parse_float=Decimal)["data"] == {
        "service_id": 30,
        "store_id": int(STORE_ID),
        "refund_amount": Decimal("1.50"),
        "currency": "USD",
        "out_trade_no": "SHAPE-R",
        "out_refund_no": "SHAPE-R-1",
        "transaction_id": paid["transaction_id"],
        "result_code": "SUCCESS",
    }
    assert gw.ok("check_payment", check("SHAPE-R")) == {
        "is_success": True,
        "service_id": 30,
        "out_trade_no": "SHAPE-R",
        "amount": Decimal("5.00"),
        "out_refund_no": "SHAPE-R-1",
        "currency": "USD",
        "message": "Payment Successful!",
    }
    assert gw.ok("check_refund", check("SHAPE-R", "SHAPE-R-1")) == {
        "is_success": True,
        "service_id": 30,
        "out_trade_no": "SHAPE-R",
        "out_refund_no": "SHAPE-R-1",
        "amount": Decimal("1.50"),
        "currency": "USD",
        "message": "Refund Successful!",
    }


def test_payment_status_names_the_latest_refund(motp_sandbox, gw):
    gw.ok("quick_pay", payment("SHAPE-L", "5.00", auth_code=AUTH_CODE_REFUND_REFUSED))
    answer = gw.call("check_payment", check("SHAPE-L"))
    assert '"out_refund_no":null' in answer.text
    gw.refused("refund", refund("SHAPE-L", "SHAPE-L-1"))  # refused, but recorded
    assert gw.ok("check_payment", check("SHAPE-L"))["out_refund_no"] == "SHAPE-L-1"
    gw.refused("refund", refund("SHAPE-L", "SHAPE-L-2"))
    assert gw.ok("check_payment", check("SHAPE-L"))["out_refund_no"] == "SHAPE-L-2"


@pytest.mark.parametrize("amount", ["19.90", "0.01", "999999.99", "9999999999.99"])
def test_amounts_keep_their_digits_in_the_raw_answer(gw, amount):
    def raw(operation: str, fields: str) -> str:
        base = f'"service_id": 30, "store_id": "{STORE_ID}", "out_trade_no": "RAW-{amount}"'
        answer = gw.call(operation, raw="{" + base + ", " + fields + "}")
        assert answer.json()["success"] is True, answer.text
        return answer.text

    pattern = rf'":\s*{re.escape(amount)}[,}}]'
    paid = raw("quick_pay", f'"amount": {amount}, "auth_code": "{AUTH_CODE_PAID}"')
    assert re.search(rf'"amount{pattern}', paid)
    assert re.search(rf'"amount{pattern}', raw("check_payment", '"x": 0'))
    refunded = raw("refund", f'"refund_amount": {amount}, "out_refund_no": "RAW-R"')
    assert re.search(rf'"refund_amount{pattern}', refunded)
    assert re.search(rf'"amount{pattern}', raw("check_refund", '"out_refund_no": "RAW-R"'))


def test_amounts_are_answered_with_two_decimals(gw):
    answer = gw.call(
        "native_pay", raw=dumps(native("TWO-1")).replace('"amount":1.00', '"amount":7')
    )
    assert '"amount":7.00' in answer.text


def test_an_out_trade_no_is_used_once(motp_sandbox, gw):
    gw.ok("native_pay", native("DUP-1", "3.00"))
    assert gw.refused("quick_pay", payment("DUP-1")) == "out_trade_no DUP-1 already used"
    assert gw.refused("native_pay", native("DUP-1")) == "out_trade_no DUP-1 already used"
    order = motp_sandbox.order("DUP-1")
    assert (order["method"], order["amount"], order["status"]) == (
        "native",
        Decimal("3.00"),
        "NOTPAY",
    )


def test_unknown_order(gw):
    assert gw.refused("check_payment", check("NOPE-1")) == "Order NOPE-1 not found"
    assert gw.refused("refund", refund("NOPE-1", "NOPE-R")) == "Order NOPE-1 not found"
    assert gw.refused("check_refund", check("NOPE-1")) == "Order NOPE-1 not found"


# Scripted outcomes by test auth code


def test_native_order_waits_for_the_buyer(motp_sandbox, gw):
    gw.ok("native_pay", native("NAT-1"))
    status = gw.ok("check_payment", check("NAT-1"))
    assert (status["is_success"], status["message"]) == (False, "NOTPAY: waiting for the buyer")
    assert motp_sandbox.pay("NAT-1")["status"] == "SUCCESS"
    status = gw.ok("check_payment", check("NAT-1"))
    assert (status["is_success"], status["message"]) == (True, "Payment Successful!")


@pytest.mark.parametrize("operation", ["quick_pay", "jsapi_pay"])
@pytest.mark.parametrize("code", [AUTH_CODE_PAID, "1234567890", "9" * 24])
def test_paid_at_once(gw, operation, code):
    assert gw.ok(operation, payment("PAID-1", auth_code=code))["result_code"] == "SUCCESS"
    assert gw.ok("check_payment", check("PAID-1"))["is_success"] is True


def test_pin_holds_the_call_then_pays(motp_sandbox, gw):
    motp_sandbox.configure(pin_delay=0.5)
    result: dict[str, Any] = {}

    def pay() -> None:
        started = time.monotonic()
        result["answer"] = Gateway(gw.url).call(
            "quick_pay", payment("PIN-1", auth_code=AUTH_CODE_PIN)
        )
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=pay)
    thread.start()
    wait_until(lambda: exists(motp_sandbox, "PIN-1"))
    # While the buyer types, a status check answers "not paid yet".
    status = gw.ok("check_payment", check("PIN-1"))
    assert (status["is_success"], status["message"]) == (False, "NOTPAY: waiting for the buyer")
    thread.join(timeout=10)
    assert result["answer"].json()["data"]["result_code"] == "SUCCESS"
    assert result["seconds"] >= 0.5  # held while the buyer typed
    assert gw.ok("check_payment", check("PIN-1"))["is_success"] is True


def test_a_pin_hold_from_before_a_reset_pays_no_later_order(motp_sandbox, gw):
    # Test A's quick pay is held for the PIN when the next test's fixture resets the sandbox,
    # and test B makes an order with the same out_trade_no.
    motp_sandbox.configure(pin_delay=1)
    result: dict[str, Any] = {}

    def pay() -> None:
        body = payment("PIN-R", auth_code=AUTH_CODE_PIN)
        result["answer"] = Gateway(gw.url).call("quick_pay", body)

    thread = threading.Thread(target=pay)
    thread.start()
    wait_until(lambda: exists(motp_sandbox, "PIN-R"))
    motp_sandbox.state.reset()
    gw.ok("native_pay", native("PIN-R"))
    thread.join(timeout=10)
    assert result["answer"].json() == {
        "success": False,
        "data": {"message": "The sandbox was reset during the PIN wait: order PIN-R is void"},
    }
    assert motp_sandbox.order("PIN-R")["status"] == "NOTPAY"  # B's order, still unpaid


def test_userpaying_is_paid_after_pay_delay(motp_sandbox, gw):
    motp_sandbox.configure(pay_delay=0.3)
    message = gw.refused("quick_pay", payment("UP-1", auth_code=AUTH_CODE_USERPAYING))
    assert message == "USERPAYING: waiting for the buyer to enter the payment PIN"
    assert gw.ok("check_payment", check("UP-1"))["message"] == "NOTPAY: waiting for the buyer"
    status = wait_until(
        lambda: (data := gw.ok("check_payment", check("UP-1")))["is_success"] and data
    )
    assert status["message"] == "Payment Successful!"


@pytest.mark.parametrize("operation", ["quick_pay", "jsapi_pay"])
def test_declined(motp_sandbox, gw, operation):
    message = gw.refused(operation, payment("DEC-1", auth_code=AUTH_CODE_DECLINED))
    assert message == "PAYERROR: insufficient balance"
    status = gw.ok("check_payment", check("DEC-1"))
    assert (status["is_success"], status["message"]) == (False, "PAYERROR: insufficient balance")
    assert motp_sandbox.order("DEC-1")["status"] == "PAYERROR"


def test_never_paid(motp_sandbox, gw):
    message = gw.refused("quick_pay", payment("NEVER-1", auth_code=AUTH_CODE_NEVER_PAID))
    assert message.startswith("USERPAYING:")
    gw.refused("quick_pay", payment("UP-2", auth_code=AUTH_CODE_USERPAYING))
    # With no delay left, a buyer who pays has paid; this one never does.
    motp_sandbox.configure(pay_delay=0)
    assert gw.ok("check_payment", check("UP-2"))["is_success"] is True
    status = gw.ok("check_payment", check("NEVER-1"))
    assert (status["is_success"], status["message"]) == (False, "NOTPAY: waiting for the buyer")


def test_refund_processing_then_succeeded(motp_sandbox, gw):
    motp_sandbox.configure(refund_delay=0.3)
    gw.ok("quick_pay", payment("RP-1", "5.00", auth_code=AUTH_CODE_REFUND_PROCESSING))
    assert gw.ok("refund", refund("RP-1", "RP-1-R", "5.00"))["result_code"] == "SUCCESS"
    status = gw.ok("check_refund", check("RP-1", "RP-1-R"))
    assert (status["is_success"], status["message"]) == (False, "PROCESSING: refund in progress")
    status = wait_until(
        lambda: (data := gw.ok("check_refund", check("RP-1")))["is_success"] and data
    )
    assert status["message"] == "Refund Successful!"


def test_shortening_refund_delay_settles_waiting_refunds(motp_sandbox, gw):
    motp_sandbox.configure(refund_delay=60)
    gw.ok("quick_pay", payment("RP-2", auth_code=AUTH_CODE_REFUND_PROCESSING))
    gw.ok("refund", refund("RP-2", "RP-2-R"))
    motp_sandbox.configure(refund_delay=0)
    assert gw.ok("check_refund", check("RP-2"))["is_success"] is True


def test_refund_refused_by_the_wallet(motp_sandbox, gw):
    gw.ok("quick_pay", payment("RR-1", "5.00", auth_code=AUTH_CODE_REFUND_REFUSED))
    refused = "REFUNDNOTALLOWED: refund refused by the wallet"
    assert gw.refused("refund", refund("RR-1", "RR-1-R", "5.00")) == refused
    status = gw.ok("check_refund", check("RR-1", "RR-1-R"))
    assert (status["is_success"], status["message"]) == (False, refused)
    # A refused refund takes nothing from what is refundable.
    assert gw.refused("refund", refund("RR-1", "RR-1-R2", "5.00")) == refused


# Scripts


def test_script_overrides_the_auth_code_once(motp_sandbox, gw):
    answer = control(motp_sandbox, "POST", "/_sandbox/script", {"outcome": "declined"})
    assert answer.json() == {
        "success": True,
        "data": {"queued": [{"outcome": "declined", "delay": None}]},
    }
    assert gw.refused("quick_pay", payment("S-1")) == "PAYERROR: insufficient balance"
    assert gw.ok("quick_pay", payment("S-2"))["result_code"] == "SUCCESS"


def test_scripts_are_first_in_first_out(motp_sandbox, gw):
    motp_sandbox.script("never")
    motp_sandbox.script("paid")
    assert gw.refused("jsapi_pay", payment("S-3", auth_code=AUTH_CODE_DECLINED)).startswith(
        "USERPAYING"
    )
    assert gw.ok("jsapi_pay", payment("S-4", auth_code=AUTH_CODE_DECLINED))


def test_scripted_pin_delay(motp_sandbox, gw):
    motp_sandbox.configure(pin_delay=600)
    control(motp_sandbox, "POST", "/_sandbox/script", {"outcome": "pin", "delay": 0.3})
    started = time.monotonic()
    # Answered (within the call's 10 s timeout), so not after the 600 s pin_delay.
    assert gw.ok("quick_pay", payment("S-5"))["result_code"] == "SUCCESS"
    assert time.monotonic() - started >= 0.3


def test_scripts_apply_to_native_orders(motp_sandbox, gw):
    motp_sandbox.script("paid")
    motp_sandbox.script("userpaying", delay=0.2)
    gw.ok("native_pay", native("S-6"))
    gw.ok("native_pay", native("S-7"))
    assert gw.ok("check_payment", check("S-6"))["is_success"] is True
    assert gw.ok("check_payment", check("S-7"))["is_success"] is False
    wait_until(lambda: gw.ok("check_payment", check("S-7"))["is_success"])


def test_scripted_refund_outcome(motp_sandbox, gw):
    motp_sandbox.script("refund_processing", delay=60)
    gw.ok("native_pay", native("S-8"))
    gw.ok("refund", refund("S-8", "S-8-R"))
    assert gw.ok("check_refund", check("S-8"))["message"] == "PROCESSING: refund in progress"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"outcome": "maybe"}, "outcome must be one of paid, pin, userpaying, declined, never"),
        ({}, "outcome must be one of"),
        ({"outcome": "pin", "delay": -1}, "delay must be a number of seconds"),
        ({"outcome": "pin", "delay": "1"}, "delay must be a number of seconds"),
    ],
)
def test_bad_scripts_are_400(motp_sandbox, body, message):
    answer = control(motp_sandbox, "POST", "/_sandbox/script", body)
    assert answer.status_code == 400
    assert answer.json()["data"]["message"].startswith(message)


# Refunds


def test_only_paid_orders_are_refunded(gw):
    gw.ok("native_pay", native("RN-1"))
    message = gw.refused("refund", refund("RN-1", "RN-1-R"))
    assert message == "Order RN-1 is not paid (NOTPAY): only paid orders can be refunded"
    gw.refused("quick_pay", payment("RN-2", auth_code=AUTH_CODE_DECLINED))
    assert "(PAYERROR)" in gw.refused("refund", refund("RN-2", "RN-2-R"))


def test_refunds_never_exceed_the_paid_amount(motp_sandbox, gw):
    gw.ok("quick_pay", payment("RO-1", "10.00"))
    gw.ok("refund", refund("RO-1", "RO-1-A", "4.00"))
    gw.ok("refund", refund("RO-1", "RO-1-B", "1.00"))
    message = gw.refused("refund", refund("RO-1", "RO-1-C", "5.01"))
    assert message == "refund_amount 5.01 exceeds the refundable amount 5.00 of order RO-1"
    gw.ok("refund", refund("RO-1", "RO-1-C", "5.00"))
    assert gw.refused("refund", refund("RO-1", "RO-1-D", "0.01")).startswith(
        "refund_amount 0.01 exceeds the refundable amount 0.00"
    )
    assert [r["amount"] for r in motp_sandbox.refunds("RO-1")] == [
        Decimal("4.00"),
        Decimal("1.00"),
        Decimal("5.00"),
    ]


def test_processing_refunds_count_against_the_refundable_amount(motp_sandbox, gw):
    motp_sandbox.configure(refund_delay=60)
    gw.ok("quick_pay", payment("RO-2", "10.00", auth_code=AUTH_CODE_REFUND_PROCESSING))
    gw.ok("refund", refund("RO-2", "RO-2-A", "6.00"))
    assert "refundable amount 4.00" in gw.refused("refund", refund("RO-2", "RO-2-B", "5.00"))


def test_concurrent_refunds_never_over_refund(motp_sandbox, gw):
    gw.ok("quick_pay", payment("RO-3", "10.00"))
    answers: list[bool] = []

    def send(number: int) -> None:
        answer = Gateway(gw.url).call("refund", refund("RO-3", f"RO-3-{number}", "1.00"))
        answers.append(answer.json()["success"])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(answers) == [False] * 6 + [True] * 10
    assert sum(r["amount"] for r in motp_sandbox.refunds("RO-3")) == Decimal("10.00")


def test_refunds_are_idempotent_on_out_refund_no(motp_sandbox, gw):
    gw.ok("quick_pay", payment("RI-1", "10.00"))
    gw.ok("quick_pay", payment("RI-2", "10.00"))
    first = gw.call("refund", refund("RI-1", "RI-R", "3.00"))
    again = gw.call("refund", refund("RI-1", "RI-R", "3.00"))
    assert again.text == first.text
    assert len(motp_sandbox.refunds("RI-1")) == 1
    assert gw.refused("refund", refund("RI-1", "RI-R", "4.00")) == (
        "out_refund_no RI-R already used for a refund of 3.00 on order RI-1"
    )
    assert gw.refused("refund", refund("RI-2", "RI-R", "3.00")) == (
        "out_refund_no RI-R already used for a refund of 3.00 on order RI-1"
    )
    assert motp_sandbox.refunds("RI-2") == []


def test_a_refused_refund_is_refused_again_on_replay(gw):
    gw.ok("quick_pay", payment("RI-3", auth_code=AUTH_CODE_REFUND_REFUSED))
    assert gw.refused("refund", refund("RI-3", "RI-3-R")) == gw.refused(
        "refund", refund("RI-3", "RI-3-R")
    )


def test_refund_status_without_out_refund_no_is_the_latest_refund(motp_sandbox, gw):
    motp_sandbox.configure(refund_delay=60)
    gw.ok("quick_pay", payment("RL-1", "10.00", auth_code=AUTH_CODE_REFUND_PROCESSING))
    gw.ok("refund", refund("RL-1", "RL-1-A", "1.00"))
    gw.ok("refund", refund("RL-1", "RL-1-B", "2.00"))
    latest = gw.ok("check_refund", check("RL-1"))
    assert (latest["out_refund_no"], latest["amount"]) == ("RL-1-B", Decimal("2.00"))
    first = gw.ok("check_refund", check("RL-1", "RL-1-A"))
    assert (first["out_refund_no"], first["amount"]) == ("RL-1-A", Decimal("1.00"))


def test_unknown_refunds(gw):
    gw.ok("quick_pay", payment("RU-1"))
    gw.ok("quick_pay", payment("RU-2"))
    assert gw.refused("check_refund", check("RU-1")) == "Refund of order RU-1 not found"
    gw.ok("refund", refund("RU-2", "RU-2-R"))
    message = gw.refused("check_refund", check("RU-1", "RU-2-R"))
    assert message == "Refund RU-2-R of order RU-1 not found"


# Faults


def _order_created(sandbox: Any, out_trade_no: str) -> bool:
    return exists(sandbox, out_trade_no)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(
    ("kind", "status", "text"),
    [
        ("502", 502, "502 Bad Gateway"),
        ("504", 504, "504 Gateway Time-out"),
        ("html", 200, "Sign in"),
    ],
)
def test_page_faults(motp_sandbox, gw, kind, status, text, when):
    gw.token()  # not the call the fault is for
    motp_sandbox.fault(kind, operation="native_pay", when=when)
    answer = gw.call("native_pay", native("F-1"))
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("text/html")
    assert text in answer.text
    assert _order_created(motp_sandbox, "F-1") is (when == "after")
    # The session's connection and the next call are fine.
    assert gw.call("check_payment", check("F-1")).status_code == 200


@pytest.mark.parametrize("when", ["before", "after"])
def test_reset_fault(motp_sandbox, gw, when):
    motp_sandbox.fault("reset", operation="quick_pay", when=when)
    with pytest.raises(requests.ConnectionError, match="reset by peer"):
        gw.call("quick_pay", payment("F-2"))
    assert _order_created(motp_sandbox, "F-2") is (when == "after")
    assert gw.ok("quick_pay", payment("F-3"))


@pytest.mark.parametrize("when", ["before", "after"])
def test_cutoff_fault(motp_sandbox, gw, when):
    motp_sandbox.fault("cutoff", operation="quick_pay", when=when)
    answer = gw.call("quick_pay", payment("F-4"), stream=True)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        answer.content  # noqa: B018
    assert _order_created(motp_sandbox, "F-4") is (when == "after")


@pytest.mark.parametrize("when", ["before", "after"])
def test_nodata_fault(motp_sandbox, gw, when):
    motp_sandbox.fault("nodata", operation="refund", when=when)
    gw.ok("quick_pay", payment("F-5"))
    answer = gw.call("refund", refund("F-5", "F-5-R"))
    assert (answer.status_code, answer.text) == (200, '{"success":true}')
    assert len(motp_sandbox.refunds("F-5")) == (1 if when == "after" else 0)


def test_slow_fault_before_applies_the_operation_late(motp_sandbox, gw):
    motp_sandbox.configure(slow_delay=0.5)
    motp_sandbox.fault("slow", operation="native_pay", when="before")
    with pytest.raises(requests.exceptions.ReadTimeout):
        gw.call("native_pay", native("F-6"), timeout=0.2)
    assert not _order_created(motp_sandbox, "F-6")
    wait_until(lambda: _order_created(motp_sandbox, "F-6"))


def test_slow_fault_after_applies_at_once_and_answers_late(motp_sandbox, gw):
    motp_sandbox.configure(slow_delay=0.5)
    motp_sandbox.fault("slow", operation="native_pay", when="after")
    with pytest.raises(requests.exceptions.ReadTimeout):
        gw.call("native_pay", native("F-7"), timeout=0.2)
    assert _order_created(motp_sandbox, "F-7")
    motp_sandbox.fault("slow", operation="check_payment")
    started = time.monotonic()
    assert gw.ok("check_payment", check("F-7"))["out_trade_no"] == "F-7"
    assert time.monotonic() - started >= 0.5


def test_fault_without_operation_hits_the_next_call_even_the_token_call(motp_sandbox, gw):
    motp_sandbox.fault("502")
    assert gw.send("token", {"user": "sandbox", "password": "sandbox"}).status_code == 502
    assert gw.token()


def test_fault_count_and_operation(motp_sandbox, gw):
    control(
        motp_sandbox,
        "POST",
        "/_sandbox/faults",
        {"kind": "504", "operation": "check_payment", "count": 2},
    )
    gw.ok("native_pay", native("F-8"))
    assert [gw.call("check_payment", check("F-8")).status_code for _ in range(3)] == [504, 504, 200]


def test_latency_delays_every_gateway_answer(motp_sandbox, gw):
    motp_sandbox.configure(latency=0.3)
    for operation, body in (("native_pay", native("LAT-1")), ("check_payment", check("LAT-1"))):
        started = time.monotonic()
        assert gw.ok(operation, body)
        assert time.monotonic() - started >= 0.3, operation


def test_random_faults_spare_the_control_calls_and_the_buyer_page(motp_sandbox, gw):
    token = gw.token()
    motp_sandbox.configure(slow_delay=0)
    answer = control(motp_sandbox, "POST", "/_sandbox/faults", {"rate": 1})
    assert answer.json()["data"] == {"queued": [], "rate": 1.0}
    spoiled = 0
    for number in range(20):
        try:
            answer = gw.send("native_pay", native(f"FR-{number}"), token=token)
            spoiled += answer.text != dumps(answer.json(parse_float=Decimal))
        except (requests.RequestException, ValueError):
            spoiled += 1
        assert control(motp_sandbox, "GET", "/_sandbox/stats").status_code == 200
        assert requests.get(motp_sandbox.url + "/", timeout=10).status_code == 200
    assert spoiled > 0
    control(motp_sandbox, "POST", "/_sandbox/faults", {"rate": 0})
    assert gw.ok("native_pay", native("FR-last"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "503"}, "kind must be one of 502, 504, reset, cutoff, slow, nodata, html"),
        ({"kind": "502", "operation": "pay"}, "operation must be one of token, native_pay"),
        ({"kind": "502", "when": "during"}, 'when must be "before" or "after"'),
        ({"kind": "502", "count": 0}, "count must be a positive integer"),
        ({"rate": 2}, "rate must be a number from 0 to 1"),
        ({"rate": "0.5"}, "rate must be a number from 0 to 1"),
    ],
)
def test_bad_faults_are_400(motp_sandbox, body, message):
    answer = control(motp_sandbox, "POST", "/_sandbox/faults", body)
    assert answer.status_code == 400
    assert answer.json()["data"]["message"].startswith(message)


# The buyer page


def test_buyer_page_lists_pending_orders_and_pays_them(motp_sandbox, gw):
    gw.ok("native_pay", native("BUY-1", "10.00", fee_rate=2))
    gw.refused("quick_pay", payment("BUY-2", "3.00", auth_code=AUTH_CODE_DECLINED))
    page = requests.get(motp_sandbox.url + "/", timeout=10)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    pending, settled = page.text.split("Recently settled")
    assert re.search(r"<td>BUY-1</td>.*>10\.00<.*>10\.20<", pending)  # 2% on top for the buyer
    assert re.search(r"<td>BUY-2</td>.*PAYERROR: insufficient balance", settled)
    assert not re.search(r"(src|href)=", page.text)  # no external asset
    action = re.search(r'<form method="post" action="([^"]+/pay)">', pending)
    assert action
    assert action.group(1) == "/_sandbox/orders/BUY-1/pay"

    # What a browser sends for a form without fields.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = requests.post(
        motp_sandbox.url + action.group(1), data="", headers=form, allow_redirects=False, timeout=10
    )
    assert (answer.status_code, answer.headers["Location"]) == (303, "/")
    assert gw.ok("check_payment", check("BUY-1"))["is_success"] is True
    pending, settled = requests.get(motp_sandbox.url + "/", timeout=10).text.split(
        "Recently settled"
    )
    assert "BUY-1" not in pending
    assert "No payment is waiting for the buyer." in pending
    assert "BUY-1" in settled


def test_buyer_page_escapes_and_declines(motp_sandbox, gw):
    gw.ok("native_pay", native("<b>&/1"))
    page = requests.get(motp_sandbox.url + "/", timeout=10).text
    assert "<b>&/1" not in page
    assert "&lt;b&gt;&amp;/1" in page
    action = re.search(r'action="([^"]+/decline)"', page)
    assert action
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = requests.post(motp_sandbox.url + action.group(1), data="", headers=form, timeout=10)
    assert answer.status_code == 200
    assert "Recently settled" in answer.text  # back on the page
    assert motp_sandbox.order("<b>&/1")["status"] == "PAYERROR"


# The control API


def test_order_control_calls(motp_sandbox, gw):
    gw.ok("native_pay", native("C-1", "19.90"))
    gw.ok("native_pay", native("C-2"))
    listing = control(motp_sandbox, "GET", "/_sandbox/orders")
    assert '"amount":19.90' in listing.text
    assert [o["out_trade_no"] for o in listing.json()["data"]["orders"]] == ["C-1", "C-2"]
    one = control(motp_sandbox, "GET", "/_sandbox/orders/C-1").json()["data"]
    assert (one["status"], one["method"], one["refunds"]) == ("NOTPAY", "native", [])

    paid = control(motp_sandbox, "POST", "/_sandbox/orders/C-1/pay")
    assert (paid.status_code, paid.json()["data"]["status"]) == (200, "SUCCESS")
    again = control(motp_sandbox, "POST", "/_sandbox/orders/C-1/pay")
    assert again.status_code == 409
    assert again.json() == {
        "success": False,
        "data": {"message": "Order C-1 is SUCCESS, not NOTPAY"},
    }
    declined = control(
        motp_sandbox, "POST", "/_sandbox/orders/C-2/decline", {"message": "PAYERROR: card lost"}
    )
    assert declined.json()["data"]["status"] == "PAYERROR"
    assert gw.ok("check_payment", check("C-2"))["message"] == "PAYERROR: card lost"
    missing = control(motp_sandbox, "POST", "/_sandbox/orders/C-9/pay")
    assert (missing.status_code, missing.json()["data"]["message"]) == (404, "Order C-9 not found")


def test_stats_count_gateway_requests_per_operation(motp_sandbox, gw):
    gw.ok("native_pay", native("ST-1"))
    gw.refused("native_pay", native("ST-1"))
    motp_sandbox.fault("502", operation="check_payment", when="before")
    gw.call("check_payment", check("ST-1"))
    control(motp_sandbox, "GET", "/_sandbox/orders")
    stats = control(motp_sandbox, "GET", "/_sandbox/stats").json()["data"]
    assert stats["requests"] == {
        "token": 1,
        "native_pay": 2,
        "quick_pay": 0,
        "jsapi_pay": 0,
        "refund": 0,
        "check_payment": 1,
        "check_refund": 0,
    }
    assert stats["total"] == 4 == motp_sandbox.calls()
    assert motp_sandbox.calls("native_pay") == 2


def test_config_control_call(motp_sandbox):
    current = control(motp_sandbox, "GET", "/_sandbox/config").json()["data"]
    # The fixture's server starts with short delays.
    assert current == {
        "token_ttl": 60,
        "legacy_token": False,
        "auth_failure_status": 401,
        "pin_delay": 0.5,
        "pay_delay": 0.5,
        "refund_delay": 0.5,
        "slow_delay": 3,
        "latency": 0.0,
    }
    assert {k: current[k] for k in FIXTURE_DELAYS} == FIXTURE_DELAYS
    changed = control(
        motp_sandbox, "POST", "/_sandbox/config", {"pin_delay": 0.5, "legacy_token": True}
    )
    assert changed.json()["data"] == {**current, "pin_delay": 0.5, "legacy_token": True}
    for body, message in [
        ({"pin_delay": -1}, "pin_delay must be a number of seconds, 0 or more"),
        ({"legacy_token": 1}, "legacy_token must be true or false"),
        ({"auth_failure_status": 99}, "auth_failure_status must be an HTTP status"),
        ({"username": "x"}, "Unknown option 'username'"),
        ({"self": 1}, "Unknown option 'self'"),
        ({"changes": {}}, "Unknown option 'changes'"),
    ]:
        answer = control(motp_sandbox, "POST", "/_sandbox/config", body)
        assert answer.status_code == 400
        assert answer.json()["data"]["message"].startswith(message)


def test_reset_forgets_everything(motp_sandbox, gw):
    token = gw.token()
    gw.ok("native_pay", native("RS-1"))
    motp_sandbox.configure(pin_delay=0.1)
    motp_sandbox.script("declined")
    motp_sandbox.fault("502", operation="quick_pay")
    answer = control(motp_sandbox, "POST", "/_sandbox/reset")
    assert answer.json() == {"success": True, "data": {"message": "Sandbox reset"}}
    assert motp_sandbox.calls() == 0
    assert control(motp_sandbox, "GET", "/_sandbox/orders").json()["data"] == {"orders": []}
    assert control(motp_sandbox, "GET", "/_sandbox/config").json()["data"]["pin_delay"] == 0.5
    assert gw.send("check_payment", check("RS-1"), token=token).status_code == 401
    # Neither the script nor the fault is left: the same out_trade_no is paid.
    answer = gw.send("quick_pay", payment("RS-1"), token=gw.token())
    assert answer.json()["data"]["result_code"] == "SUCCESS"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/_sandbox/nothing", 404),
        ("GET", "/_sandbox/reset", 405),
        ("POST", "/_sandbox/orders", 405),
        ("GET", ENDPOINTS["token"], 405),
        ("POST", "/", 405),
        ("GET", "/api/v1/unknown", 404),
    ],
)
def test_unknown_paths_and_methods(motp_sandbox, method, path, status):
    answer = control(motp_sandbox, method, path)
    assert answer.status_code == status
    assert answer.json()["success"] is False
    assert answer.json()["data"]["message"]


def test_control_body_must_be_a_json_object(motp_sandbox):
    answer = requests.post(
        motp_sandbox.url + "/_sandbox/config",
        data="[1]",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert (answer.status_code, answer.json()["data"]["message"]) == (
        400,
        "The request body must be a JSON object, not an array",
    )


def test_control_json_needs_the_json_content_type(motp_sandbox):
    # A cross-site form can post a JSON-looking body as text/plain without a CORS preflight.
    for content_type in ("text/plain", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = requests.post(
            motp_sandbox.url + "/_sandbox/config",
            data='{"pin_delay": 9}',
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 400
        assert answer.json()["data"]["message"].startswith("Content-Type must be application/json")
    # A form with fields is sent back to the buyer page, its body not read as JSON.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = requests.post(
        motp_sandbox.url + "/_sandbox/config",
        data='{"pin_delay": 9}',
        headers=form,
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303
    assert motp_sandbox.state.config.pin_delay == 0.5


def _form_post(sandbox: Any, path: str, headers: dict[str, str]) -> requests.Response:
    """What a browser sends for a form without fields, with ``headers`` added."""
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    return requests.post(
        sandbox.url + path, data="", headers=form, allow_redirects=False, timeout=10
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:3000"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "SELF"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:3000"},
        {"Origin": "null"},
    ],
)
def test_cross_site_browser_posts_are_refused(motp_sandbox, gw, headers):
    headers = {k: v.replace("SELF", motp_sandbox.url) for k, v in headers.items()}
    gw.ok("native_pay", native("CS-1"))
    answer = _form_post(motp_sandbox, "/_sandbox/orders/CS-1/pay", headers)
    assert (answer.status_code, answer.json()["data"]["message"]) == (
        403,
        "Cross-site requests are refused",
    )
    assert _form_post(motp_sandbox, "/_sandbox/reset", headers).status_code == 403
    assert motp_sandbox.order("CS-1")["status"] == "NOTPAY"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "SELF"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "SELF"},
        {},  # no browser: curl
    ],
)
def test_the_buyer_pages_own_posts_are_served(motp_sandbox, gw, headers):
    headers = {k: v.replace("SELF", motp_sandbox.url) for k, v in headers.items()}
    gw.ok("native_pay", native("CS-2"))
    answer = _form_post(motp_sandbox, "/_sandbox/orders/CS-2/pay", headers)
    assert (answer.status_code, answer.headers["Location"]) == (303, "/")
    assert motp_sandbox.order("CS-2")["status"] == "SUCCESS"


def _get_at(sandbox: Any, path: str, host: str | None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.server.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host.replace("PORT", str(sandbox.server.port)))
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:PORT", "127.0.0.1.nip.io:PORT", "10.0.0.1:PORT", "::1", None],
)
def test_the_control_api_and_buyer_page_answer_only_at_a_loopback_host(motp_sandbox, host):
    # A DNS-rebinding page reaches 127.0.0.1 under its own host name.
    for path in ("/", "/_sandbox/orders"):
        status, body = _get_at(motp_sandbox, path, host)
        assert status == 421
        assert b"The sandbox serves this at localhost, 127.0.0.1 or [::1] only" in body
    answer = requests.post(
        motp_sandbox.url + "/_sandbox/reset", headers={"Host": host or ""}, timeout=10
    )
    assert answer.status_code == 421


@pytest.mark.parametrize(
    "host", ["localhost", "LocalHost:PORT", "127.0.0.1:PORT", "127.0.0.2", "[::1]:PORT"]
)
def test_loopback_hosts_are_served(motp_sandbox, host):
    assert _get_at(motp_sandbox, "/", host)[0] == 200
    assert _get_at(motp_sandbox, "/_sandbox/orders", host)[0] == 200


def test_the_gateway_answers_at_any_host(motp_sandbox):
    # A sandbox bound to a LAN address serves the gateway to other machines, named as they like.
    answer = requests.post(
        motp_sandbox.url + ENDPOINTS["token"],
        data=dumps({"user": "sandbox", "password": "sandbox"}),
        headers={"Content-Type": "application/json", "Host": "sandbox.lan:8765"},
        timeout=10,
    )
    assert answer.status_code == 200


# The server


def test_keep_alive_serves_many_requests_on_one_connection(motp_sandbox):
    connection = http.client.HTTPConnection("127.0.0.1", motp_sandbox.server.port, timeout=10)
    body = dumps({"user": "sandbox", "password": "sandbox"})
    sockets = set()
    for _ in range(20):
        connection.request("POST", ENDPOINTS["token"], body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200
        assert b'"token"' in answer.read()
        sockets.add(id(connection.sock))
    assert len(sockets) == 1
    # With Nagle's algorithm on, each round trip would wait ~40 ms for a delayed ACK: the
    # server's end of this connection has it off.
    ours = connection.sock.getsockname()
    [served] = [s for s in motp_sandbox.server._httpd._connections if s.getpeername() == ours]
    assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    connection.close()


def _raw_post(port: int, content_length: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("POST", ENDPOINTS["token"])
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", content_length)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("content_length", ["abc", "-1", "1_0", "+2", "0x10", "²"])
def test_a_content_length_that_is_no_number_is_400(motp_sandbox, content_length):
    status, text = _raw_post(motp_sandbox.server.port, content_length)
    assert status == 400
    assert "Content-Length must be a number of bytes" in text


def test_a_body_too_large_is_413(motp_sandbox):
    assert _raw_post(motp_sandbox.server.port, str(2 * 1024 * 1024))[0] == 413


def test_server_header_is_the_sandboxs_name_and_version(motp_sandbox):
    with socket.create_connection(("127.0.0.1", motp_sandbox.server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk
            head += chunk
    assert f"\r\nServer: motp-sandbox/{__version__}\r\n".encode() in head


def test_json_writer_refuses_bytes():
    for value in (b"hi", bytearray(b"hi"), memoryview(b"hi"), {"data": b"hi"}):
        with pytest.raises(TypeError, match="is not JSON serializable"):
            dumps(value)
    assert dumps(("a", ["b"])) == '["a",["b"]]'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault-rate", "2"], "argument --fault-rate: rate must be a number from 0 to 1"),
        (["--fault-rate", "x"], "argument --fault-rate: must be a number"),
        (["--pin-delay", "-1"], "argument --pin-delay: the value must be a number of seconds"),
        (["--slow-delay", "nan"], "argument --slow-delay: must be a number"),
        (["--pay-delay", "inf"], "argument --pay-delay: must be a number"),
    ],
)
def test_command_line_refuses_bad_numbers(capsys, argv, message):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_verbose_log_holds_no_secret(capsys):
    with SandboxServer(port=0, password="p4ssw0rd", verbose=True) as server:
        gateway = Gateway(server.url, "sandbox", "p4ssw0rd")
        token = gateway.token()
        gateway.ok("quick_pay", payment("LOG-1", auth_code="987654321012345678"))
        gateway.session.close()
    log = capsys.readouterr().err
    assert f'POST {ENDPOINTS["token"]} HTTP/1.1" 200' in log
    assert ENDPOINTS["quick_pay"] in log
    for secret in ("p4ssw0rd", token, "987654321012345678"):
        assert secret not in log


def test_quiet_by_default(capsys, gw):
    gw.ok("native_pay", native("Q-1"))
    assert capsys.readouterr() == ("", "")


def test_stop_ends_open_connections_and_frees_the_port():
    server = SandboxServer(port=0).start()
    gateway = Gateway(server.url)
    gateway.token()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        gateway.token()
    with SandboxServer(port=server.port) as again:
        assert Gateway(again.url).token()


def _handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("(process_request_thread)")}


@pytest.mark.parametrize("wait", ["pin", "slow"])
def test_stop_ends_the_requests_that_wait_at_once(wait):
    server = SandboxServer(port=0, pin_delay=600, slow_delay=600).start()
    before = _handler_threads()
    gateway = Gateway(server.url)
    token = gateway.token()
    if wait == "slow":
        server.state.add_fault(Fault(FaultKind.SLOW, "native_pay", When.BEFORE))
    failures: list[Exception] = []

    def call() -> None:
        try:
            if wait == "pin":
                gateway.send("quick_pay", payment("W-1", auth_code=AUTH_CODE_PIN), token=token)
            else:
                gateway.send("native_pay", native("W-1"), token=token)
        except requests.RequestException as error:
            failures.append(error)

    client = threading.Thread(target=call)
    client.start()
    operation = "quick_pay" if wait == "pin" else "native_pay"
    wait_until(lambda: server.state.calls(operation) == 1)
    handlers = _handler_threads() - before
    assert handlers
    server.stop()
    # Ended by the stop: the wait itself would last 600 s.
    client.join(timeout=30)
    for thread in handlers:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert len(failures) == 1  # dropped without an answer
    # Nothing was applied after the stop: the PIN order is unpaid, the slow order never made.
    assert [(o.out_trade_no, o.status) for o in server.state.orders()] == (
        [("W-1", "NOTPAY")] if wait == "pin" else []
    )
    gateway.session.close()


def test_stop_from_another_thread_ends_serve_forever():
    server = SandboxServer(port=0)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    gateway = Gateway(server.url)
    assert gateway.token()
    gateway.session.close()
    server.stop()
    serving.join(timeout=5)
    assert not serving.is_alive()
    with pytest.raises(requests.ConnectionError):
        Gateway(server.url).token()


# The pytest fixture


@pytest.fixture
def project_motp(settings, motp_sandbox_server):
    settings.MOTP = {**settings.MOTP, "FEE_RATE": "2", "ENDPOINTS": {"refund": "/v2/refund"}}
    cache.set("project:key", "the project's own")
    # A token of the session's sandbox cached by an earlier test, void once the fixture resets.
    client = MOTPClient(motp_sandbox_server.url, "sandbox", "sandbox")
    stale = client.get_token()
    client.close()
    return stale


def test_fixture_points_the_settings_at_the_sandbox(project_motp, motp_sandbox, settings):
    motp = settings.MOTP
    assert motp == {
        "BASE_URL": motp_sandbox.url,
        "USERNAME": "sandbox",
        "PASSWORD": "sandbox",
        "STORE_ID": motp_sandbox.store_id,
        "FEE_RATE": "2",
        "ENDPOINTS": ENDPOINTS,
    }
    assert motp_sandbox.url == conf.motp_settings.BASE_URL
    # The client's stale token is forgotten; the rest of the project's cache stays.
    client = MOTPClient.from_settings()
    assert client.get_token() != project_motp
    client.close()
    assert motp_sandbox.calls("token") == 1
    assert cache.get("project:key") == "the project's own"


def test_fixture_handle(motp_sandbox, gw):
    assert motp_sandbox.url.startswith("http://127.0.0.1:")
    assert (motp_sandbox.username, motp_sandbox.password, motp_sandbox.store_id) == (
        "sandbox",
        "sandbox",
        "10001",
    )
    gw.ok("native_pay", native("H-1", "2.00"))
    gw.ok("native_pay", native("H-2"))
    assert motp_sandbox.pay("H-1")["status"] == "SUCCESS"
    assert motp_sandbox.decline("H-2", "PAYERROR: test")["message"] == "PAYERROR: test"
    gw.ok("refund", refund("H-1", "H-1-R", "0.50"))
    [made] = motp_sandbox.refunds("H-1")
    assert (made["out_refund_no"], made["amount"], made["status"]) == (
        "H-1-R",
        Decimal("0.50"),
        "SUCCESS",
    )
    assert motp_sandbox.expire_tokens() == 1
    assert motp_sandbox.configure(pay_delay=1)["pay_delay"] == 1
    assert motp_sandbox.calls() == 4
    assert motp_sandbox.calls("refund") == 1
    with pytest.raises(LookupError):
        motp_sandbox.order("H-9")
    with pytest.raises(ValueError, match="'sometimes' is not a valid Outcome"):
        motp_sandbox.script("sometimes")
    with pytest.raises(Refused, match="Unknown option 'self'"):
        motp_sandbox.configure(self=1)
