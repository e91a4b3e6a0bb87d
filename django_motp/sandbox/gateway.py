"""The gateway operations: a request in, the answer the MOTP gateway would give out.

``Gateway.handle`` knows nothing of sockets: it takes the operation name, the ``Authorization``
and ``Content-Type`` headers and the raw body, and returns an ``Answer`` (HTTP status and JSON
payload). The only waiting it does is the buyer's PIN (outcome ``pin``), outside the state's lock;
the server's ``stopping`` event ends it early (``Stopped``: the request gets no answer).

HTTP statuses: 200 for every answer, including ``success: false`` refusals (validation, unknown
order, declines), as the gateway does; ``auth_failure_status`` (401 by default) for a bad token
or bad credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import Refused, Stopped, Unauthorized
from .outcomes import USERPAYING_MESSAGE, outcome_for_auth_code
from .state import (
    CURRENCY,
    PAYMENT_MESSAGES,
    REFUND_MESSAGES,
    OrderStatus,
    RefundStatus,
    SandboxState,
)
from .validation import clean, parse_body

TOKEN_REFUSED = "Unauthenticated: token is missing or expired"
#: The text of a gateway that refuses a token with HTTP 200 (``auth_failure_status=200``).
TOKEN_REFUSED_IN_BODY = "Token is invalid or expired"


@dataclass(frozen=True)
class Answer:
    """An HTTP status and the JSON payload to send with it."""

    status: int
    payload: dict[str, Any]


def success(data: dict[str, Any]) -> Answer:
    return Answer(200, {"success": True, "data": data})


def failure(message: str, status: int = 200) -> Answer:
    return Answer(status, {"success": False, "data": {"message": message}})


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _store_number(store_id: str) -> int | str:
    # The gateway answers store_id as a number; a store id that is not all digits stays text.
    return int(store_id) if store_id.isdigit() else store_id


class Gateway:
    """The seven gateway operations over one ``SandboxState``.

    ``stopping`` is the server's stop event: set, it ends a PIN wait at once.
    """

    def __init__(self, state: SandboxState, stopping: threading.Event | None = None) -> None:
        self.state = state
        self.stopping = stopping or threading.Event()
        self._operations: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "token": self._token,
            "native_pay": self._native_pay,
            "quick_pay": self._quick_pay,
            "jsapi_pay": self._jsapi_pay,
            "refund": self._refund,
            "check_payment": self._check_payment,
            "check_refund": self._check_refund,
        }

    def handle(
        self,
        operation: str,
        *,
        authorization: str | None,
        content_type: str | None,
        body: bytes,
    ) -> Answer:
        """Authenticate (except the token call), validate, apply; the answer to send back."""
        try:
            if operation != "token":
                self.state.check_token(_bearer(authorization))
            request = clean(operation, parse_body(content_type, body), self.state.config.store_id)
            return self._operations[operation](request)
        except Unauthorized as error:
            status = self.state.config.auth_failure_status
            if operation == "token":
                return failure(error.message, status)
            return failure(TOKEN_REFUSED_IN_BODY if status == 200 else TOKEN_REFUSED, status)
        except Refused as error:
            return failure(error.message)

    def _token(self, request: dict[str, Any]) -> Answer:
        token = self.state.issue_token(request["user"], request["password"])
        if self.state.config.legacy_token:
            return Answer(200, {"status": "SUCCESS", "msg": token})
        return success({"message": "SUCCESS", "token": token})

    def _native_pay(self, request: dict[str, Any]) -> Answer:
        order = self.state.create_payment("native", request, None).order
        return success(
            {
                "qr_code": order.qr_code,
                "amount": order.amount,
                "out_trade_no": order.out_trade_no,
                "result_code": "SUCCESS",
            }
        )

    def _quick_pay(self, request: dict[str, Any]) -> Answer:
        return self._code_pay("quick", request)

    def _jsapi_pay(self, request: dict[str, Any]) -> Answer:
        return self._code_pay("jsapi", request)

    def _code_pay(self, method: str, request: dict[str, Any]) -> Answer:
        outcome = outcome_for_auth_code(request["auth_code"])
        created = self.state.create_payment(method, request, outcome)
        order = created.order
        if created.hold:
            if self.stopping.wait(created.hold):
                raise Stopped
            order = self.state.finish_hold(order.out_trade_no, created.generation)
        if order.status is OrderStatus.PAYERROR:
            return failure(order.message)
        if order.status is OrderStatus.NOTPAY:
            return failure(USERPAYING_MESSAGE)
        return success(
            {
                "amount": order.amount,
                "currency": CURRENCY,
                "out_trade_no": order.out_trade_no,
                "transaction_id": order.transaction_id,
                "result_code": "SUCCESS",
            }
        )

    def _refund(self, request: dict[str, Any]) -> Answer:
        refund = self.state.create_refund(request)
        if refund.status is RefundStatus.FAILED:
            return failure(refund.message)
        return success(
            {
                "service_id": refund.service_id,
                "store_id": _store_number(self.state.config.store_id),
                "refund_amount": refund.amount,
                "currency": CURRENCY,
                "out_trade_no": refund.out_trade_no,
                "out_refund_no": refund.out_refund_no,
                "transaction_id": refund.transaction_id,
                "result_code": "SUCCESS",
            }
        )

    def _check_payment(self, request: dict[str, Any]) -> Answer:
        order = self.state.payment(request["out_trade_no"])
        return success(
            {
                "is_success": order.status is OrderStatus.SUCCESS,
                "service_id": order.service_id,
                "out_trade_no": order.out_trade_no,
                "amount": order.amount,
                # The order's latest refund, as the spec's answer shows; null before any.
                "out_refund_no": order.refund_nos[-1] if order.refund_nos else None,
                "currency": CURRENCY,
                "message": PAYMENT_MESSAGES.get(order.status, order.message),
            }
        )

    def _check_refund(self, request: dict[str, Any]) -> Answer:
        refund = self.state.refund_status(request["out_trade_no"], request.get("out_refund_no"))
        return success(
            {
                "is_success": refund.status is RefundStatus.SUCCESS,
                "service_id": refund.service_id,
                "out_trade_no": refund.out_trade_no,
                "out_refund_no": refund.out_refund_no,
                "amount": refund.amount,
                "currency": CURRENCY,
                "message": REFUND_MESSAGES.get(refund.status, refund.message),
            }
        )
