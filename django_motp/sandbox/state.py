"""The sandbox gateway's memory: configuration, tokens, orders, refunds, scripts, faults, counts.

``SandboxState`` is thread-safe: one lock guards everything, and no method sleeps while holding
it (the PIN hold and slow faults wait in the request's thread, between two calls). Changes that
time drives (a USERPAYING order paid ``pay_delay`` seconds later, a refund leaving PROCESSING
``refund_delay`` seconds later) are applied by every method before it reads, so there is no timer
thread and a status check always sees them on time. A delay is the option's value when checked:
``configure({"refund_delay": 0})`` settles the refunds already waiting.

``reset()`` starts a new generation: a PIN hold that began before it cannot settle an order made
after it (``finish_hold`` checks the generation its order was made in).

Methods return copies (snapshots), never the live records.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ..money import buyer_total
from .endpoints import OPERATIONS
from .errors import Conflict, NotFound, Refused, Unauthorized
from .faults import Fault, FaultPlan
from .outcomes import DECLINED_MESSAGE, REFUND_REFUSED_MESSAGE, Outcome

CURRENCY = "USD"


class OrderStatus(StrEnum):
    NOTPAY = "NOTPAY"
    SUCCESS = "SUCCESS"
    PAYERROR = "PAYERROR"


class RefundStatus(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


#: The ``message`` a status check answers for each state (a PAYERROR order or a failed refund
#: answers its own decline text instead).
PAYMENT_MESSAGES = {
    OrderStatus.NOTPAY: "NOTPAY: waiting for the buyer",
    OrderStatus.SUCCESS: "Payment Successful!",
}
REFUND_MESSAGES = {
    RefundStatus.PROCESSING: "PROCESSING: refund in progress",
    RefundStatus.SUCCESS: "Refund Successful!",
}

#: The decline text of ``POST /_sandbox/orders/<out_trade_no>/decline`` without a message.
BUYER_DECLINED_MESSAGE = "PAYERROR: payment declined by the buyer"


@dataclass
class Config:
    """The sandbox's options; those in ``RUNTIME_OPTIONS`` can change while it runs."""

    username: str = "sandbox"
    password: str = "sandbox"
    store_id: str = "10001"
    #: Seconds a token lives.
    token_ttl: float = 60
    #: Answer the token call with the older ``{"status": "SUCCESS", "msg": token}`` shape.
    legacy_token: bool = False
    #: HTTP status of an authentication refusal; 200 mimics a gateway that says so in the body.
    auth_failure_status: int = 401
    pin_delay: float = 3
    pay_delay: float = 5
    refund_delay: float = 5
    slow_delay: float = 15
    #: Seconds added to every gateway answer: a gateway in another city (benchmarks).
    latency: float = 0.0
    #: Probability that a gateway request gets a random fault.
    fault_rate: float = 0.0


RUNTIME_OPTIONS = (
    "token_ttl",
    "legacy_token",
    "auth_failure_status",
    "pin_delay",
    "pay_delay",
    "refund_delay",
    "slow_delay",
    "latency",
)


def parse_options(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validated runtime options; raises ``Refused`` naming an unknown option or a bad value."""
    parsed: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in RUNTIME_OPTIONS:
            raise Refused(f"Unknown option {name!r}; options are {', '.join(RUNTIME_OPTIONS)}")
        if name == "legacy_token":
            if not isinstance(value, bool):
                raise Refused("legacy_token must be true or false")
            parsed[name] = value
        elif name == "auth_failure_status":
            if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
                raise Refused("auth_failure_status must be an HTTP status from 200 to 599")
            parsed[name] = value
        else:
            parsed[name] = parse_seconds(name, value)
    return parsed


def parse_seconds(name: str, value: Any) -> float:
    """A duration from a control-call body; raises ``Refused`` unless a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value < 0:
        raise Refused(f"{name} must be a number of seconds, 0 or more")
    return float(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _random_digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


def _qr_code() -> str:
    alphabet = string.ascii_letters + string.digits
    return "weixin://wxpay/bizpayurl?pr=" + "".join(secrets.choice(alphabet) for _ in range(7))


@dataclass
class Order:
    """A payment order, from the pay call that created it."""

    out_trade_no: str
    #: "native", "quick" or "jsapi".
    method: str
    amount: Decimal
    service_id: int
    fee_rate: Decimal
    sub_store_id: str | int | None
    sub_store_name: str | None
    outcome: Outcome | None
    status: OrderStatus = OrderStatus.NOTPAY
    #: The decline text of a PAYERROR order.
    message: str = ""
    transaction_id: str = field(default_factory=lambda: "4200" + _random_digits(24))
    qr_code: str = ""
    #: A scripted REFUND_PROCESSING delay replacing the ``refund_delay`` option.
    refund_delay: float | None = None
    created_at: datetime = field(default_factory=_now)
    settled_at: datetime | None = None
    refund_nos: list[str] = field(default_factory=list)

    @property
    def buyer_total(self) -> Decimal:
        return buyer_total(self.amount, self.fee_rate)

    @property
    def refund_policy(self) -> Outcome | None:
        return self.outcome if self.outcome in _REFUND_OUTCOMES else None


_REFUND_OUTCOMES = (Outcome.REFUND_PROCESSING, Outcome.REFUND_REFUSED)

#: Order fields the control API does not show (``refunds`` lists the refunds themselves).
_PRIVATE_FIELDS = frozenset({"refund_nos", "refund_delay"})


@dataclass
class Refund:
    """A refund of (part of) a SUCCESS order."""

    out_refund_no: str
    out_trade_no: str
    amount: Decimal
    service_id: int
    transaction_id: str
    reason: str
    status: RefundStatus
    message: str = ""
    created_at: datetime = field(default_factory=_now)
    settled_at: datetime | None = None


@dataclass(frozen=True)
class Created:
    """A new order, and how many seconds its pay call is held for the buyer's PIN (else 0).

    ``generation`` is the state's generation when the order was made: ``finish_hold`` needs it.
    """

    order: Order
    hold: float
    generation: int


@dataclass(frozen=True)
class _Timer:
    """A change that time makes: after ``scripted`` seconds if set, else the value of the
    ``option`` when checked (so shortening a delay settles what already waits).
    """

    started: float
    option: str
    scripted: float | None


@dataclass(frozen=True)
class _Script:
    outcome: Outcome
    delay: float | None


class SandboxState:
    """Everything the sandbox remembers, behind one lock."""

    def __init__(self, config: Config | None = None) -> None:
        self._initial = replace(config) if config else Config()
        self._lock = threading.Lock()
        #: Incremented by each ``reset()``: what began before a reset must not act after it.
        self._generation = 0
        self._reset()

    def _reset(self) -> None:
        self._config = replace(self._initial)
        self._tokens: dict[str, float] = {}
        self._orders: dict[str, Order] = {}
        self._refunds: dict[str, Refund] = {}
        self._scripts: deque[_Script] = deque()
        self._faults = FaultPlan(self._config.fault_rate)
        self._counts = dict.fromkeys(OPERATIONS, 0)
        # What time will change: ("order", out_trade_no) or ("refund", out_refund_no).
        self._timers: dict[tuple[str, str], _Timer] = {}

    def reset(self) -> None:
        """Forget every order, refund, token, script, fault and count; restore the start options."""
        with self._lock:
            self._generation += 1
            self._reset()

    @property
    def generation(self) -> int:
        """How many times the state was reset."""
        with self._lock:
            return self._generation

    # Options

    @property
    def config(self) -> Config:
        with self._lock:
            return replace(self._config)

    def configure(self, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Change runtime options (``{name: value}``, see ``RUNTIME_OPTIONS``); returns them all.

        Raises ``Refused`` for an unknown option or a bad value, changing nothing.
        """
        parsed = parse_options(changes or {})
        with self._lock:
            for name, value in parsed.items():
                setattr(self._config, name, value)
            return {name: getattr(self._config, name) for name in RUNTIME_OPTIONS}

    # Request counts

    def count(self, operation: str) -> None:
        """Count one request of a gateway operation (whatever its answer)."""
        with self._lock:
            self._counts[operation] += 1

    def calls(self, operation: str | None = None) -> int:
        """Requests received for ``operation``, or for all gateway operations when None."""
        with self._lock:
            return self._counts[operation] if operation else sum(self._counts.values())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self._counts), "total": sum(self._counts.values())}

    # Faults and scripts

    def add_fault(self, fault: Fault) -> dict[str, Any]:
        """Queue a deterministic fault; returns the fault plan."""
        with self._lock:
            self._faults.add(fault)
            return self._fault_plan()

    def set_fault_rate(self, rate: float) -> dict[str, Any]:
        """Give each later gateway request a random fault with probability ``rate``."""
        with self._lock:
            self._faults.rate = rate
            return self._fault_plan()

    def _fault_plan(self) -> dict[str, Any]:
        return {
            "queued": [fault.as_dict() for fault in self._faults.queue],
            "rate": self._faults.rate,
        }

    def take_fault(self, operation: str) -> Fault | None:
        """The fault the request of ``operation`` arriving now gets, if any."""
        with self._lock:
            return self._faults.take(operation)

    def add_script(self, outcome: Outcome, delay: float | None = None) -> list[dict[str, Any]]:
        """Make the next payment created (any method, any auth code) follow ``outcome``.

        ``delay`` replaces the outcome's delay option (``pin_delay`` for PIN, ``pay_delay`` for
        USERPAYING, ``refund_delay`` for REFUND_PROCESSING) for that payment. Scripts queue up,
        first in first out. Returns the queue.
        """
        with self._lock:
            self._scripts.append(_Script(outcome, delay))
            return [{"outcome": s.outcome.value, "delay": s.delay} for s in self._scripts]

    # Tokens

    def issue_token(self, user: str, password: str) -> str:
        """A new token living ``token_ttl`` seconds; raises ``Unauthorized`` for bad credentials."""
        with self._lock:
            user_ok = secrets.compare_digest(user.encode(), self._config.username.encode())
            password_ok = secrets.compare_digest(password.encode(), self._config.password.encode())
            if not (user_ok and password_ok):
                raise Unauthorized("Invalid user or password")
            now = time.monotonic()
            self._tokens = {t: due for t, due in self._tokens.items() if due > now}
            token = secrets.token_urlsafe(32)
            self._tokens[token] = now + self._config.token_ttl
            return token

    def check_token(self, token: str | None) -> None:
        """Raise ``Unauthorized`` unless ``token`` was issued and has not expired."""
        with self._lock:
            due = self._tokens.get(token) if token else None
            if due is None or due <= time.monotonic():
                raise Unauthorized("token is missing or expired")

    def expire_tokens(self) -> int:
        """Expire every token issued so far; returns how many were still alive."""
        with self._lock:
            now = time.monotonic()
            alive = sum(1 for due in self._tokens.values() if due > now)
            self._tokens.clear()
            return alive

    # Time

    def _schedule(self, kind: str, key: str, option: str, scripted: float | None) -> None:
        self._timers[kind, key] = _Timer(time.monotonic(), option, scripted)

    def _advance(self) -> None:
        now = time.monotonic()
        for (kind, key), timer in list(self._timers.items()):
            if timer.started + self._delay(timer.scripted, timer.option) > now:
                continue
            del self._timers[kind, key]
            if kind == "order":
                order = self._orders[key]
                if order.status is OrderStatus.NOTPAY:
                    self._settle_order(order, OrderStatus.SUCCESS)
            else:
                refund = self._refunds[key]
                refund.status = RefundStatus.SUCCESS
                refund.settled_at = _now()

    @staticmethod
    def _settle_order(order: Order, status: OrderStatus, message: str = "") -> None:
        order.status = status
        order.message = message
        order.settled_at = _now()

    # Payments

    def create_payment(
        self, method: str, request: dict[str, Any], outcome: Outcome | None
    ) -> Created:
        """Create the order of a pay call; raises ``Refused`` if ``out_trade_no`` was used.

        ``outcome`` is what the auth code scripts (None for native pay: the order waits for the
        buyer). A queued script overrides it. ``Created.hold`` is the PIN wait of a quick or
        JSAPI call, which the caller waits, outside the lock, before ``finish_hold``.
        """
        with self._lock:
            self._advance()
            out_trade_no = request["out_trade_no"]
            if out_trade_no in self._orders:
                raise Refused(f"out_trade_no {out_trade_no} already used")
            delay = None
            if self._scripts:
                script = self._scripts.popleft()
                outcome, delay = script.outcome, script.delay
            order = Order(
                out_trade_no=out_trade_no,
                method=method,
                amount=request["amount"],
                service_id=request["service_id"],
                fee_rate=request.get("fee_rate", Decimal(0)),
                sub_store_id=request.get("sub_store_id"),
                sub_store_name=request.get("sub_store_name"),
                outcome=outcome,
                qr_code=_qr_code() if method == "native" else "",
                refund_delay=delay if outcome is Outcome.REFUND_PROCESSING else None,
            )
            self._orders[out_trade_no] = order
            hold = 0.0
            if outcome in (Outcome.PAID, *_REFUND_OUTCOMES):
                self._settle_order(order, OrderStatus.SUCCESS)
            elif outcome is Outcome.DECLINED:
                self._settle_order(order, OrderStatus.PAYERROR, DECLINED_MESSAGE)
            elif outcome is Outcome.USERPAYING:
                self._schedule("order", out_trade_no, "pay_delay", delay)
            elif outcome is Outcome.PIN and method == "native":
                # Nobody waits on a native call: the buyer types the PIN after scanning.
                self._schedule("order", out_trade_no, "pin_delay", delay)
            elif outcome is Outcome.PIN:
                hold = self._delay(delay, "pin_delay")
            return Created(self._copy(order), hold, self._generation)

    def _delay(self, scripted: float | None, option: str) -> float:
        return float(getattr(self._config, option)) if scripted is None else scripted

    def finish_hold(self, out_trade_no: str, generation: int) -> Order:
        """End the PIN wait: the order is paid unless it was settled meanwhile.

        ``generation`` is ``Created.generation``. Raises ``Refused`` if the state was reset since:
        the order held is gone, and one made since with the same ``out_trade_no`` is not its.
        """
        with self._lock:
            if generation != self._generation:
                raise Refused(
                    f"The sandbox was reset during the PIN wait: order {out_trade_no} is void"
                )
            self._advance()
            order = self._get_order(out_trade_no)
            if order.status is OrderStatus.NOTPAY:
                self._settle_order(order, OrderStatus.SUCCESS)
            return self._copy(order)

    def payment(self, out_trade_no: str) -> Order:
        """The order; raises ``NotFound``."""
        with self._lock:
            self._advance()
            return self._copy(self._get_order(out_trade_no))

    def pay(self, out_trade_no: str) -> dict[str, Any]:
        """What the buyer's phone does: NOTPAY becomes SUCCESS. Returns the order as a dict.

        Raises ``NotFound``, or ``Conflict`` if the order is not NOTPAY.
        """
        return self._close(out_trade_no, OrderStatus.SUCCESS, "")

    def decline(self, out_trade_no: str, message: str = BUYER_DECLINED_MESSAGE) -> dict[str, Any]:
        """NOTPAY becomes PAYERROR with ``message``. Returns the order as a dict.

        Raises ``NotFound``, or ``Conflict`` if the order is not NOTPAY.
        """
        return self._close(out_trade_no, OrderStatus.PAYERROR, message)

    def _close(self, out_trade_no: str, status: OrderStatus, message: str) -> dict[str, Any]:
        with self._lock:
            self._advance()
            order = self._get_order(out_trade_no)
            if order.status is not OrderStatus.NOTPAY:
                raise Conflict(f"Order {out_trade_no} is {order.status}, not NOTPAY")
            self._settle_order(order, status, message)
            self._timers.pop(("order", out_trade_no), None)
            return self._order_dict(order)

    def orders(self) -> list[Order]:
        """Every order, oldest first."""
        with self._lock:
            self._advance()
            return [self._copy(order) for order in self._orders.values()]

    def order_dicts(self) -> list[dict[str, Any]]:
        """Every order as a dict (with its refunds), oldest first."""
        with self._lock:
            self._advance()
            return [self._order_dict(order) for order in self._orders.values()]

    def order_dict(self, out_trade_no: str) -> dict[str, Any]:
        """One order as a dict (with its refunds); raises ``NotFound``."""
        with self._lock:
            self._advance()
            return self._order_dict(self._get_order(out_trade_no))

    def _get_order(self, out_trade_no: str) -> Order:
        try:
            return self._orders[out_trade_no]
        except KeyError:
            raise NotFound(f"Order {out_trade_no} not found") from None

    @staticmethod
    def _copy(order: Order) -> Order:
        return replace(order, refund_nos=list(order.refund_nos))

    def _order_dict(self, order: Order) -> dict[str, Any]:
        data = {
            f.name: getattr(order, f.name) for f in fields(order) if f.name not in _PRIVATE_FIELDS
        }
        data.update(
            outcome=order.outcome.value if order.outcome else None,
            status=order.status.value,
            buyer_total=order.buyer_total,
            currency=CURRENCY,
            store_id=self._config.store_id,
            created_at=order.created_at.isoformat(),
            settled_at=order.settled_at.isoformat() if order.settled_at else None,
            refunds=[self._refund_dict(self._refunds[no]) for no in order.refund_nos],
        )
        return data

    @staticmethod
    def _refund_dict(refund: Refund) -> dict[str, Any]:
        data = {f.name: getattr(refund, f.name) for f in fields(refund)}
        data.update(
            status=refund.status.value,
            created_at=refund.created_at.isoformat(),
            settled_at=refund.settled_at.isoformat() if refund.settled_at else None,
        )
        return data

    # Refunds

    def create_refund(self, request: dict[str, Any]) -> Refund:
        """Record a refund request; returns it (its status says whether the wallet refused it).

        The same ``out_refund_no`` with the same order and amount returns the refund recorded
        first, creating nothing. Raises ``NotFound`` for an unknown order, ``Refused`` for an
        ``out_refund_no`` used otherwise, an order that is not paid, or an amount above what is
        still refundable (the paid amount minus every refund that has not failed).
        """
        out_trade_no, out_refund_no = request["out_trade_no"], request["out_refund_no"]
        amount = request["refund_amount"]
        with self._lock:
            self._advance()
            order = self._get_order(out_trade_no)
            known = self._refunds.get(out_refund_no)
            if known is not None:
                if known.out_trade_no != out_trade_no or known.amount != amount:
                    raise Refused(
                        f"out_refund_no {out_refund_no} already used for a refund of "
                        f"{known.amount} on order {known.out_trade_no}"
                    )
                return replace(known)
            if order.status is not OrderStatus.SUCCESS:
                raise Refused(
                    f"Order {out_trade_no} is not paid ({order.status}): only paid orders can "
                    "be refunded"
                )
            refunded = sum(
                (
                    self._refunds[no].amount
                    for no in order.refund_nos
                    if self._refunds[no].status is not RefundStatus.FAILED
                ),
                Decimal(0),
            )
            refundable = order.amount - refunded
            if amount > refundable:
                raise Refused(
                    f"refund_amount {amount} exceeds the refundable amount {refundable} of "
                    f"order {out_trade_no}"
                )
            refund = Refund(
                out_refund_no=out_refund_no,
                out_trade_no=out_trade_no,
                amount=amount,
                service_id=request["service_id"],
                transaction_id=order.transaction_id,
                reason=request.get("reason", ""),
                status=RefundStatus.SUCCESS,
            )
            policy = order.refund_policy
            if policy is Outcome.REFUND_REFUSED:
                refund.status, refund.message = RefundStatus.FAILED, REFUND_REFUSED_MESSAGE
            elif policy is Outcome.REFUND_PROCESSING:
                refund.status = RefundStatus.PROCESSING
                self._schedule("refund", out_refund_no, "refund_delay", order.refund_delay)
            if refund.status is not RefundStatus.PROCESSING:
                refund.settled_at = _now()
            self._refunds[out_refund_no] = refund
            order.refund_nos.append(out_refund_no)
            return replace(refund)

    def refund_status(self, out_trade_no: str, out_refund_no: str | None = None) -> Refund:
        """The refund ``out_refund_no`` of the order or, without it, the order's LATEST refund.

        (The real gateway answers the latest one when asked by ``out_trade_no`` alone: a client
        with several refunds on one payment must name the refund.) Raises ``NotFound``.
        """
        with self._lock:
            self._advance()
            order = self._get_order(out_trade_no)
            if out_refund_no is None:
                if not order.refund_nos:
                    raise NotFound(f"Refund of order {out_trade_no} not found")
                return replace(self._refunds[order.refund_nos[-1]])
            if out_refund_no not in order.refund_nos:
                raise NotFound(f"Refund {out_refund_no} of order {out_trade_no} not found")
            return replace(self._refunds[out_refund_no])
