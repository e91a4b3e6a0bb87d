"""The gateway client: round trips per status check, and the client's own overhead.

- Round trips: gateway requests (token calls included) per status check, over 1,000 checks made
  by several processes that share a token through Django's cache (a file cache here, any shared
  backend in production). Baseline: a token before every request, as the spec reads (2.0).
- Overhead: status checks per second through ``MOTPClient.check_payment`` against a bare
  ``requests.Session.post`` loop with a token fetched once, on the same server in the same run.
- The pooled keep-alive session against a new connection per call.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from typing import Any

from .common import Table, median_seconds

PROCESSES = 4


def _checks_in_child(count: int, order: str, token_ttl: int, queue: Any) -> None:
    from django.conf import settings

    from django_motp.client import MOTPClient

    client = MOTPClient.from_settings(token_ttl=token_ttl)
    for _ in range(count):
        client.check_payment(settings.MOTP["STORE_ID"], order)
    client.close()
    queue.put(count)


def round_trips(server: Any, order: str, checks: int, token_ttl: int) -> float:
    """Gateway requests per status check, ``checks`` spread over ``PROCESSES`` processes."""
    from django.core.cache import cache

    from django_motp.client import MOTPClient

    MOTPClient.from_settings().forget_token()
    cache.clear()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    before = server.state.calls()
    children = [
        context.Process(
            target=_checks_in_child, args=(checks // PROCESSES, order, token_ttl, queue)
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    done = sum(queue.get(timeout=120) for _ in children)
    for child in children:
        child.join(timeout=30)
    return (server.state.calls() - before) / done


def bare_checks_per_second(server: Any, order: str, calls: int) -> float:
    """A ``requests.Session.post`` loop with a token fetched once: the floor of any client."""
    import requests
    from django.conf import settings

    from django_motp.sandbox import ENDPOINTS

    session = requests.Session()
    token = session.post(
        server.url + ENDPOINTS["token"],
        json={"user": settings.MOTP["USERNAME"], "password": settings.MOTP["PASSWORD"]},
        timeout=10,
    ).json()["data"]["token"]
    url = server.url + ENDPOINTS["check_payment"]
    body = json.dumps({"store_id": int(settings.MOTP["STORE_ID"]), "out_trade_no": order})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def loop() -> None:
        for _ in range(calls):
            session.post(url, data=body, headers=headers, timeout=10).json()

    seconds = median_seconds(loop)
    session.close()
    return calls / seconds


def client_checks_per_second(client: Any, order: str, calls: int) -> float:
    from django.conf import settings

    store = settings.MOTP["STORE_ID"]
    client.check_payment(store, order)  # the token is fetched outside the timing

    def loop() -> None:
        for _ in range(calls):
            client.check_payment(store, order)

    return calls / median_seconds(loop)


def run(server: Any, quick: bool) -> Table:
    from django.conf import settings

    from django_motp.client import MOTPClient
    from django_motp.testing import AUTH_CODE_PAID

    table = Table("Gateway client")
    client = MOTPClient.from_settings()
    order = f"BENCH-{time.time_ns()}"
    client.quick_pay(
        store_id=settings.MOTP["STORE_ID"],
        service_id=30,
        amount="1.00",
        out_trade_no=order,
        auth_code=AUTH_CODE_PAID,
    )
    checks = 200 if quick else 1000
    shared = round_trips(server, order, checks, token_ttl=50)
    literal = round_trips(server, order, checks, token_ttl=0)
    table.add(
        f"round trips per status check, {PROCESSES} processes",
        f"{shared:.3f}",
        f"baseline: a token per request {literal:.3f} (target <= 1.02)",
    )
    calls = 200 if quick else 500
    bare = bare_checks_per_second(server, order, calls)
    ours = client_checks_per_second(client, order, calls)
    table.add(
        "status checks per second, MOTPClient",
        f"{ours:.0f}/s",
        f"{ours / bare:.2f}x a bare requests loop ({bare:.0f}/s; target >= 0.85)",
    )

    class NoKeepAlive(MOTPClient):
        def build_session(self):  # type: ignore[no-untyped-def]
            session = super().build_session()
            session.headers["Connection"] = "close"
            return session

    unpooled = client_checks_per_second(NoKeepAlive.from_settings(), order, calls)
    table.add(
        "pooled session",
        f"{ours:.0f}/s",
        f"{ours / unpooled:.2f}x a new connection per call ({unpooled:.0f}/s)",
    )
    client.close()
    return table
