"""Fixtures and helpers of the reliability tests (concurrent refunds, fault campaign, secrets).

Functions that run in processes of their own (``multiprocessing`` with the ``spawn`` start
method, Celery workers) import Django lazily: they set it up themselves from the values the
test hands them, since a spawned process inherits nothing of the test's settings.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.campaign_common import (
    CAMPAIGN_MOTP,
    CAMPAIGN_SANDBOX,
    FAST_CLOCK,
    connect_receipts,
    create_receipts_table,
    disconnect_receipts,
    drop_receipts_table,
    error_codes,
)

#: What ``from tests.fixtures_campaign import *`` brings: the fixtures.
__all__ = ["campaign_sandbox", "run_campaign"]


def refund_until_exhausted(
    payment_pk: int, part: Decimal, enough: set[str], busy: set[str]
) -> list[str | None]:
    """Refund ``part`` of the payment again and again until the service refuses with one of the
    codes ``enough``; returns the codes of every refusal seen. A refusal whose codes are not all
    in ``busy`` ("another refund is on its way") fails the caller."""
    from django.core.exceptions import ValidationError

    from django_motp import services
    from django_motp.models import Payment

    payment = Payment.objects.get(pk=payment_pk)
    seen: list[str | None] = []
    while True:
        try:
            services.refund_payment(payment, part, reason="concurrent")
        except ValidationError as err:
            codes = error_codes(err)
            seen.extend(sorted(codes, key=str))
            if codes & enough:
                return seen
            if not codes <= busy:
                raise AssertionError(f"unexpected refusal {codes}: {err.messages}") from err


def django_in_child(database_name: str, motp: dict[str, Any]) -> None:
    """Set up Django in a spawned process: the test's settings, its test database (by name)
    and its ``MOTP`` dict (the sandbox's address)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = database_name
    settings.MOTP = motp


def refund_in_child(
    database_name: str, motp: dict[str, Any], payment_pk: int, args: tuple, barrier, results
) -> None:
    """``refund_until_exhausted`` in a spawned process, released with the others by
    ``barrier``; puts ``("ok", codes)`` or ``("error", repr)`` on ``results``."""
    try:
        django_in_child(database_name, motp)
        barrier.wait()
        results.put(("ok", refund_until_exhausted(payment_pk, *args)))
    except BaseException as err:  # reported to the test, which fails
        results.put(("error", repr(err)))


@pytest.fixture
def campaign_sandbox(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A sandbox of the campaign's own (a ``SandboxServer``), whose password is found nowhere
    else, with this process's settings (``MOTP``, the schedule's fast clock) pointing at it."""
    import shutil

    from django_motp import schedule
    from django_motp.sandbox import SandboxServer
    from tests.conftest import service_missing

    if shutil.which("redis-server") is None:
        service_missing("needs redis-server (Debian package 'redis-server') for its own broker")
    password = "pw-" + secrets.token_urlsafe(18)
    server = SandboxServer(port=0, username="campaign", password=password, **CAMPAIGN_SANDBOX)
    server.start()
    settings.MOTP = {
        **settings.MOTP,
        **CAMPAIGN_MOTP,
        "BASE_URL": server.url,
        "USERNAME": "campaign",
        "PASSWORD": password,
        "STORE_ID": server.state.config.store_id,
    }
    for name, value in FAST_CLOCK.items():
        monkeypatch.setattr(schedule, name, value)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def run_campaign(campaign_sandbox: Any, tmp_path: Path) -> Iterator[Any]:
    """``run_campaign(payments, refunds, loop=False) -> CampaignResult``: the campaign (with
    ``loop``, its workers run the ``poll_due`` loop), run against
    ``campaign_sandbox`` with the receipt receiver connected here and in the workers; the
    processes' logs are in ``result.workdir``."""
    create_receipts_table()
    connect_receipts()
    try:
        from tests.campaign import Campaign

        yield lambda payments, refunds, loop=False: Campaign(
            campaign_sandbox, payments=payments, refunds=refunds, workdir=tmp_path, loop=loop
        ).run()
    finally:
        disconnect_receipts()
        drop_receipts_table()
