"""The control API under ``/_sandbox/``: what a test or a person uses to steer the sandbox.

No authentication (the server serves it to loopback clients, at a loopback ``Host``, and refuses
cross-site browser posts). Bodies are JSON objects sent as ``Content-Type: application/json`` (an
empty body counts as ``{}``); every answer is ``{"success": bool, "data": {...}}``. Statuses:
200 done, 400 bad request, 404 unknown order or path, 405 wrong method, 409 order not NOTPAY
(and from the server: 403 not a loopback client or a cross-site post, 421 not a loopback host).

- ``GET /_sandbox/orders``: ``{"orders": [order, ...]}``, oldest first.
- ``GET /_sandbox/orders/<out_trade_no>``: the order, with its ``refunds``.
- ``POST /_sandbox/orders/<out_trade_no>/pay``: the buyer pays, NOTPAY becomes SUCCESS; the order.
- ``POST /_sandbox/orders/<out_trade_no>/decline``: NOTPAY becomes PAYERROR, with the optional
  body's ``{"message": ...}`` as decline text; the order.
- ``POST /_sandbox/script`` ``{"outcome": ..., "delay": n}``: the next payment created follows
  that outcome (first in, first out); ``{"queued": [...]}``.
- ``POST /_sandbox/faults`` ``{"kind": ..., "operation": ..., "when": ..., "count": n}``, or
  ``{"rate": r}``; ``{"queued": [...], "rate": r}``.
- ``POST /_sandbox/tokens/expire``: every token issued so far expires; ``{"expired": n}``.
- ``GET /_sandbox/config``, ``POST /_sandbox/config`` ``{option: value, ...}``: the runtime
  options, after the change.
- ``POST /_sandbox/reset``: orders, tokens, scripts, faults, counts and options back to how the
  server started.
- ``GET /_sandbox/stats``: ``{"requests": {operation: n, ...}, "total": n}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .endpoints import OPERATIONS
from .errors import Conflict, NotFound, Refused
from .faults import parse_fault, parse_rate
from .gateway import Answer, failure, success
from .outcomes import Outcome
from .state import BUYER_DECLINED_MESSAGE, SandboxState, parse_seconds
from .validation import parse_body

PREFIX = "/_sandbox/"

Handler = Callable[[tuple[str, ...], dict[str, Any]], dict[str, Any]]


def _route(segments: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """The route name and its arguments for the path segments after ``/_sandbox/``."""
    match segments:
        case ["orders"]:
            return "orders", ()
        case ["orders", out_trade_no]:
            return "order", (out_trade_no,)
        case ["orders", out_trade_no, ("pay" | "decline") as action]:
            return action, (out_trade_no,)
        case ["tokens", "expire"]:
            return "expire_tokens", ()
        case [("script" | "faults" | "config" | "reset" | "stats") as name]:
            return name, ()
    return None


class Control:
    """Routes control calls to a ``SandboxState``."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._handlers: dict[tuple[str, str], Handler] = {
            ("GET", "orders"): lambda args, body: {"orders": state.order_dicts()},
            ("GET", "order"): lambda args, body: state.order_dict(*args),
            ("POST", "pay"): lambda args, body: state.pay(*args),
            ("POST", "decline"): self._decline,
            ("POST", "script"): self._script,
            ("POST", "faults"): self._faults,
            ("POST", "expire_tokens"): lambda args, body: {"expired": state.expire_tokens()},
            ("GET", "config"): lambda args, body: state.configure(),
            ("POST", "config"): lambda args, body: state.configure(body),
            ("POST", "reset"): self._reset,
            ("GET", "stats"): lambda args, body: state.stats(),
        }

    def handle(self, method: str, path: str, content_type: str | None, body: bytes) -> Answer:
        """The answer to a control call at ``path`` (which starts with ``/_sandbox/``)."""
        segments = [unquote(part) for part in path[len(PREFIX) :].strip("/").split("/")]
        route = _route(segments)
        if route is None:
            return failure(f"No control call at {path}", 404)
        name, args = route
        handler = self._handlers.get((method, name))
        if handler is None:
            allowed = " or ".join(m for m, n in self._handlers if n == name)
            return failure(f"{path} takes {allowed}, not {method}", 405)
        try:
            # An empty body is {}: what curl and the buyer page's buttons (no fields) send.
            return success(handler(args, parse_body(content_type, body, empty=True)))
        except NotFound as error:
            return failure(error.message, 404)
        except Conflict as error:
            return failure(error.message, 409)
        except Refused as error:
            return failure(error.message, 400)

    def _decline(self, args: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
        message = body.get("message") or BUYER_DECLINED_MESSAGE
        if not isinstance(message, str):
            raise Refused("message must be a string")
        (out_trade_no,) = args
        return self.state.decline(out_trade_no, message)

    def _script(self, args: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
        try:
            outcome = Outcome(str(body.get("outcome")))
        except ValueError:
            raise Refused(f"outcome must be one of {', '.join(Outcome)}") from None
        delay = body.get("delay")
        seconds = None if delay is None else parse_seconds("delay", delay)
        return {"queued": self.state.add_script(outcome, seconds)}

    def _faults(self, args: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
        if "rate" in body:
            return self.state.set_fault_rate(parse_rate(body["rate"]))
        return self.state.add_fault(parse_fault(body, OPERATIONS))

    def _reset(self, args: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
        self.state.reset()
        return {"message": "Sandbox reset"}
