"""What one status check costs the database, and how fast the API call log grows.

- Queries and rows written per ``sync_payment`` of a pending payment ("not paid yet"), with the
  API call log on and off.
- The same per check of the polling paths: a Celery poll per check (``poll_payment``: claim,
  check, release; its message aside) against the ``poll_due`` loop's batches
  (``services.check_due``: claims, release and all, on threads).
- The call log's growth: bytes per row as stored, and rows and MB a day when N payments are
  unsettled at every moment and each is checked every ``POLL_INTERVAL`` (the busiest case).
- One sweep claiming 1,000 due rows (the claim only, no HTTP).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from .common import Table

STEADY_UNSETTLED = 500


def _writes(queries: list[dict[str, Any]]) -> int:
    return sum(1 for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE")))


def _cost_of_a_check(payments: list[Any]) -> tuple[float, float, float]:
    """Mean queries, writes and seconds per ``sync_payment`` over ``payments``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_motp import services

    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        for payment in payments:
            services.sync_payment(payment)
        seconds = time.perf_counter() - started
    queries = captured.captured_queries
    return len(queries) / len(payments), _writes(queries) / len(payments), seconds / len(payments)


class _Counter:
    """Counts the queries and writes of every connection, in every thread (the batch checker's
    threads open their own)."""

    def __init__(self) -> None:
        import threading

        self.queries = self.writes = 0
        self._lock = threading.Lock()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with self._lock:
            self.queries += 1
            self.writes += sql.lstrip().upper().startswith(("INSERT", "UPDATE"))
        return execute(sql, params, many, context)

    def attach(self, sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
        from django.db import connection as this_threads

        target = connection or this_threads
        if self not in target.execute_wrappers:
            target.execute_wrappers.append(self)


def _cost_of_polling(payments: list[Any], batch: bool) -> tuple[float, float]:
    """Mean queries and writes per check of ``payments`` (all due): by ``poll_payment`` one at
    a time, or by ``check_due`` on 4 threads."""
    from django.db import connection
    from django.db.backends.signals import connection_created
    from django.utils import timezone

    from django_motp import services, tasks
    from django_motp.models import Payment

    Payment.objects.update(next_check_at=timezone.now())
    counter = _Counter()
    counter.attach(connection=connection)
    connection_created.connect(counter.attach)
    try:
        if batch:
            services.check_due(threads=4)
        else:
            for payment in payments:
                tasks.poll_payment.run(payment.pk)
    finally:
        connection_created.disconnect(counter.attach)
        connection.execute_wrappers.remove(counter)
    return counter.queries / len(payments), counter.writes / len(payments)


def _call_log_bytes_per_row(folder: str) -> float:
    """Bytes one check's call log row takes, measured by storing 2,000 of them."""
    from django.db import connection

    from django_motp.models import ApiCall

    template = ApiCall.objects.filter(operation="check_payment").first()
    assert template is not None, "no check was logged"
    rows = 2000
    if connection.vendor == "postgresql":
        size = "SELECT pg_total_relation_size(%s)"
        with connection.cursor() as cursor:
            cursor.execute(size, [ApiCall._meta.db_table])
            before = cursor.fetchone()[0]
            _copy(template, rows)
            cursor.execute(size, [ApiCall._meta.db_table])
            return (cursor.fetchone()[0] - before) / rows
    path = connection.settings_dict["NAME"]
    before = os.path.getsize(path)
    _copy(template, rows)
    return (os.path.getsize(path) - before) / rows


def _copy(template: Any, rows: int) -> None:
    from django_motp.models import ApiCall

    fields = {
        f.name: getattr(template, f.name) for f in ApiCall._meta.concrete_fields if f.name != "id"
    }
    ApiCall.objects.bulk_create(ApiCall(**fields) for _ in range(rows))


def run(server: Any, folder: str, quick: bool) -> Table:
    from django.conf import settings
    from django.utils import timezone

    from django_motp import services
    from django_motp.conf import motp_settings
    from django_motp.models import ApiCall, Payment
    from django_motp.testing import AUTH_CODE_NEVER_PAID

    table = Table("Database")
    count = 20 if quick else 50
    payments = [services.create_quick_payment("2.00", AUTH_CODE_NEVER_PAID) for _ in range(count)]
    settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": False}
    Payment.objects.update(next_check_at=timezone.now())
    off = _cost_of_a_check(payments)
    settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": True}
    Payment.objects.update(next_check_at=timezone.now())
    on = _cost_of_a_check(payments)
    table.add(
        "queries per sync_payment, call log on",
        f"{on[0]:.1f}",
        f"{on[1]:.1f} rows written; log off: {off[0]:.1f} queries, {off[1]:.1f} rows written",
    )
    for log in (True, False):
        settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": log}
        per_row = _cost_of_polling(payments, batch=False)
        batched = _cost_of_polling(payments, batch=True)
        table.add(
            f"queries per check by the poll_due loop, call log {'on' if log else 'off'}",
            f"{batched[0]:.1f}",
            f"{batched[1]:.1f} rows written; a poll per check: {per_row[0]:.1f} queries, "
            f"{per_row[1]:.1f} rows written, and a broker message",
        )
    settings.MOTP = {**settings.MOTP, "LOG_API_CALLS": True}
    table.add(
        "time per sync_payment, call log on",
        f"{on[2] * 1000:.2f}ms",
        f"{on[2] / off[2]:.2f}x the time with the log off",
    )
    per_row = _call_log_bytes_per_row(folder)
    checks_a_day = STEADY_UNSETTLED / float(motp_settings.POLL_INTERVAL) * 86400
    table.add(
        f"call log a day, {STEADY_UNSETTLED} unsettled at every moment",
        f"{checks_a_day / 1e6:.1f}M rows",
        f"{checks_a_day * per_row / 1e6:,.0f} MB at {per_row:.0f} bytes a row "
        "(motp_purge_api_calls --days N keeps it bounded)",
    )

    ApiCall.objects.all().delete()
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

    timings = []
    for _ in range(5):
        Payment.objects.update(next_check_at=timezone.now())
        started = time.perf_counter()
        services.claim_due(Payment, 1000)
        timings.append(time.perf_counter() - started)
    table.add("sweep claim of 1,000 due rows", f"{statistics.median(timings) * 1000:.1f}ms")
    return table
