"""Helpers of the reliability tests (concurrent refunds, fault campaign, secrets).

Functions that run in processes of their own (``multiprocessing`` with the ``spawn`` start
method, Celery workers) import Django lazily: they set it up themselves from the values the
test hands them, since a spawned process inherits nothing of the test's settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

#: What ``from tests.fixtures_campaign import *`` brings: the fixtures.
__all__ = ["campaign_sandbox", "run_campaign"]


def error_codes(err: Any) -> set[str | None]:
    """The codes of every error in a ``ValidationError``, field errors included."""
    if hasattr(err, "error_dict"):
        return {e.code for errors in err.error_dict.values() for e in errors}
    return {e.code for e in err.error_list}


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


# The fault campaign ---------------------------------------------------------------------------

#: Module constants of the schedule the campaign shortens, in every process, as it shortens the
#: settings' delays: a row past its deadline without an answer is retried every 3 s, not 60 s.
FAST_CLOCK = {"OUTAGE_INTERVAL": 3, "EVENT_GRACE": 2, "EVENT_RETRY_BASE": 1}

#: The campaign's ``MOTP`` timing: the spec's clock run about ten times faster.
CAMPAIGN_MOTP = {
    "TIMEOUT": 1,
    "QUICK_PAY_TIMEOUT": 2,
    "POLL_INTERVAL": 1,
    "QUICK_PAY_DEADLINE": 6,
    "NATIVE_PAY_DEADLINE": 8,
    "REFUND_DEADLINE": 60,
    "LATE_CHECKS": [1, 3],
    "TOKEN_TTL": 50,
    "LOG_API_CALLS": True,
}

#: The sandbox's delays: a slow answer comes after the client has given up (TIMEOUT 1 s).
CAMPAIGN_SANDBOX = {
    "pin_delay": 0.5,
    "pay_delay": 1,
    "refund_delay": 1,
    "slow_delay": 2.5,
}

RECEIPTS = "campaign_receipt"


def speed_up_clock() -> None:
    from django_motp import schedule

    for name, value in FAST_CLOCK.items():
        setattr(schedule, name, value)


def _receipt(sender: Any, event_id: Any = None, **kwargs: Any) -> None:
    """Write one row per delivered event; the primary key makes a second delivery of the same
    event fail (its delivery is then rolled back and recorded, which the campaign looks for)."""
    from django.db import connection

    obj = kwargs.get("payment") or kwargs.get("refund")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RECEIPTS} (event_id, model, object_id, new_status, pid) "
            "VALUES (%s, %s, %s, %s, %s)",
            [event_id, type(obj).__name__, obj.pk, kwargs["new_status"], os.getpid()],
        )


def connect_receipts() -> None:
    from django_motp import signals

    signals.payment_status_changed.connect(_receipt, weak=False, dispatch_uid="campaign")
    signals.refund_status_changed.connect(_receipt, weak=False, dispatch_uid="campaign")


def disconnect_receipts() -> None:
    from django_motp import signals

    signals.payment_status_changed.disconnect(dispatch_uid="campaign")
    signals.refund_status_changed.disconnect(dispatch_uid="campaign")


def create_receipts_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RECEIPTS}")
        cursor.execute(
            f"CREATE TABLE {RECEIPTS} (event_id uuid PRIMARY KEY, model varchar(16) NOT NULL, "
            "object_id bigint NOT NULL, new_status varchar(16) NOT NULL, pid integer NOT NULL)"
        )


def drop_receipts_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RECEIPTS}")


def receipts() -> list[tuple[str, str, int, str, int]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id::text, model, object_id, new_status, pid FROM {RECEIPTS}")
        return list(cursor.fetchall())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def log_everything(path: Path) -> Iterator[None]:
    """Every log record of this process, at DEBUG, goes to ``path`` meanwhile."""
    import logging

    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        handler.close()


class PrivateRedis:
    """A ``redis-server`` of the campaign's own on a free loopback port, without persistence:
    its broker, which it restarts (everything queued is lost, as on a real crash). The
    machine's shared Redis is never touched."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the campaign's redis-server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def queued(self) -> int:
        """Messages waiting in the broker: its queue, and the countdowns and unacknowledged
        deliveries kombu keeps aside."""
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        return int(client.llen("celery")) + int(client.zcard("unacked_index"))

    def restart(self) -> None:
        self.stop()
        self.start()


class CeleryProcess:
    """``celery -A tests.celery_app <command>`` in a session of its own (so that a SIGKILL reaches
    its pool's children too), logging every record at DEBUG to ``<name>.log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.args, self.env, self.workdir = name, args, env, workdir
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", *self.args]
        command += ["--loglevel", "DEBUG", "-f", str(self.log)]
        self.process = subprocess.Popen(
            command,
            env=self.env,
            cwd=str(Path(__file__).resolve().parent.parent),
            stdout=(self.workdir / f"{self.name}.out").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the worker says it is ready (consuming), or fail."""
        deadline = time.monotonic() + timeout
        while not (self.log.exists() and " ready." in self.log.read_text(errors="replace")):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: see {self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the process and its pool: no shutdown, no acknowledgement, nothing."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)


@dataclass
class Plan:
    """What the campaign does to one payment: how it is made and what the buyer then does."""

    method: str
    auth_code: str | None = None
    script: str | None = None
    #: Native payments: "pay", "decline", "expire" (nothing), "late" (paid once expired here).
    buyer: str = "expire"
    buyer_after: float = 0.0


@dataclass
class CampaignResult:
    workdir: Path
    payments: int
    refunds: int
    seconds: float
    #: Calls the SIGKILLed worker may have had in flight (its concurrency): the most the
    #: gateway can have received without a row in the call log.
    killed_concurrency: int
    secrets: set[str]
    errors: list[str] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    #: The texts of the ``ValidationError``s the services raised (no secret belongs there).
    refusal_messages: list[str] = field(default_factory=list)
    disruptions: list[str] = field(default_factory=list)


#: Weights of the ways a payment is made. Quick and JSAPI payments take one of the sandbox's
#: test auth codes (each scripts an outcome) or a code of their own (paid at once).
METHODS = {"native": 35, "quick": 40, "jsapi": 25}
NATIVE_BUYERS = {"pay": 40, "decline": 15, "expire": 20, "late": 10, "script": 15}
REFUND_OUTCOMES = ("refund_processing", "refund_refused")
SCRIPTS = ["paid", "pin", "userpaying", "declined", "never", "refund_processing", "refund_refused"]


class Campaign:
    """1,000 payments and 300 refunds (or fewer) through real worker processes against the
    sandbox with random faults, a worker SIGKILLed and restarted, the broker restarted and every
    token revoked several times; then it waits until everything is settled and swept.

    Runs in the test process: the sandbox (``server``, in threads), the callers of the services
    (a thread pool), the buyers of native payments, and the disruptions. Workers, beat and the
    broker are processes of their own, logging to ``workdir``.
    """

    def __init__(
        self, server: Any, *, payments: int, refunds: int, workdir: Path, seed: int = 12
    ) -> None:
        self.server = server
        self.sandbox = server.state
        self.total_payments = payments
        self.total_refunds = refunds
        self.workdir = workdir
        self.random = random.Random(seed)
        self.redis = PrivateRedis(workdir)
        self.secrets: set[str] = {self.sandbox.config.password}
        self.errors: list[str] = []
        self.refusals: Counter[str] = Counter()
        self.refusal_messages: list[str] = []
        self.disruptions: list[str] = []
        self.lock = threading.Lock()
        self.buyer_actions: list[tuple[float, str, str]] = []  # (when, action, out_trade_no)
        self.late: set[str] = set()
        self.refunds_made = 0
        self.refunding: set[int] = set()
        #: References of the payments whose auth code scripts refused or delayed refunds.
        self.refund_outcomes: set[str] = set()

    # Processes

    def process_env(self) -> dict[str, str]:
        from django.conf import settings
        from django.db import connection

        from tests.helpers import REDIS_URL

        config = {
            "database": connection.settings_dict["NAME"],
            "motp": settings.MOTP,
            "broker_url": self.redis.url,
            "cache_url": REDIS_URL,
            "cache_prefix": f"campaign-{os.getpid()}-{time.time_ns()}",
            "sweep_every": 2.0,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOTP_CAMPAIGN")}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings_campaign",
            MOTP_CAMPAIGN_CONFIG=json.dumps(config, default=str),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def celery_app(self) -> Any:
        """The test process's Celery app: the services' polls go to the campaign's broker."""
        from celery import Celery

        app = Celery("django-motp-campaign", broker=self.redis.url)
        app.conf.update(
            broker_connection_timeout=1,
            broker_connection_retry_on_startup=False,
            worker_hijack_root_logger=False,
        )
        app.set_default()
        app.set_current()
        app.finalize()
        return app

    # Payments

    def plan(self, index: int) -> Plan:
        from django_motp.sandbox import outcomes

        pick = self.random.choices
        method = pick(list(METHODS), list(METHODS.values()))[0]
        if method == "native":
            buyer = pick(list(NATIVE_BUYERS), list(NATIVE_BUYERS.values()))[0]
            if buyer == "script":
                return Plan(method, script=self.random.choice(SCRIPTS))
            return Plan(method, buyer=buyer, buyer_after=self.random.uniform(0.2, 5))
        codes = [*outcomes.AUTH_CODES, None]
        code = self.random.choice(codes) or "2896" + "".join(
            self.random.choice("0123456789") for _ in range(14)
        )
        return Plan(method, auth_code=code)

    def create(self, index: int, plan: Plan) -> None:
        from django_motp import services
        from django_motp.sandbox.outcomes import Outcome, outcome_for_auth_code

        amount = Decimal(self.random.randint(100, 50000)) / 100
        reference = f"campaign-{index}"
        try:
            if plan.script:
                self.sandbox.add_script(Outcome(plan.script))
            if plan.method == "native":
                payment = services.create_native_payment(amount, reference=reference)
                self.schedule_buyer(plan, payment.out_trade_no)
            else:
                assert plan.auth_code is not None
                self.secrets.add(plan.auth_code)
                create = getattr(services, f"create_{plan.method}_payment")
                create(amount, plan.auth_code, reference=reference)
                if outcome_for_auth_code(plan.auth_code) in REFUND_OUTCOMES:
                    self.refund_outcomes.add(reference)
        except Exception as err:  # none is expected: recorded, the test fails on it
            self.errors.append(f"payment {index} ({plan}): {err!r}")

    def schedule_buyer(self, plan: Plan, out_trade_no: str) -> None:
        with self.lock:
            if plan.buyer == "late":
                self.late.add(out_trade_no)
            elif plan.buyer in ("pay", "decline"):
                when = time.monotonic() + plan.buyer_after
                self.buyer_actions.append((when, plan.buyer, out_trade_no))

    def buyers(self) -> None:
        """What the buyers' phones do now: pay or decline a native QR code whose moment came,
        and pay the QR codes of ``late`` payments that have expired here (a late success)."""
        from django_motp.models import Payment
        from django_motp.sandbox.errors import Conflict, NotFound

        now = time.monotonic()
        with self.lock:
            due = [a for a in self.buyer_actions if a[0] <= now]
            self.buyer_actions = [a for a in self.buyer_actions if a[0] > now]
            late = set(self.late)
        settled = dict(
            Payment.objects.filter(out_trade_no__in=late)
            .exclude(status__in=(Payment.Status.CREATED, Payment.Status.PENDING))
            .values_list("out_trade_no", "status")
        )
        # A scripted outcome meant for another payment may have settled it otherwise.
        expired = {n for n, status in settled.items() if status == Payment.Status.EXPIRED}
        with self.lock:
            self.late -= set(settled)
        due += [(now, "pay", number) for number in expired]
        for _, action, number in due:
            # NotFound: the pay call never reached the gateway; Conflict: the order is settled.
            with contextlib.suppress(Conflict, NotFound):
                getattr(self.sandbox, action)(number)

    # Refunds

    def refund_candidates(self, count: int) -> list[int]:
        """Up to ``count`` succeeded payments with something left to refund, at random; one pick
        in three, when there is one, a payment whose wallet refuses or delays refunds, so that
        even a small campaign sees refunds fail and wait."""
        from django.db.models import F

        from django_motp.models import Payment

        rows = list(
            Payment.objects.filter(status=Payment.Status.SUCCEEDED, amount__gt=F("reserved_amount"))
            .exclude(pk__in=self.refunding)
            .values_list("pk", "reference")
        )
        special = [pk for pk, reference in rows if reference in self.refund_outcomes]
        picked: list[int] = []
        for _ in range(min(count, len(rows))):
            pool = special if special and self.random.random() < 1 / 3 else [r[0] for r in rows]
            pool = [pk for pk in pool if pk not in picked]
            if pool:
                picked.append(self.random.choice(pool))
        return picked

    def refund(self, pk: int) -> None:
        from django.core.exceptions import ValidationError

        from django_motp import services
        from django_motp.models import Payment

        try:
            payment = Payment.objects.get(pk=pk)
            left = payment.amount - payment.reserved_amount
            if self.random.random() < 0.3:
                amount = None  # everything left
            else:
                amount = max(
                    Decimal("0.01"),
                    (left * Decimal(self.random.uniform(0.1, 0.6))).quantize(Decimal("0.01")),
                )
            services.refund_payment(payment, amount, reason="campaign")
            with self.lock:
                self.refunds_made += 1
        except ValidationError as err:
            codes = error_codes(err)
            with self.lock:
                self.refusals.update(str(c) for c in codes)
                self.refusal_messages.extend(err.messages)
            if not codes <= {"refund_in_progress", "nothing_left", "too_much", "not_refundable"}:
                self.errors.append(f"refund of {pk}: {err!r}")
        except Exception as err:
            self.errors.append(f"refund of {pk}: {err!r}")
        finally:
            with self.lock:
                self.refunding.discard(pk)
            from django.db import connection

            connection.close()

    # The run

    def run(self) -> CampaignResult:
        from django_motp.models import Payment

        started = time.monotonic()
        self.redis.start()
        env = self.process_env()
        workers = [
            CeleryProcess(
                "worker-prefork",
                [
                    "worker",
                    "-P",
                    "prefork",
                    "-c",
                    "2",
                    "-n",
                    "prefork@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                env,
                self.workdir,
            ),
            CeleryProcess(
                "worker-threads",
                [
                    "worker",
                    "-P",
                    "threads",
                    "-c",
                    "4",
                    "-n",
                    "threads@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                env,
                self.workdir,
            ),
        ]
        beat = CeleryProcess(
            "beat", ["beat", "-s", str(self.workdir / "beat-schedule")], env, self.workdir
        )
        self.celery_app()
        with log_everything(self.workdir / "test-process.log"):
            self.run_processes(workers, beat)
        self.sweep_last_time()
        return CampaignResult(
            workdir=self.workdir,
            payments=Payment.objects.count(),
            refunds=self.refunds_made,
            seconds=time.monotonic() - started,
            killed_concurrency=2,
            secrets=self.secrets,
            errors=self.errors,
            refusals=dict(self.refusals),
            refusal_messages=self.refusal_messages,
            disruptions=self.disruptions,
        )

    def run_processes(self, workers: list[CeleryProcess], beat: CeleryProcess) -> None:
        from django.db import connection

        from tests.celery_app import app as default_app

        issue = self.sandbox.issue_token

        def recorded_token(user: str, password: str) -> str:
            token = issue(user, password)
            self.secrets.add(token)
            return token

        self.sandbox.issue_token = recorded_token  # every token the gateway gives out
        try:
            for process in (*workers, beat):
                process.start()
            for worker in workers:
                worker.wait_ready()
            self.sandbox.set_fault_rate(0.2)
            self.make_payments_and_refunds(workers)
            self.settle()
        finally:
            self.sandbox.set_fault_rate(0.0)
            for process in (*workers, beat):
                process.stop()
            self.redis.stop()
            self.sandbox.issue_token = issue
            default_app.set_default()
            default_app.set_current()
            connection.close()

    def make_payments_and_refunds(self, workers: list[CeleryProcess]) -> None:
        from django.db import connection

        plans = [self.plan(i) for i in range(self.total_payments)]
        milestones = {
            self.total_payments // 3: "kill",
            (2 * self.total_payments) // 3: "broker",
            **{self.total_payments * k // 5: "tokens" for k in (1, 2, 3, 4)},
        }

        def create(index: int) -> None:
            try:
                self.create(index, plans[index])
            finally:
                connection.close()

        with ThreadPoolExecutor(3) as payers, ThreadPoolExecutor(2) as refunders:
            pending = []
            for index in range(self.total_payments):
                pending.append(payers.submit(create, index))
                self.disrupt(milestones.get(index), workers)
                while sum(1 for f in pending if not f.done()) >= 6:
                    self.tick(refunders)
            while any(not f.done() for f in pending):
                self.tick(refunders)
            deadline = time.monotonic() + 600
            while self.refunds_made < self.total_refunds:
                self.tick(refunders)
                if time.monotonic() > deadline:
                    self.errors.append(f"only {self.refunds_made} refunds made in 600 s")
                    break

    def tick(self, refunders: ThreadPoolExecutor) -> None:
        """One round of the test's main loop: buyers act, refunds are asked for."""
        self.buyers()
        wanted = self.total_refunds - self.refunds_made - len(self.refunding)
        if wanted > 0 and len(self.refunding) < 4:
            for pk in self.refund_candidates(min(wanted, 4 - len(self.refunding))):
                with self.lock:
                    self.refunding.add(pk)
                refunders.submit(self.refund, pk)
        time.sleep(0.05)  # the main loop's pace, not a wait for anything

    def disrupt(self, what: str | None, workers: list[CeleryProcess]) -> None:
        if what == "kill":
            received = workers[0].log.read_text(errors="replace").count("] received")
            workers[0].kill()
            self.disruptions.append(
                f"SIGKILL to the prefork worker and its pool, after {received} polls received"
            )
            workers[0].start()
        elif what == "broker":
            queued = self.redis.queued()
            self.redis.restart()
            self.disruptions.append(f"broker restarted, {queued} queued messages lost")
        elif what == "tokens":
            revoked = self.sandbox.expire_tokens()
            self.disruptions.append(f"every token revoked ({revoked} alive)")

    def unsettled(self) -> dict[str, int]:
        from django_motp.models import Event, Payment, Refund

        return {
            "payments checked still": Payment.objects.filter(next_check_at__isnull=False).count(),
            "refunds checked still": Refund.objects.filter(next_check_at__isnull=False).count(),
            "events undelivered": Event.objects.undelivered().count(),
            "buyers to act": len(self.buyer_actions) + len(self.late),
        }

    def settle(self) -> None:
        """Wait until the workers have settled everything, with the faults still on; what is
        left after ten minutes is left to the test's assertions to name."""
        deadline = time.monotonic() + 600
        while any(self.unsettled().values()) and time.monotonic() < deadline:
            self.buyers()
            time.sleep(0.5)

    def sweep_last_time(self) -> None:
        """With the workers gone and the gateway healthy, the sweep of a new worker, inline."""
        from django_motp import services, tasks

        speed_up_clock()
        tasks.sweep(inline=True)
        services.deliver_events()


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
    """``run_campaign(payments, refunds) -> CampaignResult``: the campaign, run against
    ``campaign_sandbox`` with the receipt receiver connected here and in the workers; the
    processes' logs are in ``result.workdir``."""
    create_receipts_table()
    connect_receipts()
    try:
        yield lambda payments, refunds: Campaign(
            campaign_sandbox, payments=payments, refunds=refunds, workdir=tmp_path
        ).run()
    finally:
        disconnect_receipts()
        drop_receipts_table()


def summary(result: CampaignResult, state: Any) -> dict[str, Any]:
    """The campaign's figures (for docs/reliability.rst), also written to ``summary.json`` in
    its work directory."""
    from django.db.models import Count

    from django_motp.models import ApiCall, Event, Payment, Refund

    def counts(queryset: Any, *fields: str) -> dict[str, int]:
        rows = queryset.values(*fields).annotate(n=Count("pk")).order_by(*fields)
        return {" ".join(str(row[f]) for f in fields): row["n"] for row in rows}

    figures = {
        "seconds": round(result.seconds, 1),
        "payments": counts(Payment.objects, "method", "status"),
        "late successes": Event.objects.filter(signal="payment_succeeded", late=True).count(),
        "refunds": counts(Refund.objects, "status"),
        "refusals": result.refusals,
        "events": Event.objects.count(),
        "receipts": len(receipts()),
        "gateway requests": state.stats(),
        "call log": counts(ApiCall.objects, "outcome"),
        "disruptions": result.disruptions,
    }
    (result.workdir / "summary.json").write_text(json.dumps(figures, indent=2))
    return figures
