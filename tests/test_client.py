"""The gateway client against the sandbox gateway over loopback."""

import logging
import threading
from decimal import Decimal

import pytest
import requests

from django_motp.client import MOTPClient, dumps
from django_motp.exceptions import MOTPAPIError, MOTPAuthError, MOTPTransportError
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_USERPAYING,
)
from tests.helpers import at_once


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


def test_jsapi_pay(client):
    data = client.jsapi_pay(
        store_id="10001",
        service_id=30,
        amount=Decimal("5.00"),
        out_trade_no="JSAPI-1",
        auth_code=AUTH_CODE_PAID,
    )
    assert data["result_code"] == "SUCCESS"
    assert data["transaction_id"]


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


def test_processes_sharing_the_cache_fetch_one_token(motp_sandbox, monkeypatch):
    # Each client gets its own lock, as clients in separate processes would: only the
    # cache's atomic add keeps them from all fetching a token.
    monkeypatch.setattr("django_motp.client._process_lock", lambda key: threading.Lock())
    tokens = at_once(lambda: MOTPClient.from_settings().get_token(), times=6)
    assert len(set(tokens)) == 1
    assert motp_sandbox.calls("token") == 1


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


def test_jsapi_pay_waits_as_long_as_quick_pay(motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "TIMEOUT": 0.3, "QUICK_PAY_TIMEOUT": 5}
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
