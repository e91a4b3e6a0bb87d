"""A pytest plugin to test a shop's MOTP integration against the sandbox gateway.

Load it from a ``conftest.py``::

    pytest_plugins = ["django_motp.testing"]

Fixtures:

- ``motp_sandbox_server`` (session): a ``SandboxServer`` on a free loopback port, in a thread,
  stopped at the end of the session, with short delays so that tests are fast (``FIXTURE_DELAYS``:
  ``pin_delay``, ``pay_delay`` and ``refund_delay`` 0.5 s, ``slow_delay`` 3 s). Needs neither
  Django nor pytest-django.
- ``motp_sandbox`` (function): resets that server, points ``settings.MOTP`` at it (``BASE_URL``,
  ``USERNAME``, ``PASSWORD``, ``STORE_ID`` and ``ENDPOINTS`` become the sandbox's; every other
  key of the project's ``MOTP`` is kept), drops the client's cached token (void after the reset;
  nothing else of the project's cache) and gives a ``SandboxHandle``. It needs pytest-django, for
  its ``settings`` fixture.

The test auth codes (``AUTH_CODE_PAID`` ...) are re-exported from ``django_motp.sandbox``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .sandbox import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
    AUTH_CODE_USERPAYING,
    ENDPOINTS,
    OPERATIONS,
    SandboxServer,
)
from .sandbox.faults import parse_fault
from .sandbox.outcomes import Outcome
from .sandbox.state import BUYER_DECLINED_MESSAGE

#: The delays of the session's sandbox, shorter than the command line's (3, 5, 5 and 15 s).
FIXTURE_DELAYS: dict[str, Any] = {
    "pin_delay": 0.5,
    "pay_delay": 0.5,
    "refund_delay": 0.5,
    "slow_delay": 3,
}

__all__ = [
    "AUTH_CODE_DECLINED",
    "AUTH_CODE_NEVER_PAID",
    "AUTH_CODE_PAID",
    "AUTH_CODE_PIN",
    "AUTH_CODE_REFUND_PROCESSING",
    "AUTH_CODE_REFUND_REFUSED",
    "AUTH_CODE_USERPAYING",
    "FIXTURE_DELAYS",
    "SandboxHandle",
    "motp_sandbox",
    "motp_sandbox_server",
]


class SandboxHandle:
    """Steers a running ``SandboxServer`` from a test, in-process.

    Methods that take a request's values raise ``django_motp.sandbox.Refused`` for a bad one;
    those that name an order raise ``django_motp.sandbox.NotFound`` (a ``LookupError``) for an
    unknown one.
    """

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.state = server.state

    @property
    def url(self) -> str:
        """The sandbox's base URL (what ``settings.MOTP["BASE_URL"]`` is set to)."""
        return self.server.url

    @property
    def store_id(self) -> str:
        return self.state.config.store_id

    @property
    def username(self) -> str:
        return self.state.config.username

    @property
    def password(self) -> str:
        return self.state.config.password

    def pay(self, out_trade_no: str) -> dict[str, Any]:
        """The buyer pays a NOTPAY order (as a scanned native QR code is paid); the order.

        Raises ``Conflict`` if the order is not NOTPAY.
        """
        return self.state.pay(out_trade_no)

    def decline(self, out_trade_no: str, message: str = BUYER_DECLINED_MESSAGE) -> dict[str, Any]:
        """A NOTPAY order fails with ``message``; the order. Raises ``Conflict`` if not NOTPAY."""
        return self.state.decline(out_trade_no, message)

    def script(self, outcome: str, delay: float | None = None) -> None:
        """The next payment created follows ``outcome`` ("paid", "pin", "userpaying",
        "declined", "never", "refund_processing", "refund_refused"), whatever its auth code or
        method; ``delay`` replaces that outcome's delay option. Scripts queue up, first in first
        out. Raises ``ValueError`` for an unknown outcome.
        """
        self.state.add_script(Outcome(outcome), delay)

    def fault(
        self, kind: str, operation: str | None = None, when: str = "after", count: int = 1
    ) -> None:
        """The next ``count`` requests of ``operation`` (of any gateway operation, the token call
        included, when None) get fault ``kind`` ("502", "504", "reset", "cutoff", "slow",
        "nodata", "html"), ``"after"`` applying the operation or ``"before"`` not.
        """
        body = {"kind": kind, "operation": operation, "when": when, "count": count}
        self.state.add_fault(parse_fault(body, OPERATIONS))

    def expire_tokens(self) -> int:
        """Expire every token issued so far; returns how many were alive."""
        return self.state.expire_tokens()

    def configure(self, /, **options: Any) -> dict[str, Any]:
        """Change runtime options (``token_ttl``, ``legacy_token``, ``auth_failure_status``,
        ``pin_delay``, ``pay_delay``, ``refund_delay``, ``slow_delay``) until the next reset;
        returns them all. Raises ``Refused`` for an unknown option or a bad value.
        """
        return self.state.configure(options)

    def calls(self, operation: str | None = None) -> int:
        """Requests the gateway received for ``operation`` ("token", "native_pay", ...), or for
        all operations when None, since the fixture reset the sandbox. Faulted and refused
        requests count.
        """
        return self.state.calls(operation)

    def order(self, out_trade_no: str) -> dict[str, Any]:
        """The order as the control API shows it (amounts as ``Decimal``), with ``refunds``."""
        return self.state.order_dict(out_trade_no)

    def refunds(self, out_trade_no: str) -> list[dict[str, Any]]:
        """The refunds of an order, oldest first."""
        refunds: list[dict[str, Any]] = self.order(out_trade_no)["refunds"]
        return refunds


@pytest.fixture(scope="session")
def motp_sandbox_server() -> Iterator[SandboxServer]:
    """A sandbox gateway on a free loopback port for the whole session, with short delays."""
    server = SandboxServer(port=0, **FIXTURE_DELAYS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def motp_sandbox(motp_sandbox_server: SandboxServer, settings: Any) -> SandboxHandle:
    """The session's sandbox, reset, with ``settings.MOTP`` pointing at it; a ``SandboxHandle``."""
    from .client import MOTPClient

    server = motp_sandbox_server
    server.state.reset()
    config = server.state.config
    settings.MOTP = {
        **(getattr(settings, "MOTP", None) or {}),
        "BASE_URL": server.url,
        "USERNAME": config.username,
        "PASSWORD": config.password,
        "STORE_ID": config.store_id,
        # The sandbox serves its own paths, whatever the project's gateway spells differently.
        "ENDPOINTS": dict(ENDPOINTS),
    }
    # The client caches its token in Django's cache: one from before the reset is void. Drop it
    # alone, not the rest of the project's cache.
    client = MOTPClient.from_settings()
    client.forget_token()
    client.close()
    return SandboxHandle(server)
