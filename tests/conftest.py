"""Shared fixtures, and the gate for tests that need a real server.

Tests marked ``postgres``, ``redis`` or ``browser`` need that server. When it is absent they are
skipped with the reason, unless ``MOTP_REQUIRE_SERVICES=1`` (CI sets it), where they fail instead.
"""

from __future__ import annotations

import os
import socket

import pytest
from django.db import connection

from tests.celery_app import app as celery_app  # noqa: F401  (the default Celery app)

pytest_plugins = ["django_motp.testing"]

REQUIRE_SERVICES = os.environ.get("MOTP_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("MOTP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


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
        from shutil import which

        if not (which("chromium") or which("chromium-browser")):
            return "needs Chromium (Debian package 'chromium'), not installed"
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
    if reason and REQUIRE_SERVICES:
        pytest.exit(f"{reason} (MOTP_REQUIRE_SERVICES=1)", returncode=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With DATABASE_URL naming an absent PostgreSQL, skip everything before a database is made."""
    reason = _postgres_url_unreachable()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def signal_log():
    """Every django_motp signal sent during the test, as (signal name, pk, extra) tuples."""
    from django_motp import signals

    log: list[tuple] = []
    receivers = []
    for name in (
        "payment_succeeded",
        "payment_failed",
        "payment_expired",
        "payment_status_changed",
        "refund_succeeded",
        "refund_failed",
        "refund_status_changed",
    ):

        def receiver(sender, name=name, **kwargs):
            obj = kwargs.get("payment") or kwargs.get("refund")
            change = (kwargs["old_status"], kwargs["new_status"]) if "old_status" in kwargs else ()
            log.append((name, obj.pk, *change))

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((getattr(signals, name), receiver))
    yield log
    for signal, receiver in receivers:
        signal.disconnect(receiver)
