"""Shared fixtures, and the gate for tests that need a real server.

Tests marked ``postgres``, ``redis`` or ``browser`` need that server. When it is absent they are
skipped with the reason, unless ``MOTP_REQUIRE_SERVICES=1`` (CI sets it), where they fail instead.
With ``DATABASE_URL`` naming a PostgreSQL that is not reachable, the run stops before anything is
created: with a message and success (``make test``'s PostgreSQL pass is skipped), or as a failure
under ``MOTP_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from celery import Celery
from django.db import connection

from tests.celery_app import app as celery_app  # the default Celery app (in-memory broker)
from tests.helpers import REDIS_URL, redis_worker

pytest_plugins = ["django_motp.testing"]

REQUIRE_SERVICES = os.environ.get("MOTP_REQUIRE_SERVICES") == "1"
CHROMIUM = "/usr/bin/chromium"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def service_missing(reason: str) -> None:
    """Skip the running test because a server is absent, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (MOTP_REQUIRE_SERVICES=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def _why_absent(marker: str) -> str | None:
    if marker == "postgres":
        if connection.vendor != "postgresql":
            return (
                "needs PostgreSQL: run with DATABASE_URL=postgres://... "
                "(`make test` runs these in a second pass)"
            )
        settings = connection.settings_dict
        if not _reachable(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)):
            return f"needs PostgreSQL at {settings['HOST']}:{settings['PORT']}, not reachable"
    if marker == "redis":
        from urllib.parse import urlsplit

        parts = urlsplit(REDIS_URL)
        if not _reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
            return f"needs Redis at {REDIS_URL}, not reachable"
    if marker == "browser":
        from importlib.util import find_spec

        if not os.access(CHROMIUM, os.X_OK):
            return f"needs Chromium at {CHROMIUM} (Debian package 'chromium'), not installed"
        if find_spec("playwright") is None:
            return "needs the playwright package (the 'test' extra), not installed"
    return None


@pytest.fixture(autouse=True)
def _require_marked_services(request: pytest.FixtureRequest) -> None:
    for marker in ("postgres", "redis", "browser"):
        if request.node.get_closest_marker(marker):
            reason = _why_absent(marker)
            if reason:
                service_missing(reason)


def _postgres_url_unreachable() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if _reachable(parts.hostname or "127.0.0.1", parts.port or 5432):
        return None
    return (
        f"needs PostgreSQL at {parts.hostname}:{parts.port or 5432} (DATABASE_URL), not reachable"
    )


def pytest_configure(config: pytest.Config) -> None:
    reason = _postgres_url_unreachable()
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.exit(f"{reason} (MOTP_REQUIRE_SERVICES=1, so this is a failure)", returncode=1)
    pytest.exit(f"{reason}: this PostgreSQL pass is skipped, nothing was run", returncode=0)


@pytest.fixture
def motp_settings(settings: Any) -> Callable[..., dict[str, Any]]:
    """A function that changes keys of ``settings.MOTP`` for this test and keeps the others
    (the sandbox's address among them): ``motp_settings(TIMEOUT=1, POLL_INTERVAL=0.5)``."""

    def change(**changes: Any) -> dict[str, Any]:
        settings.MOTP = {**settings.MOTP, **changes}
        return settings.MOTP

    return change


@pytest.fixture
def processing_refund(motp_sandbox: Any, transactional_db: None) -> Any:
    """A refund of 4.00 of a 10.00 quick payment that the gateway accepted and keeps processing
    (``refund_delay`` 60 s) until the test lets it settle with
    ``motp_sandbox.configure(refund_delay=0)``. What the gateway received is checked here."""
    from django_motp import services
    from django_motp.models import Payment, Refund
    from django_motp.testing import AUTH_CODE_REFUND_PROCESSING

    motp_sandbox.configure(refund_delay=60)
    payment = services.create_quick_payment(Decimal("10.00"), AUTH_CODE_REFUND_PROCESSING)
    assert payment.status == Payment.Status.SUCCEEDED
    refund = services.refund_payment(payment, Decimal("4.00"), reason="broken on arrival")
    assert refund.status == Refund.Status.PENDING
    [sent] = motp_sandbox.refunds(payment.out_trade_no)
    assert (sent["out_refund_no"], sent["amount"], sent["reason"], sent["status"]) == (
        refund.out_refund_no,
        Decimal("4.00"),
        "broken on arrival",
        "PROCESSING",
    )
    return refund


@pytest.fixture
def broker_down() -> Iterator[Celery]:
    """Celery's default app with its broker on a loopback port where nothing listens, for this
    test: every send goes through kombu's real connection retries and fails. The port stays bound
    (never listening) by this fixture, so nothing else can take it meanwhile."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    app = Celery("django-motp-broker-down", broker=f"redis://127.0.0.1:{port}/0")
    app.conf.update(broker_connection_timeout=1, broker_connection_retry_on_startup=False)
    app.set_default()
    app.set_current()
    app.finalize()
    try:
        yield app
    finally:
        celery_app.set_default()
        celery_app.set_current()
        closed.close()


@pytest.fixture
def worker(transactional_db: None, motp_sandbox: Any) -> Iterator[Celery]:
    """A worker on Redis running its tasks in a thread of this process (``redis_worker``)."""
    with redis_worker() as app:
        yield app


@pytest.fixture
def signal_log():
    """Every django_motp signal sent during the test, as (signal name, pk, extra) tuples."""
    from django_motp import signals

    log: list[tuple] = []
    receivers = []
    for name in signals.NAMES:

        def receiver(sender, name=name, **kwargs):
            obj = kwargs.get("payment") or kwargs.get("refund")
            change = (kwargs["old_status"], kwargs["new_status"]) if "old_status" in kwargs else ()
            log.append((name, obj.pk, *change))

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((getattr(signals, name), receiver))
    yield log
    for signal, receiver in receivers:
        signal.disconnect(receiver)
