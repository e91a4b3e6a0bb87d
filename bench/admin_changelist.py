"""``python -m bench.admin_changelist [rows]``: the payments changelist at 100,000 payments.

Prints, for the default page and for each filter, the queries the page makes and the median time
to render it through Django's test client (a logged-in superuser, so no permission shortcut).
SQLite in a temporary folder by default; with ``DATABASE_URL=postgres://...`` a scratch
PostgreSQL database (created and dropped here).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

ROUNDS = 7
PAGES = {
    "default (newest first)": "",
    "status = failed": "?status__exact=failed",
    "method = payment code": "?method__exact=quick",
    "refunded in part": "?refunded=partial",
    "needs attention": "?attention=yes",
    "search an order number": "?q={number}",
    "a day (date hierarchy)": "?created_at__day={d}&created_at__month={m}&created_at__year={y}",
}


def scratch_database() -> tuple[str, object]:
    """Point the settings at an empty database; returns its vendor and a clean-up callable."""
    from django.conf import settings

    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        parts = urlsplit(url)
        name = f"motp_bench_{os.getpid()}"
        admin_dsn = f"host={parts.hostname} port={parts.port or 5432} user={parts.username}"
        with psycopg.connect(f"{admin_dsn} dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        settings.DATABASES["default"]["NAME"] = name

        def drop() -> None:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(f"{admin_dsn} dbname=postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

        return "PostgreSQL", drop
    folder = tempfile.mkdtemp(prefix="motp-bench-admin-")
    settings.DATABASES["default"]["NAME"] = os.path.join(folder, "bench.sqlite3")
    return "SQLite", lambda: None


def fill(rows: int) -> None:
    """``rows`` payments over 90 days: mostly paid, some declined, expired, pending, refunded,
    a few flagged."""
    from django.utils import timezone

    from django_motp.models import Payment

    rng = random.Random(7)
    now = timezone.now()
    statuses = ["succeeded"] * 80 + ["failed"] * 8 + ["expired"] * 8 + ["pending"] * 4
    batch = []
    for n in range(rows):
        status = rng.choice(statuses)
        amount = Decimal(rng.randrange(100, 50_000)) / 100
        refunded = Decimal("0")
        if status == "succeeded" and n % 40 == 0:
            refunded = amount if n % 80 == 0 else (amount / 2).quantize(Decimal("0.01"))
        created = now - timedelta(seconds=rng.randrange(0, 90 * 86400))
        batch.append(
            Payment(
                out_trade_no=f"B{n:012d}",
                method=rng.choice(["native", "quick", "quick", "jsapi"]),
                status=status,
                amount=amount,
                fee_rate=Decimal("0") if n % 3 else Decimal("1.5"),
                service_id=30,
                store_id="10001",
                reference=f"order-{n}",
                refunded_amount=refunded,
                reserved_amount=refunded,
                created_at=created,
                deadline_at=created + timedelta(hours=2),
                attention="late_success" if n % 5000 == 0 else "",
            )
        )
        if len(batch) == 5000:
            Payment.objects.bulk_create(batch)
            batch = []
    Payment.objects.bulk_create(batch)


def measure(client, url: str) -> tuple[int, float, float, str]:
    """Queries of the page, median seconds to render it, median seconds in SQL, and the slowest
    query of the last round."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm the caches and the database's
    timings, in_sql = [], []
    for _ in range(ROUNDS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
        in_sql.append(sum(float(q["time"]) for q in queries.captured_queries))
    slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
    return len(queries), statistics.median(timings), statistics.median(in_sql), slowest["sql"]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    vendor, drop = scratch_database()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from django_motp.models import Payment

    settings.ALLOWED_HOSTS = ["testserver"]
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        fill(rows)
        with connection.cursor() as cursor:  # planner statistics, as autovacuum would gather
            cursor.execute("ANALYZE")
        print(f"{vendor}: {rows:,} payments written in {time.perf_counter() - started:.1f} s")
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
        client = Client()
        client.force_login(user)
        sample = Payment.objects.order_by("?").only("out_trade_no", "created_at").first()
        assert sample is not None
        day = sample.created_at
        values = {"number": sample.out_trade_no, "d": day.day, "m": day.month, "y": day.year}
        print(f"{'page':<26} {'queries':>7} {'median ms':>10} {'in SQL ms':>10}  slowest query")
        for name, query in PAGES.items():
            url = "/admin/django_motp/payment/" + query.format(**values)
            count, seconds, sql, slowest = measure(client, url)
            print(
                f"{name:<26} {count:>7} {seconds * 1000:>10.1f} {sql * 1000:>10.1f}  {slowest[:70]}"
            )
        # The same queries whatever a page shows: 20 rows against 100, in the same run.
        from django.contrib import admin

        payment_admin = admin.site._registry[Payment]
        kept = payment_admin.list_per_page
        try:
            for per_page in (20, 100):
                payment_admin.list_per_page = per_page
                count, seconds, sql, _ = measure(client, "/admin/django_motp/payment/")
                name = f"default, {per_page} rows a page"
                print(f"{name:<26} {count:>7} {seconds * 1000:>10.1f} {sql * 1000:>10.1f}")
        finally:
            payment_admin.list_per_page = kept
    finally:
        drop()


if __name__ == "__main__":
    main()
