"""``python -m bench``: how fast the integration talks to the gateway and keeps up with its
payments. Every figure is printed beside its baseline from the same run.

Sections (all by default; name some to run only those):

- ``client``: round trips per status check across processes sharing the token, and the
  client's overhead against a bare ``requests`` loop (``bench/client.py``);
- ``database``: queries and rows written per check, the call log's growth, the sweep's claim
  (``bench/database.py``);
- ``polling``: checks per second, interval between checks and paid-to-signal latency of one
  worker through Redis on PostgreSQL (``bench/polling.py``); skipped with the reason when
  PostgreSQL or Redis is not reachable.

``--quick`` runs fewer rounds and only N = 100 for polling (what CI can afford).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

SECTIONS = ("client", "database", "polling")
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379"


def _reachable(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or port), 1):
            return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, N = 100 only")
    parser.add_argument("--sizes", default="100,500,2000", help="polling: N values")
    parser.add_argument("--pool", default="threads", help="polling: the loop worker's pool")
    parser.add_argument("--concurrency", type=int, default=4, help="polling: its concurrency")
    args = parser.parse_args()
    sections = args.sections or list(SECTIONS)
    if "polling" in sections and os.environ.get("BENCH_POLLING_CHILD") != "1":
        sections.remove("polling")
        if sections:
            code = subprocess.call([sys.executable, "-m", "bench", *sections, *_flags(args)])
            if code:
                return code
        return _polling(args)
    return _sqlite_sections(sections, args.quick)


def _flags(args: argparse.Namespace) -> list[str]:
    flags = ["--quick"] if args.quick else []
    polling = ["--sizes", args.sizes, "--pool", args.pool, "--concurrency", str(args.concurrency)]
    return [*flags, *polling]


def _polling(args: argparse.Namespace) -> int:
    database = os.environ.get("BENCH_DATABASE_URL", POSTGRES_URL)
    redis = os.environ.get("BENCH_REDIS_URL", REDIS_URL)
    for url, port, what in ((database, 5432, "PostgreSQL"), (redis, 6379, "Redis")):
        if not _reachable(url, port):
            print(f"== Polling: skipped, {what} is not reachable at {url}")
            return 0
    sizes = [100] if args.quick else [int(n) for n in args.sizes.split(",")]
    from .common import create_database, drop_database, point_at, setup_django

    folder = setup_django(database)
    from django_motp.sandbox import SandboxServer

    from . import polling

    create_database()
    server = SandboxServer(port=0).start()
    try:
        point_at(server)
        print(polling.run(server, folder, sizes, args.pool, args.concurrency).render())
    finally:
        server.stop()
        drop_database()
    return 0


def _sqlite_sections(sections: list[str], quick: bool) -> int:
    from .common import create_database, point_at, setup_django

    folder = setup_django()
    from django.conf import settings

    from django_motp.sandbox import SandboxServer

    from . import client, database

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.path.join(folder, "cache"),
        }
    }
    settings.CELERY_BROKER_URL = "memory://"
    create_database()
    server = SandboxServer(port=0).start()
    tables = []
    try:
        point_at(server, LOG_API_CALLS=False)
        if "client" in sections:
            tables.append(client.run(server, quick))
        if "database" in sections:
            tables.append(database.run(server, folder, quick))
    finally:
        server.stop()
    print("\n\n".join(table.render() for table in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
