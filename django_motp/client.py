"""The MOTP gateway client: HTTP and JSON only, nothing here touches the database.

One ``requests.Session`` per client (connection pooling), a versioned User-Agent, JSON bodies,
``Authorization: Bearer`` and a timeout on every call. Each operation returns the answer's
``data`` dict with amounts as ``Decimal``, or raises:

- ``MOTPAPIError``: the gateway answered ``success: false`` (``.message`` is its text);
- ``MOTPAuthError``: the credentials or the token were refused, even after one fresh token;
- ``MOTPTransportError``: no usable answer (timeout, reset, 5xx, HTML, cut-off JSON, no ``data``),
  so the outcome is unknown.

Only the token call and the two status checks (idempotent) are retried on a transport error;
payment and refund POSTs never are: their unknown outcome is for a status check to resolve.

The token is cached in Django's cache for ``token_ttl`` seconds so that processes share it; on an
auth failure a fresh one is fetched once and the call retried once. Concurrent callers wait for
one fetch instead of stampeding the token endpoint.

Every HTTP call is reported to ``on_call`` (if given) as a ``CallRecord`` with secrets redacted;
that is how the API call log is written without this module knowing of models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partialmethod
from typing import Any

import requests

from . import __version__
from .exceptions import MOTPAPIError, MOTPAuthError, MOTPError, MOTPTransportError

logger = logging.getLogger(__name__)

#: Request and answer fields holding money.
AMOUNT_FIELDS = frozenset({"amount", "refund_amount", "total_amount", "fee_amount"})
#: Fields whose values never leave this module unredacted.
SECRET_FIELDS = frozenset({"password", "token", "auth_code", "msg"})
REDACTED = "[redacted]"
#: ``success: false`` messages that mean the token (not the request) was refused.
AUTH_MESSAGE = re.compile(r"\btoken\b.*\b(invalid|expired|missing|required)\b", re.IGNORECASE)
#: How often a caller waiting for another process's token fetch looks for the token.
TOKEN_WAIT_STEP = 0.05


@dataclass(frozen=True)
class CallRecord:
    """One HTTP call as the API call log keeps it; every secret already redacted."""

    operation: str
    url: str
    outcome: str  # "ok", "declined", "auth_failed" or "transport_error"
    http_status: int | None
    duration_ms: int
    request: dict[str, Any]
    response: Any
    error: str = ""
    out_trade_no: str = ""
    out_refund_no: str = ""


def dumps(value: Any) -> str:
    """JSON text in which every ``Decimal`` keeps exactly its digits (``19.90`` stays ``19.90``).

    ``float`` is refused: binary floats are not money.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite amount")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("Use Decimal, not float, for amounts")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def to_decimal(value: Decimal | int | str) -> Decimal:
    """An amount as ``Decimal``; floats are refused rather than silently rounded."""
    if isinstance(value, float | bool):
        raise TypeError(f"Amount {value!r} must be a Decimal, an int or a string, not a float")
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _amounts_to_decimal(data: dict[str, Any]) -> dict[str, Any]:
    # parse_float=Decimal already turned 0.01 into Decimal; this catches whole numbers (5).
    return {
        k: Decimal(v)
        if k in AMOUNT_FIELDS and isinstance(v, int) and not isinstance(v, bool)
        else v
        for k, v in data.items()
    }


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with secret fields masked and known secret strings scrubbed."""
    secrets = [s for s in secrets if s]
    if isinstance(value, Mapping):
        return {k: REDACTED if k in SECRET_FIELDS else redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


class MOTPClient:
    """A client for one merchant account of the MOTP gateway. Thread-safe for concurrent calls."""

    user_agent = f"django-motp/{__version__} python-requests/{requests.__version__}"

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        endpoints: Mapping[str, str] | None = None,
        timeout: float = 10,
        quick_pay_timeout: float = 45,
        token_ttl: float = 50,
        cache: Any = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        from .conf import DEFAULT_ENDPOINTS

        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.endpoints = {**DEFAULT_ENDPOINTS, **(endpoints or {})}
        self.timeout = timeout
        self.quick_pay_timeout = quick_pay_timeout
        self.token_ttl = token_ttl
        self.on_call = on_call
        if cache is None:
            from django.core.cache import cache as default_cache

            cache = default_cache
        self.cache = cache
        digest = hashlib.sha256(f"{self.base_url}|{username}".encode()).hexdigest()[:16]
        self._token_key = f"django_motp:token:{digest}"
        self._token_lock = _process_lock(self._token_key)
        self.session = self.build_session()

    @classmethod
    def from_settings(cls, **overrides: Any) -> MOTPClient:
        """A client configured from ``settings.MOTP``; keyword arguments override settings."""
        from .conf import motp_settings as s

        options: dict[str, Any] = {
            "base_url": s.BASE_URL,
            "username": s.USERNAME,
            "password": s.PASSWORD,
            "endpoints": s.ENDPOINTS,
            "timeout": s.TIMEOUT,
            "quick_pay_timeout": s.QUICK_PAY_TIMEOUT,
            "token_ttl": s.TOKEN_TTL,
        }
        options.update(overrides)
        return cls(**options)

    def build_session(self) -> requests.Session:
        """The ``requests.Session`` every call goes through; override to add adapters or proxies."""
        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": self.user_agent,
                "Accept": "application/json",
                "Content-Type": "application/json",
            }
        )
        return session

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"<MOTPClient {self.base_url} user={self.username!r}>"

    # Operations ------------------------------------------------------------------------------

    def get_token(self, *, stale: str | None = None) -> str:
        """A valid token: the cached one unless it is ``stale`` (just refused), else a fresh one."""
        if self.token_ttl <= 0:
            return self._fetch_token()
        token = self.cache.get(self._token_key)
        if token and token != stale:
            return str(token)
        with self._token_lock:  # one fetch per process at a time
            token = self.cache.get(self._token_key)
            if token and token != stale:
                return str(token)
            # Across processes: whoever adds the lock key fetches, the others wait for its token.
            lock_key = f"{self._token_key}:lock"
            owner = uuid.uuid4().hex
            deadline = time.monotonic() + self.timeout
            while not self.cache.add(lock_key, owner, timeout=int(self.timeout) + 1):
                if time.monotonic() > deadline:
                    break  # the other fetcher died or hangs: fetch ourselves
                time.sleep(TOKEN_WAIT_STEP)
                token = self.cache.get(self._token_key)
                if token and token != stale:
                    return str(token)
            try:
                token = self._fetch_token()
                self.cache.set(self._token_key, token, timeout=self.token_ttl)
            finally:
                # Only our own lock: if ours ran out during a slow fetch, another process holds
                # the key now, and deleting it would let a third stampede in.
                if self.cache.get(lock_key) == owner:
                    self.cache.delete(lock_key)
            return token

    def forget_token(self) -> None:
        """Drop the cached token, so that the next call fetches a fresh one."""
        self.cache.delete(self._token_key)

    def native_pay(
        self,
        *,
        store_id: str,
        service_id: int,
        amount: Decimal | int | str,
        out_trade_no: str,
        sub_store_id: str | int | None = None,
        sub_store_name: str | None = None,
        fee_rate: Decimal | int | str = 0,
    ) -> dict[str, Any]:
        """Ask for a dynamic QR code the buyer scans; ``data["qr_code"]`` is the code's text."""
        body = self._pay_body(
            store_id,
            service_id,
            amount,
            out_trade_no,
            sub_store_id,
            sub_store_name,
            fee_rate,
        )
        return self._call("native_pay", body)

    def _charge(
        self,
        operation: str,
        *,
        store_id: str,
        service_id: int,
        amount: Decimal | int | str,
        out_trade_no: str,
        auth_code: str,
        sub_store_id: str | int | None = None,
        sub_store_name: str | None = None,
        fee_rate: Decimal | int | str = 0,
    ) -> dict[str, Any]:
        body = self._pay_body(
            store_id,
            service_id,
            amount,
            out_trade_no,
            sub_store_id,
            sub_store_name,
            fee_rate,
        )
        body["auth_code"] = str(auth_code)
        return self._call(operation, body, timeout=self.quick_pay_timeout, secrets=[str(auth_code)])

    #: Charge the buyer's payment code (the seller scans it); the arguments of ``native_pay``
    #: plus ``auth_code``. Waits ``quick_pay_timeout``: the buyer may have to type a PIN.
    quick_pay = partialmethod(_charge, "quick_pay")
    #: The same through the gateway's JSAPI (in-wallet) operation.
    jsapi_pay = partialmethod(_charge, "jsapi_pay")

    def refund(
        self,
        *,
        store_id: str,
        service_id: int,
        out_trade_no: str,
        out_refund_no: str,
        refund_amount: Decimal | int | str,
        reason: str = "",
    ) -> dict[str, Any]:
        """Ask for a refund. Success means "accepted": confirm it with ``check_refund``."""
        body = {
            "service_id": service_id,
            "store_id": str(store_id),
            "refund_amount": to_decimal(refund_amount),
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "reason": reason,
        }
        return self._call("refund", body)

    def check_payment(self, store_id: str | int, out_trade_no: str) -> dict[str, Any]:
        """The payment's status; ``data["is_success"]`` is False for "not paid yet" and "failed"."""
        body = {"store_id": _numeric_id(store_id), "out_trade_no": out_trade_no}
        return self._call("check_payment", body, retry_transport=True)

    def check_refund(
        self, store_id: str | int, out_trade_no: str, out_refund_no: str | None = None
    ) -> dict[str, Any]:
        """A refund's status. Without ``out_refund_no`` the gateway answers about the latest refund
        of the payment, so callers with several refunds must pass it and match the answer's."""
        body: dict[str, Any] = {
            "store_id": _numeric_id(store_id),
            "out_trade_no": out_trade_no,
        }
        if out_refund_no:
            body["out_refund_no"] = out_refund_no
        return self._call("check_refund", body, retry_transport=True)

    # Plumbing --------------------------------------------------------------------------------

    def _pay_body(
        self,
        store_id: str,
        service_id: int,
        amount: Decimal | int | str,
        out_trade_no: str,
        sub_store_id: str | int | None,
        sub_store_name: str | None,
        fee_rate: Decimal | int | str,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "service_id": service_id,
            "store_id": str(store_id),
            "amount": to_decimal(amount),
            "fee_rate": to_decimal(fee_rate),
            "out_trade_no": out_trade_no,
        }
        if sub_store_id not in (None, ""):
            body["sub_store_id"] = sub_store_id
        if sub_store_name:
            body["sub_store_name"] = sub_store_name
        return body

    def _fetch_token(self) -> str:
        body = {"user": self.username, "password": self._password}
        try:
            answer = self._request("token", body, token=None, timeout=self.timeout)
        except MOTPTransportError:
            answer = self._request("token", body, token=None, timeout=self.timeout)
        # An older gateway revision answered {"status": "SUCCESS", "msg": "<token>"}.
        token = answer.get("token")
        if not token:
            raise MOTPTransportError("The token answer carried no token", operation="token")
        return str(token)

    def _call(
        self,
        operation: str,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        secrets: Iterable[str] = (),
        retry_transport: bool = False,
    ) -> dict[str, Any]:
        timeout = timeout or self.timeout
        token = self.get_token()
        try:
            return self._request(operation, body, token=token, timeout=timeout, secrets=secrets)
        except MOTPAuthError:
            # Refused before it was processed, so a retry with a fresh token is safe.
            token = self.get_token(stale=token)
            return self._request(operation, body, token=token, timeout=timeout, secrets=secrets)
        except MOTPTransportError:
            if not retry_transport:
                raise
            return self._request(operation, body, token=token, timeout=timeout, secrets=secrets)

    def _request(
        self,
        operation: str,
        body: dict[str, Any],
        *,
        token: str | None,
        timeout: float,
        secrets: Iterable[str] = (),
    ) -> dict[str, Any]:
        """One POST; returns ``data`` or raises. Reports the call to ``on_call`` either way."""
        url = self.base_url + self.endpoints[operation]
        secrets = [
            self._password,
            *([token] if token else []),
            *[str(s) for s in secrets],
        ]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.monotonic()
        response: requests.Response | None = None
        payload: Any = None
        try:
            try:
                response = self.session.post(
                    url, data=dumps(body).encode(), headers=headers, timeout=timeout
                )
                payload = _parse(response)
            except requests.RequestException as err:
                raise MOTPTransportError(
                    _describe(err), operation=operation, status_code=_status(response)
                ) from err
            data = self._interpret(operation, response, payload, secrets)
        except MOTPError as err:
            err.message = redact(err.message, secrets)
            err.args = (err.message,)  # repr() and Celery's failure logs show args
            self._report(operation, url, body, response, payload, started, secrets, err)
            raise
        self._report(operation, url, body, response, payload, started, secrets, None)
        return data

    def _interpret(
        self,
        operation: str,
        response: requests.Response,
        payload: Any,
        secrets: list[str],
    ) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            raise MOTPAuthError(
                _message(payload) or "The gateway refused the credentials",
                status_code=status,
                payload=redact(payload, secrets),
                operation=operation,
            )
        if status >= 500 or not isinstance(payload, dict):
            raise MOTPTransportError(
                f"Unusable answer from the gateway: {_snippet(response, operation)}",
                status_code=status,
                operation=operation,
            )
        if operation == "token" and payload.get("status") == "SUCCESS" and payload.get("msg"):
            return {"token": payload["msg"]}
        if payload.get("success") is False:
            message = _message(payload) or "The gateway refused the request"
            error_class = MOTPAuthError if AUTH_MESSAGE.search(message) else MOTPAPIError
            if operation == "token":
                error_class = MOTPAuthError
            raise error_class(
                message,
                status_code=status,
                payload=redact(payload, secrets),
                operation=operation,
            )
        data = payload.get("data")
        if payload.get("success") is not True or not isinstance(data, dict):
            raise MOTPTransportError(
                "The gateway's answer has no success flag or no data",
                status_code=status,
                operation=operation,
            )
        if status >= 400:
            raise MOTPTransportError(
                f"HTTP {status} with a success answer",
                status_code=status,
                operation=operation,
            )
        return _amounts_to_decimal(data)

    def _report(
        self,
        operation: str,
        url: str,
        body: dict[str, Any],
        response: requests.Response | None,
        payload: Any,
        started: float,
        secrets: list[str],
        error: MOTPError | None,
    ) -> None:
        duration_ms = round((time.monotonic() - started) * 1000)
        outcome = (
            "ok"
            if error is None
            else "auth_failed"
            if isinstance(error, MOTPAuthError)
            else "declined"
            if isinstance(error, MOTPAPIError)
            else "transport_error"
        )
        logger.log(
            logging.WARNING if isinstance(error, MOTPTransportError) else logging.DEBUG,
            "MOTP %s -> %s in %d ms%s",
            operation,
            _status(response) or "no answer",
            duration_ms,
            f": {error}" if error else "",
        )
        if self.on_call is None:
            return
        answer = payload if payload is not None else _snippet(response, operation) or None
        if operation == "token" and payload is not None:
            # Whatever key a gateway puts its token under, no string of it is kept.
            answer = _blank_strings(payload)
        record = CallRecord(
            operation=operation,
            url=url,
            outcome=outcome,
            http_status=_status(response),
            duration_ms=duration_ms,
            request=redact(body, secrets),
            response=redact(answer, secrets),
            error=str(error) if error else "",
            out_trade_no=str(body.get("out_trade_no", "")),
            out_refund_no=str(body.get("out_refund_no", "")),
        )
        try:
            self.on_call(record)
        except Exception:  # the call log must never break a payment
            logger.exception("Recording the MOTP %s call failed", operation)


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(key: str) -> threading.Lock:
    """The lock shared by every client of this process that uses the same token cache key."""
    with _process_locks_guard:
        return _process_locks.setdefault(key, threading.Lock())


def _blank_strings(value: Any) -> Any:
    """``value`` with every string redacted, keeping its shape, numbers and flags."""
    if isinstance(value, Mapping):
        return {k: _blank_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_blank_strings(v) for v in value]
    return REDACTED if isinstance(value, str) else value


def _numeric_id(value: str | int) -> str | int:
    """Status checks send ``store_id`` as a number, as the spec's examples do."""
    text = str(value)
    return int(text) if text.isdigit() else text


def _parse(response: requests.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return None  # HTML error pages and cut-off JSON: _interpret calls them unusable


def _message(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    data = payload.get("data")
    message = data.get("message") if isinstance(data, dict) else None
    return str(message or payload.get("message") or payload.get("msg") or "")


def _snippet(response: requests.Response | None, operation: str, limit: int = 200) -> str:
    """The start of an answer that could not be used, for logs and errors. Never for the token
    call: a cut-off answer may hold the token, which nothing could then recognise to redact."""
    if response is None:
        return ""
    if operation == "token":
        return f"HTTP {response.status_code}, {len(response.content)} bytes"
    text = response.content[:limit].decode("utf-8", "replace")
    return f"HTTP {response.status_code} {text!r}"


def _status(response: requests.Response | None) -> int | None:
    return response.status_code if response is not None else None


def _describe(err: requests.RequestException) -> str:
    if isinstance(err, requests.Timeout):
        return "The gateway did not answer in time"
    if isinstance(err, requests.ConnectionError):
        return "The connection to the gateway failed"
    return f"The gateway's answer could not be read ({type(err).__name__})"


__all__ = ["CallRecord", "MOTPClient", "dumps", "redact", "to_decimal"]
