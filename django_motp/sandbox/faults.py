"""Fault injection: the ways a real road to a gateway loses or spoils an answer.

A fault belongs to one gateway request. ``when="after"`` (the default) lets the sandbox apply the
operation and then spoils the answer: the payment or refund exists but the caller never heard,
the hard case a client must survive. ``when="before"`` spoils the answer without applying the
operation. Faults never touch the control API or the buyer page.

The kinds:

- ``502``, ``504``: an nginx-like HTML error page with that status.
- ``reset``: the connection is closed with no answer, with a TCP RST.
- ``cutoff``: HTTP 200 with JSON headers and the full ``Content-Length``, but only half of the
  body, then the connection is closed.
- ``slow``: the answer comes ``slow_delay`` seconds late (before: the operation is applied late;
  after: it is applied at once and answered late). The answer itself is normal.
- ``nodata``: HTTP 200 ``{"success": true}`` without ``data``.
- ``html``: HTTP 200 with an HTML login page, as a misrouted proxy answers.

``FaultPlan`` holds the queue of deterministic faults and the random fault rate. It has no lock
of its own: ``SandboxState`` calls it under the state's lock.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .errors import Refused


class FaultKind(StrEnum):
    BAD_GATEWAY = "502"
    GATEWAY_TIMEOUT = "504"
    RESET = "reset"
    CUTOFF = "cutoff"
    SLOW = "slow"
    NODATA = "nodata"
    HTML = "html"


class When(StrEnum):
    BEFORE = "before"
    AFTER = "after"


@dataclass
class Fault:
    """A planned fault: the next ``count`` requests of ``operation`` (any if None) get it.

    ``parse_fault`` makes one from the plain strings of a control-call body.
    """

    kind: FaultKind
    operation: str | None = None
    when: When = When.AFTER
    count: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """Deterministic faults, served first come first served, then random ones at ``rate``."""

    def __init__(self, rate: float = 0.0) -> None:
        self.queue: list[Fault] = []
        self.rate = rate
        self._random = random.Random()

    def add(self, fault: Fault) -> None:
        self.queue.append(fault)

    def take(self, operation: str) -> Fault | None:
        """The fault for the request of ``operation`` arriving now, if any; consumes it."""
        for index, planned in enumerate(self.queue):
            if planned.operation in (None, operation):
                planned.count -= 1
                if planned.count <= 0:
                    del self.queue[index]
                return Fault(planned.kind, operation, planned.when)
        if self.rate and self._random.random() < self.rate:
            return Fault(
                self._random.choice(list(FaultKind)),
                operation,
                self._random.choice(list(When)),
            )
        return None


def parse_fault(body: dict[str, Any], operations: tuple[str, ...]) -> Fault:
    """The ``Fault`` described by a control-call body; raises ``Refused`` naming a bad field."""
    try:
        kind = FaultKind(str(body.get("kind")))
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise Refused(f"kind must be one of {kinds}") from None
    operation = body.get("operation")
    if operation is not None and operation not in operations:
        raise Refused(f"operation must be one of {', '.join(operations)}")
    try:
        when = When(body.get("when", When.AFTER))
    except ValueError:
        raise Refused('when must be "before" or "after"') from None
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise Refused("count must be a positive integer")
    return Fault(kind, operation, when, count)


def parse_rate(value: Any) -> float:
    """A random fault rate from a control-call body; raises ``Refused`` unless 0 <= rate <= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise Refused("rate must be a number from 0 to 1")
    if not 0 <= value <= 1:
        raise Refused("rate must be a number from 0 to 1")
    return float(value)


_PAGE = (
    "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
    "<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

#: HTTP status and HTML body of the faults that answer with a page.
PAGES: dict[FaultKind, tuple[int, str]] = {
    FaultKind.BAD_GATEWAY: (502, _PAGE.format(title="502 Bad Gateway")),
    FaultKind.GATEWAY_TIMEOUT: (504, _PAGE.format(title="504 Gateway Time-out")),
    FaultKind.HTML: (
        200,
        "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>\n"
        '<h1>Sign in</h1>\n<form method="post" action="/login">\n'
        '<label>Email <input name="email"></label>\n'
        '<label>Password <input name="password" type="password"></label>\n'
        "<button>Sign in</button>\n</form>\n</body></html>\n",
    ),
}

#: The answer of a ``nodata`` fault.
NODATA_ANSWER: dict[str, Any] = {"success": True}

#: What a ``cutoff`` fault with ``when="before"`` cuts in half: it has no real answer to cut.
CUTOFF_PLACEHOLDER: dict[str, Any] = {
    "success": True,
    "data": {"message": "SUCCESS", "result_code": "SUCCESS"},
}
