"""What every benchmark shares: Django set up on a throwaway database, the sandbox on loopback,
medians and percentiles, and one table format for the figures."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

ROUNDS = 5


def setup_django(database_url: str | None = None) -> str:
    """Configure Django with the test settings on a fresh database; returns a temporary folder
    the benchmark may use. ``database_url`` (postgres://...) selects PostgreSQL."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    folder = tempfile.mkdtemp(prefix="motp-bench-")
    from django.conf import settings

    if not database_url:
        settings.DATABASES["default"]["NAME"] = os.path.join(folder, "bench.sqlite3")
    else:
        settings.DATABASES["default"]["NAME"] = f"motp_bench_{os.getpid()}"
    import django

    django.setup()
    return folder


def create_database() -> None:
    """Create (PostgreSQL: a database of its own) and migrate the benchmark's database."""
    from django.db import connection

    if connection.vendor == "postgresql":
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    else:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def drop_database() -> None:
    from django.conf import settings
    from django.db import connection

    if connection.vendor == "postgresql":
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)


def point_at(server: Any, **motp: Any) -> dict[str, Any]:
    """``settings.MOTP`` for the sandbox ``server``, with ``motp`` on top; returns it."""
    from django.conf import settings

    config = server.state.config
    settings.MOTP = {
        "BASE_URL": server.url,
        "USERNAME": config.username,
        "PASSWORD": config.password,
        "STORE_ID": config.store_id,
        **motp,
    }
    return settings.MOTP


def median_seconds(work: Callable[[], Any], rounds: int = ROUNDS) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0.95: p95) by the nearest-rank method; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


class Table:
    """Rows of (benchmark, figure, comparison with its baseline), printed aligned."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, str]] = []

    def add(self, name: str, figure: str, comparison: str = "") -> None:
        self.rows.append((name, figure, comparison))
        print(f"  {name}: {figure}  {comparison}", flush=True)

    def render(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        figure_width = max(len(figure) for _, figure, _ in self.rows)
        lines = [f"== {self.title}"]
        for name, figure, comparison in self.rows:
            lines.append(f"{name:<{width}}  {figure:>{figure_width}}  {comparison}".rstrip())
        return "\n".join(lines)
