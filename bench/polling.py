"""Polling capacity and detection latency of one worker, through a real broker.

N unsettled native (QR) payments in their first minute, when each should be checked every
``POLL_INTERVAL``, are polled by one Celery worker (with beat, for the sweep) consuming from
Redis, against the sandbox with ``LATENCY`` seconds added to every gateway answer, on
PostgreSQL. While it runs, some orders are paid at the sandbox at random moments. Each N runs
twice in the same run: the baseline, a Celery poll per check (``poll_payment`` chained by
countdowns, threads pool of 16), and the documented set-up, the ``poll_due`` loop (checks in
batches on threads, no message per check) on the given pool and concurrency. Measured:

- checks per second the worker makes (as the gateway counts them);
- p50/p95 interval between two checks of one payment (target at N = 500: POLL_INTERVAL + 0.5 s);
- p50/p95 from "paid at the gateway" to ``payment_succeeded`` delivered (its event's
  ``delivered_at``; target at N = 500: POLL_INTERVAL + 1 s);
- the CPU time (user and system) of the worker's processes per check, which depends far less on
  how busy the machine is than the rates.

Needs PostgreSQL and Redis (``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``). For tuning:
``BENCH_NO_BASELINE=1`` runs the loop only, ``BENCH_WORKER_LOGLEVEL=INFO`` logs each task in
the worker's log (``worker.log`` in the run's temporary folder, ``/tmp/motp-bench-*``).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .common import Table, percentile

LATENCY = 0.05
WARMUP = 10.0
WINDOW = 30.0
GRACE = 15.0
ROOT = Path(__file__).resolve().parent.parent


class CheckRecorder:
    """Wraps the sandbox's check_payment operation to note when each order is checked."""

    def __init__(self, server: Any) -> None:
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        operations = server.gateway._operations
        original = operations["check_payment"]

        def recording(request: dict[str, Any]) -> Any:
            with self._lock:
                self.times.setdefault(request["out_trade_no"], []).append(time.time())
            return original(request)

        operations["check_payment"] = recording

    def clear(self) -> None:
        with self._lock:
            self.times.clear()

    def within(self, start: float, end: float) -> dict[str, list[float]]:
        with self._lock:
            return {no: [t for t in ts if start <= t <= end] for no, ts in self.times.items()}


def _create_payments(server: Any, count: int, poll_interval: float) -> list[str]:
    """``count`` pending native payments, known to the sandbox and to the database, whose first
    checks are spread over one ``poll_interval``; returns their numbers."""
    from django.conf import settings
    from django.utils import timezone

    from django_motp.models import Payment

    state = server.state
    token = state.issue_token(state.config.username, state.config.password)
    now = timezone.now()
    numbers = [f"B{time.time_ns()}{i:05d}"[-32:] for i in range(count)]
    rows = []
    for index, number in enumerate(numbers):
        body = {
            "service_id": 30,
            "store_id": state.config.store_id,
            "amount": 1.5,
            "fee_rate": 0,
            "out_trade_no": number,
        }
        answer = server.gateway.handle(
            "native_pay",
            authorization=f"Bearer {token}",
            content_type="application/json",
            body=json.dumps(body).encode(),
        )
        rows.append(
            Payment(
                out_trade_no=number,
                method="native",
                status="pending",
                amount=Decimal("1.50"),
                service_id=30,
                store_id=settings.MOTP["STORE_ID"],
                qr_code=answer.payload["data"]["qr_code"],
                created_at=now,
                deadline_at=now + timedelta(hours=2),
                next_check_at=now + timedelta(seconds=poll_interval * index / count),
            )
        )
    Payment.objects.bulk_create(rows, batch_size=500)
    return numbers


#: (label, pool, concurrency, the poll_due loop on) of the baseline: a poll message per check.
BASELINE = ("per-row polls", "threads", 16, False)


def _start_worker(env: dict[str, str], pool: str, concurrency: int, folder: str) -> Any:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.celery_app",
        "worker",
        "--beat",
        f"--schedule={folder}/beat-schedule",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--loglevel={os.environ.get('BENCH_WORKER_LOGLEVEL', 'WARNING')}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(folder, "worker.log"), "ab"),
    )


def _stop(process: Any) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _group_cpu(group: int) -> float:
    """CPU seconds (user and system) used so far by the processes of process group ``group``
    (the worker and its pool's children). Unlike the rates, it hardly depends on how busy the
    rest of the machine is."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime are fields 14 and 15 of stat
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _detections(paid_at: dict[str, float]) -> list[float]:
    """Seconds from paid at the gateway to payment_succeeded delivered, per paid order."""
    from django_motp.models import Event, Payment

    delivered = dict(
        Event.objects.filter(
            signal="payment_succeeded", payment__out_trade_no__in=list(paid_at)
        ).values_list("payment__out_trade_no", "delivered_at")
    )
    seen = []
    for number, paid in Payment.objects.filter(out_trade_no__in=list(paid_at)).values_list(
        "out_trade_no", "paid_at"
    ):
        moment = delivered.get(number) or paid
        if moment is not None:
            seen.append(moment.timestamp() - paid_at[number])
    return seen


def measure(
    server: Any, recorder: CheckRecorder, env: dict[str, str], folder: str, **run: Any
) -> dict[str, Any]:
    """One run: N payments, one worker; the figures as a dict."""
    from celery import Celery

    from django_motp import tasks
    from django_motp.conf import motp_settings
    from django_motp.models import ApiCall, Event, Payment

    count, pool, concurrency = run["count"], run["pool"], run["concurrency"]
    env = {**env, "BENCH_POLL_DUE": "1" if run["loop"] else ""}
    Event.objects.all().delete()
    ApiCall.objects.all().delete()
    Payment.objects.all().delete()
    server.state.reset()
    server.state.configure({"latency": LATENCY})
    recorder.clear()
    interval = float(motp_settings.POLL_INTERVAL)
    app = Celery("motp-bench-client", broker=env["BENCH_BROKER_URL"])
    app.conf.task_default_queue = env["BENCH_QUEUE"]
    app.set_default()
    app.set_current()
    app.control.purge()
    worker = _start_worker(env, pool, concurrency, folder)
    try:
        if run["loop"]:
            # What beat does within its first 10 s; sent now, and waited for, so that the
            # payments arrive at a worker whose loop runs, as they do in production.
            for _ in range(concurrency if pool == "prefork" else 1):
                tasks.poll_due.apply_async(expires=60.0)
            deadline = time.monotonic() + 60
            while not tasks.loop_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        numbers = _create_payments(server, count, interval)
        for payment in Payment.objects.all():
            tasks.enqueue_poll(payment)  # as creating them does
        start = time.time() + WARMUP
        end = start + WINDOW
        rng = random.Random(count)
        to_pay = rng.sample(numbers, min(50, max(5, count // 10)))
        moments = sorted(start + rng.random() * (WINDOW - GRACE / 2) for _ in to_pay)
        paid_at: dict[str, float] = {}
        time.sleep(max(0.0, start - time.time()))
        cpu_at_start = _group_cpu(worker.pid)
        for number, moment in zip(to_pay, moments, strict=True):
            time.sleep(max(0.0, moment - time.time()))
            server.state.pay(number)
            paid_at[number] = time.time()
        time.sleep(max(0.0, end - time.time()))
        checks = recorder.within(start, end)
        cpu = _group_cpu(worker.pid) - cpu_at_start
        time.sleep(GRACE)
        detections = _detections(paid_at)
    finally:
        _stop(worker)
        app.control.purge()
    intervals = [
        later - earlier
        for number, times in checks.items()
        if number not in paid_at
        for earlier, later in itertools.pairwise(times)
    ]
    made = sum(len(times) for times in checks.values())
    return {
        "checks_per_second": made / WINDOW,
        "cpu_per_check": cpu / made if made else float("nan"),
        "interval_p50": percentile(intervals, 0.5),
        "interval_p95": percentile(intervals, 0.95),
        "detection_p50": percentile(detections, 0.5),
        "detection_p95": percentile(detections, 0.95),
        "detected": f"{len(detections)}/{len(paid_at)}",
    }


def run(server: Any, folder: str, sizes: list[int], pool: str, concurrency: int) -> Table:
    """Each N with the baseline and with the ``poll_due`` loop on ``pool``/``concurrency``."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "BENCH_DATABASE_NAME": connection.settings_dict["NAME"],
        "BENCH_MOTP": json.dumps(settings.MOTP),
        "BENCH_BROKER_URL": f"{redis_url}/14",
        "BENCH_CACHE_URL": f"{redis_url}/13",
        "BENCH_QUEUE": f"motp-bench-{os.getpid()}",
    }
    # This process stands for the shop's web processes: it shares the worker's cache (the
    # token, and whether a poll_due loop runs), as README asks.
    redis_cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env["BENCH_CACHE_URL"],
    }
    override_settings(CACHES={"default": redis_cache}).enable()  # resets the cache handler
    recorder = CheckRecorder(server)
    table = Table(
        "Polling by one worker with beat, PostgreSQL, Redis, "
        f"{LATENCY * 1000:.0f} ms added to each gateway call (load: 1-minute load average)"
    )
    setups = [BASELINE, ("poll_due loop", pool, concurrency, True)]
    if os.environ.get("BENCH_NO_BASELINE"):  # tuning the loop only
        setups = setups[1:]
    for count in sizes:
        for label, setup_pool, setup_concurrency, loop in setups:
            got = measure(
                server,
                recorder,
                env,
                folder,
                count=count,
                pool=setup_pool,
                concurrency=setup_concurrency,
                loop=loop,
            )
            if got["interval_p50"] != got["interval_p50"]:  # NaN: no row was checked twice
                intervals = f"interval > {WINDOW:.0f} s (no payment checked twice in the window)"
            else:
                intervals = (
                    f"interval p50 {got['interval_p50']:.1f} s, p95 {got['interval_p95']:.1f} s"
                )
            table.add(
                f"N = {count}, {label} ({setup_pool} {setup_concurrency})",
                f"{got['checks_per_second']:.0f} checks/s, "
                f"worker CPU {got['cpu_per_check'] * 1000:.1f} ms/check",
                f"{intervals}; "
                f"paid -> payment_succeeded p50 {got['detection_p50']:.1f} s, "
                f"p95 {got['detection_p95']:.1f} s ({got['detected']} seen); "
                f"load {os.getloadavg()[0]:.1f}",
            )
    return table
