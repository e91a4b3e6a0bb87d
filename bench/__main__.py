"""``python -m bench``: how fast the integration talks to the gateway and works through its queue.

Each figure is the median of several rounds, against the sandbox gateway on loopback, with a
SQLite database in a temporary folder. Ratios compare against the named baseline:

- status checks with the token cached (``TOKEN_TTL=50``) against a token fetched before every
  request (``TOKEN_TTL=0``, what the gateway's spec literally advises);
- the same client's pooled keep-alive session against a new connection per call;
- ``sync_payment`` with the API call log on against off (the cost of the log);
- one sweep claiming 1,000 due payments (the claim only, no HTTP).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable

ROUNDS = 5


def median_seconds(work: Callable[[], None], rounds: int = ROUNDS) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    folder = tempfile.mkdtemp(prefix="motp-bench-")
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = os.path.join(folder, "bench.sqlite3")
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.utils import timezone

    from django_motp import services, tasks
    from django_motp.client import MOTPClient
    from django_motp.models import Payment
    from django_motp.sandbox import SandboxServer
    from django_motp.testing import AUTH_CODE_NEVER_PAID

    call_command("migrate", verbosity=0)
    server = SandboxServer(port=0).start()
    settings.MOTP = {
        "BASE_URL": server.url,
        "USERNAME": server.state.config.username,
        "PASSWORD": server.state.config.password,
        "STORE_ID": server.state.config.store_id,
        "LOG_API_CALLS": False,
    }
    settings.CELERY_BROKER_URL = "memory://"
    calls = 200
    results: list[tuple[str, float, str]] = []

    client = MOTPClient.from_settings()
    paid = client.quick_pay(
        store_id=settings.MOTP["STORE_ID"],
        service_id=30,
        amount="1.00",
        out_trade_no="BENCH-1",
        auth_code="134610000000000001",
    )["out_trade_no"]

    def checks(client: MOTPClient) -> Callable[[], None]:
        return lambda: [client.check_payment(settings.MOTP["STORE_ID"], paid) for _ in range(calls)]

    cached = median_seconds(checks(client))
    fresh_token = MOTPClient.from_settings(token_ttl=0)
    uncached = median_seconds(checks(fresh_token))
    results.append(
        (
            "status check, token cached",
            cached / calls,
            f"{uncached / cached:.2f}x faster than a token per request",
        )
    )

    class NoKeepAlive(MOTPClient):
        def build_session(self):  # type: ignore[no-untyped-def]
            session = super().build_session()
            session.headers["Connection"] = "close"
            return session

    unpooled = median_seconds(checks(NoKeepAlive.from_settings()))
    results.append(
        (
            "status check, pooled session",
            cached / calls,
            f"{unpooled / cached:.2f}x faster than a connection per call",
        )
    )

    cache.clear()
    payments = [
        services.create_quick_payment("2.00", AUTH_CODE_NEVER_PAID) for _ in range(calls // 4)
    ]

    def sync_all() -> None:
        for payment in payments:
            services.sync_payment(payment)

    without_log = median_seconds(sync_all)
    settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": True}
    with_log = median_seconds(sync_all)
    results.append(
        (
            "sync_payment, API call log on",
            with_log / len(payments),
            f"{with_log / without_log:.2f}x the time with the log off",
        )
    )

    Payment.objects.all().delete()
    now = timezone.now()
    Payment.objects.bulk_create(
        Payment(
            out_trade_no=f"SWEEP{i:05d}",
            method="native",
            status="pending",
            amount="1.00",
            service_id=30,
            store_id="10001",
            created_at=now,
            deadline_at=now,
            next_check_at=now,
        )
        for i in range(1000)
    )
    started = time.perf_counter()
    pks, _ = services.claim_due(Payment, tasks.SWEEP_BATCH * 2)
    claim = time.perf_counter() - started
    results.append(("sweep claim of 1,000 due rows", claim, f"{len(pks)} claimed"))
    server.stop()

    width = max(len(name) for name, _, _ in results)
    print(f"{'benchmark':<{width}}  {'median':>10}  comparison")
    for name, seconds, note in results:
        print(f"{name:<{width}}  {seconds * 1000:>8.2f}ms  {note}")


if __name__ == "__main__":
    main()
