"""The gateway client against the sandbox gateway over loopback (and, for answers the sandbox
cannot be made to give, a loopback server with canned answers)."""

import json
import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from django_motp import services
from django_motp.client import MOTPClient, dumps
from django_motp.exceptions import MOTPAPIError, MOTPAuthError, MOTPTransportError
from django_motp.models import Payment
from django_motp.sandbox import ENDPOINTS
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_USERPAYING,
)
from tests.helpers import (
    REDIS_URL,
    at_once,
    database_fails,
    fetch_token_in_process,
    signal_names,
    wait_until,
)


@pytest.fixture
def records():
    return []


@pytest.fixture
def client(motp_sandbox, records):
    client = MOTPClient.from_settings(on_call=records.append)
    yield client
    client.close()


def pay(client, out_trade_no, amount="1.00", auth_code=AUTH_CODE_PAID, store_id="10001"):
    return client.quick_pay(
        store_id=store_id,
        service_id=30,
        amount=Decimal(amount),
        out_trade_no=out_trade_no,
        auth_code=auth_code,
    )


def test_token_is_fetched_once_and_shared_through_the_cache(motp_sandbox, client):
    token = client.get_token()
    assert token
    other = MOTPClient.from_settings()
    assert other.get_token() == token
    assert motp_sandbox.calls("token") == 1


def test_legacy_token_answer_is_accepted(motp_sandbox, client):
    motp_sandbox.configure(legacy_token=True)
    assert pay(client, "LEGACY-1")["result_code"] == "SUCCESS"


def test_wrong_password_is_an_auth_error_without_the_password(motp_sandbox, settings, records):
    settings.MOTP = {**settings.MOTP, "PASSWORD": "not-the-password"}
    client = MOTPClient.from_settings(on_call=records.append)
    with pytest.raises(MOTPAuthError) as caught:
        client.get_token()
    assert caught.value.status_code == 401
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(records)


def test_expired_token_mid_session_is_refreshed_once(motp_sandbox, client):
    pay(client, "EXP-1")
    motp_sandbox.expire_tokens()
    data = client.check_payment("10001", "EXP-1")
    assert data["is_success"] is True
    assert motp_sandbox.calls("token") == 2


def test_token_refused_with_http_200_and_success_false_is_refreshed(motp_sandbox, client):
    motp_sandbox.configure(auth_failure_status=200)
    pay(client, "EXP-2")
    motp_sandbox.expire_tokens()
    assert client.check_payment("10001", "EXP-2")["is_success"] is True
    assert motp_sandbox.calls("token") == 2


def test_token_ttl_zero_means_one_token_per_request(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "TOKEN_TTL": 0}
    client = MOTPClient.from_settings()
    pay(client, "TTL0-1")
    client.check_payment("10001", "TTL0-1")
    assert motp_sandbox.calls("token") == 2


def test_concurrent_callers_do_not_stampede_the_token_endpoint(motp_sandbox):
    tokens = at_once(lambda: MOTPClient.from_settings().get_token(), times=8)
    assert len(set(tokens)) == 1
    assert motp_sandbox.calls("token") == 1


def test_native_pay_returns_the_qr_code_and_decimal_amount(client):
    data = client.native_pay(
        store_id="10001",
        service_id=30,
        amount=Decimal("19.90"),
        out_trade_no="NATIVE-1",
        sub_store_id=7,
        sub_store_name="Front desk",
        fee_rate=Decimal("2"),
    )
    assert data["qr_code"].startswith("weixin://")
    assert data["amount"] == Decimal("19.90")
    assert isinstance(data["amount"], Decimal)
    assert data["out_trade_no"] == "NATIVE-1"


@pytest.mark.parametrize("amount", ["19.90", "0.01", "999999.99", "9999999999.99"])
def test_amounts_round_trip_with_exactly_their_digits(motp_sandbox, client, amount):
    data = pay(client, f"DEC-{amount.replace('.', '-')}", amount=amount)
    assert data["amount"] == Decimal(amount)
    assert str(data["amount"]) == amount
    assert str(motp_sandbox.order(data["out_trade_no"])["amount"]) == amount
    status = client.check_payment("10001", data["out_trade_no"])
    assert str(status["amount"]) == amount


def test_dumps_writes_decimal_digits_and_refuses_floats():
    assert dumps({"amount": Decimal("19.90")}) == '{"amount":19.90}'
    assert dumps({"a": Decimal("0.1") + Decimal("0.2")}) == '{"a":0.3}'
    with pytest.raises(TypeError):
        dumps({"amount": 19.9})


def test_floats_are_refused_before_any_call(motp_sandbox, client):
    with pytest.raises(TypeError):
        client.quick_pay(
            store_id="10001",
            service_id=30,
            amount=19.9,
            out_trade_no="FLOAT-1",
            auth_code=AUTH_CODE_PAID,
        )
    assert motp_sandbox.calls("quick_pay") == 0


def test_jsapi_pay(motp_sandbox, client):
    data = client.jsapi_pay(
        store_id="10001",
        service_id=30,
        amount=Decimal("5.00"),
        out_trade_no="JSAPI-1",
        auth_code=AUTH_CODE_PAID,
    )
    assert data["result_code"] == "SUCCESS"
    assert data["transaction_id"]
    assert (motp_sandbox.calls("jsapi_pay"), motp_sandbox.calls("quick_pay")) == (1, 0)


def test_decline_is_an_api_error_with_the_gateways_message(client):
    with pytest.raises(MOTPAPIError) as caught:
        pay(client, "DECL-1", auth_code=AUTH_CODE_DECLINED)
    assert "insufficient balance" in caught.value.message
    assert not isinstance(caught.value, MOTPAuthError)


def test_userpaying_is_an_api_error_carrying_the_code(client):
    with pytest.raises(MOTPAPIError, match="USERPAYING"):
        pay(client, "UP-1", auth_code=AUTH_CODE_USERPAYING)


def test_refund_and_check_refund_by_number(client):
    pay(client, "REF-1", amount="10.00")
    first = client.refund(
        store_id="10001",
        service_id=30,
        out_trade_no="REF-1",
        out_refund_no="REF-1-A",
        refund_amount=Decimal("3.00"),
    )
    assert first["refund_amount"] == Decimal("3.00")
    client.refund(
        store_id="10001",
        service_id=30,
        out_trade_no="REF-1",
        out_refund_no="REF-1-B",
        refund_amount=Decimal("2.00"),
    )
    status = client.check_refund("10001", "REF-1", "REF-1-A")
    assert status["out_refund_no"] == "REF-1-A"
    assert status["amount"] == Decimal("3.00")


def test_processing_refund_reports_not_yet(motp_sandbox, client):
    motp_sandbox.configure(refund_delay=60)
    pay(client, "REF-2", auth_code=AUTH_CODE_REFUND_PROCESSING)
    client.refund(
        store_id="10001",
        service_id=30,
        out_trade_no="REF-2",
        out_refund_no="REF-2-A",
        refund_amount=Decimal("1.00"),
    )
    assert client.check_refund("10001", "REF-2", "REF-2-A")["is_success"] is False


@pytest.mark.parametrize("kind", ["502", "504", "reset", "cutoff", "nodata", "html"])
def test_each_fault_is_a_transport_error_and_pay_is_not_retried(motp_sandbox, client, kind):
    client.get_token()
    motp_sandbox.fault(kind, operation="quick_pay")
    with pytest.raises(MOTPTransportError) as caught:
        pay(client, f"FAULT-{kind}")
    assert motp_sandbox.calls("quick_pay") == 1
    if kind in ("reset", "cutoff"):
        assert isinstance(caught.value.__cause__, requests.RequestException)


def test_slow_answer_times_out(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "TIMEOUT": 0.3}
    motp_sandbox.configure(slow_delay=2)
    client = MOTPClient.from_settings()
    client.get_token()
    motp_sandbox.fault("slow", operation="native_pay")
    with pytest.raises(MOTPTransportError, match="did not answer in time") as caught:
        client.native_pay(store_id="10001", service_id=30, amount="1.00", out_trade_no="SLOW-1")
    assert isinstance(caught.value.__cause__, requests.Timeout)


def test_status_checks_are_retried_once_on_a_transport_error(motp_sandbox, client):
    pay(client, "RETRY-1")
    motp_sandbox.fault("502", operation="check_payment")
    assert client.check_payment("10001", "RETRY-1")["is_success"] is True
    motp_sandbox.fault("502", operation="check_payment", count=2)
    with pytest.raises(MOTPTransportError):
        client.check_payment("10001", "RETRY-1")


def test_unreachable_gateway_is_a_transport_error(settings):
    settings.MOTP = {**settings.MOTP, "BASE_URL": "http://127.0.0.1:9", "TIMEOUT": 1}
    with pytest.raises(MOTPTransportError) as caught:
        MOTPClient.from_settings().get_token()
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_secrets_never_reach_records_errors_or_logs(motp_sandbox, client, records, caplog):
    caplog.set_level(logging.DEBUG, logger="django_motp")
    pay(client, "SECRET-1")
    token = client.get_token()
    with pytest.raises(MOTPAPIError) as caught:
        pay(client, "SECRET-2", auth_code="1346100000000abc")
    motp_sandbox.fault("502", operation="quick_pay")
    with pytest.raises(MOTPTransportError):
        pay(client, "SECRET-3")
    password = client._password
    everything = repr(records) + caplog.text + repr(caught.value) + repr(caught.value.payload)
    for secret in (password, token, AUTH_CODE_PAID, "1346100000000abc"):
        assert secret not in everything
    assert {r.operation for r in records} >= {"token", "quick_pay"}
    assert records[0].request["password"] == "[redacted]"


def test_forget_token_makes_the_next_call_fetch_a_fresh_one(motp_sandbox, client):
    first = client.get_token()
    client.forget_token()
    assert client.get_token() != first
    assert motp_sandbox.calls("token") == 2


def test_the_token_call_is_retried_once_after_a_transport_error(motp_sandbox, client):
    motp_sandbox.fault("502", operation="token")
    assert client.get_token()
    assert motp_sandbox.calls("token") == 2


def test_refund_status_checks_are_retried_once(motp_sandbox, client):
    pay(client, "RETRY-2", amount="5.00")
    client.refund(
        store_id="10001",
        service_id=30,
        out_trade_no="RETRY-2",
        out_refund_no="RETRY-2-A",
        refund_amount=Decimal("1.00"),
    )
    motp_sandbox.fault("reset", operation="check_refund")
    assert client.check_refund("10001", "RETRY-2", "RETRY-2-A")["is_success"] is True
    assert motp_sandbox.calls("check_refund") == 2


def test_jsapi_pay_waits_as_long_as_quick_pay(motp_sandbox, motp_settings):
    motp_settings(TIMEOUT=0.3, QUICK_PAY_TIMEOUT=5)
    motp_sandbox.configure(pin_delay=1)
    client = MOTPClient.from_settings()
    client.get_token()
    data = client.jsapi_pay(
        store_id="10001",
        service_id=30,
        amount=Decimal("5.00"),
        out_trade_no="JSAPI-PIN",
        auth_code=AUTH_CODE_PIN,
    )
    assert data["result_code"] == "SUCCESS"
    assert (motp_sandbox.calls("jsapi_pay"), motp_sandbox.calls("quick_pay")) == (1, 0)


def test_an_unusable_token_answer_is_never_quoted(motp_sandbox, client, records, caplog):
    # A proxy's cut-off copy could hold the token, which nothing could then know to redact.
    caplog.set_level(logging.DEBUG, logger="django_motp")
    motp_sandbox.fault("html", operation="token", count=2)
    with pytest.raises(MOTPTransportError) as caught:
        client.get_token()
    told = repr(caught.value) + caplog.text + repr(records)
    assert "<html" not in told.lower()
    assert "bytes" in str(caught.value)
    assert [r.response.split(",")[0] for r in records] == ["HTTP 200", "HTTP 200"]


# A refusal is an auth failure only when it is about the token ------------------------------------


class CannedGateway(ThreadingHTTPServer):
    """A loopback gateway that hands out tokens and answers every other call with ``answer``
    (a canned JSON body), recording the paths it was asked."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.answer: dict[str, Any] = {}
        self.paths: list[str] = []
        self.tokens = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def asked(self, operation: str) -> int:
        return self.paths.count(ENDPOINTS[operation])


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CannedGateway

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)
        if self.path == ENDPOINTS["token"]:
            self.server.tokens += 1
            answer = {"success": True, "data": {"token": f"canned-{self.server.tokens}"}}
        else:
            answer = self.server.answer
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[CannedGateway]:
    server = CannedGateway()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def refused(message: str) -> dict[str, Any]:
    return {"success": False, "data": {"message": message}}


#: Declines, and refusals about something else than the token: resending a pay call after one
#: of these (as after an auth failure) could charge the buyer twice.
NOT_ABOUT_THE_TOKEN = [
    "unauthorized",
    "Unauthorized",
    "401 Unauthorized",
    "PAYERROR: unauthorized card",
    "Merchant not authorized for this service",
    "Unauthenticated",
    "AUTHCODEEXPIRE: the buyer's payment code expired, ask for a new one",
    "AUTH_CODE_INVALID: auth code invalid",
    "Invalid signature",
    "Session expired",
    "Password expired",
    "PAYERROR: card tokenization required",
    "PAYERROR: tokenized card invalid",
    "SYSTEMERROR: token service busy, try again",
    "ORDERPAID: order already paid",
    "PAYERROR: insufficient balance",
    "",
]

#: What a gateway says when the token itself was refused (the sandbox's wordings among them).
ABOUT_THE_TOKEN = [
    "Token is invalid or expired",
    "Unauthenticated: token is missing or expired",
    "token required",
    "TOKEN EXPIRED",
]


@pytest.mark.parametrize("message", NOT_ABOUT_THE_TOKEN)
def test_a_refusal_not_about_the_token_is_a_decline_and_the_pay_call_is_not_resent(canned, message):
    canned.answer = refused(message)
    client = MOTPClient(canned.url, "merchant", "secret")
    with pytest.raises(MOTPAPIError) as caught:
        pay(client, "CANNED-1")
    assert not isinstance(caught.value, MOTPAuthError)
    assert canned.asked("quick_pay") == 1
    assert canned.asked("token") == 1  # and the token was not thrown away


@pytest.mark.parametrize("message", ABOUT_THE_TOKEN)
def test_a_refusal_about_the_token_fetches_a_fresh_one_and_resends_once(canned, message):
    canned.answer = refused(message)
    client = MOTPClient(canned.url, "merchant", "secret")
    with pytest.raises(MOTPAuthError):
        pay(client, "CANNED-2")
    assert canned.asked("quick_pay") == 2  # refused before it was processed: safe to resend
    assert canned.asked("token") == 2


# The call log ------------------------------------------------------------------------------------


def test_a_call_log_that_raises_never_breaks_a_call(motp_sandbox, caplog):
    def broken(record):
        raise RuntimeError("the call log is full")

    client = MOTPClient.from_settings(on_call=broken)
    assert pay(client, "LOG-1")["result_code"] == "SUCCESS"
    with pytest.raises(MOTPAPIError, match="insufficient balance"):  # the decline, not the log
        pay(client, "LOG-2", auth_code=AUTH_CODE_DECLINED)
    assert motp_sandbox.calls("quick_pay") == 2
    assert caplog.text.count("Recording the MOTP quick_pay call failed") == 2
    client.close()


@pytest.mark.django_db(transaction=True)
def test_a_call_log_table_that_cannot_be_written_never_breaks_a_payment(motp_sandbox, signal_log):
    with database_fails(lambda sql: sql.startswith('INSERT INTO "django_motp_apicall"')) as failed:
        payment = services.create_quick_payment(Decimal("4.00"), AUTH_CODE_PAID)
    assert failed  # the log was tried, and failed
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.SUCCEEDED
    assert signal_names(signal_log).count("payment_succeeded") == 1
    assert motp_sandbox.calls("quick_pay") == 1


# The token lock across processes sharing Redis --------------------------------------------------


@pytest.fixture
def redis_config(motp_sandbox) -> Iterator[dict[str, Any]]:
    """What a client in another process needs to share this test's token cache on Redis."""
    from django.core.cache.backends.redis import RedisCache

    config = {
        "redis_url": REDIS_URL,
        "key_prefix": f"motp-tests-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        "base_url": motp_sandbox.url,
        "username": motp_sandbox.username,
        "password": motp_sandbox.password,
        "timeout": 10,
    }
    yield config
    RedisCache(REDIS_URL, {"KEY_PREFIX": config["key_prefix"]}).clear()


def redis_client(config: dict[str, Any], **options: Any) -> MOTPClient:
    from django.core.cache.backends.redis import RedisCache

    cache = RedisCache(config["redis_url"], {"KEY_PREFIX": config["key_prefix"]})
    return MOTPClient(
        config["base_url"], config["username"], config["password"], cache=cache, **options
    )


@pytest.mark.redis
def test_processes_sharing_redis_fetch_one_token(motp_sandbox, redis_config):
    # The first fetch is slow, so the others surely arrive while it runs.
    motp_sandbox.configure(slow_delay=0.5)
    motp_sandbox.fault("slow", operation="token")
    spawn = multiprocessing.get_context("spawn")  # processes of their own, nothing inherited
    barrier, tokens = spawn.Barrier(4), spawn.Queue()
    processes = [
        spawn.Process(target=fetch_token_in_process, args=(redis_config, barrier, tokens))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    fetched = [tokens.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
        assert process.exitcode == 0
    assert len(set(fetched)) == 1
    assert motp_sandbox.calls("token") == 1


@pytest.mark.redis
def test_a_token_fetcher_that_dies_holding_the_lock_does_not_block_the_others(
    motp_sandbox, redis_config
):
    motp_sandbox.configure(slow_delay=60)
    motp_sandbox.fault("slow", operation="token")
    spawn = multiprocessing.get_context("spawn")
    never_told = spawn.Queue()
    holder = spawn.Process(
        target=fetch_token_in_process, args=({**redis_config, "timeout": 120}, None, never_told)
    )
    holder.start()
    wait_until(lambda: motp_sandbox.calls("token") == 1, timeout=30)  # it holds the lock
    holder.kill()  # and dies fetching
    holder.join(timeout=10)
    # Another process waits for that token at most its own timeout, then fetches one itself.
    client = redis_client(redis_config, timeout=1)
    token = client.get_token()
    assert token
    assert motp_sandbox.calls("token") == 2
    assert redis_client(redis_config).get_token() == token  # and shares it
    client.close()
