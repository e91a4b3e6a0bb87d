"""The fault campaign itself (``tests/test_campaign.py``, ``tests/test_secrets.py``): what it does
to payments and refunds, the disruptions, and its figures. docs/reliability.rst describes it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.campaign_common import error_codes
from tests.campaign_figures import CampaignResult
from tests.campaign_processes import CeleryProcess, PrivateRedis, log_everything

#: A request to the gateway, as urllib3 logs it at DEBUG in a worker's log.
GATEWAY_CALL = re.compile(r'"(?:GET|POST) /\S* HTTP/[\d.]+" \d{3}')
#: Gateway calls the killed worker has made (with the loop, since its ``poll_due`` started)
#: before it is killed: its checks are under way, not just begun.
BUSY = 10


@dataclass
class Plan:
    """What the campaign does to one payment: how it is made and what the buyer then does."""

    method: str
    auth_code: str | None = None
    script: str | None = None
    #: Native payments: "pay", "decline", "expire" (nothing), "late" (paid once expired here).
    buyer: str = "expire"
    buyer_after: float = 0.0


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
        self,
        server: Any,
        *,
        payments: int,
        refunds: int,
        workdir: Path,
        seed: int = 12,
        loop: bool = False,
    ) -> None:
        self.server = server
        #: Whether the workers run the ``poll_due`` loop (in beat's schedule, on the threads
        #: pool, as README's "Run the workers in production"), or only the per-row polls.
        self.loop = loop
        self.cache_prefix = f"campaign-{os.getpid()}-{time.time_ns()}"
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
        self.ticks = 0
        self.workers: list[CeleryProcess] = []
        self.hand_checks: Counter[str] = Counter()

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
            "cache_prefix": self.cache_prefix,
            "sweep_every": 2.0,
            "poll_due": self.loop,
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

        if index < 8:
            # Every way to end must be seen whatever the size: the first payments are declines
            # of the methods whose pay call can decline (four each, as one in five calls fails).
            return Plan(("quick", "jsapi")[index % 2], auth_code=outcomes.AUTH_CODE_DECLINED)
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
        if self.loop:
            # Both as documented; the one killed midway is the one running a loop then.
            workers = [
                self.worker("threads", concurrency=4, env=env, name="a"),
                self.worker("threads", concurrency=4, env=env, name="b"),
            ]
        else:
            workers = [
                # The first is the one killed midway: prefork, so its pool processes die with it.
                self.worker("prefork", concurrency=2, env=env),
                self.worker("threads", concurrency=4, env=env),
            ]
        beat = CeleryProcess(
            "beat", ["beat", "-s", str(self.workdir / "beat-schedule")], env, self.workdir
        )
        self.celery_app()
        with log_everything(self.workdir / "test-process.log"), self.shared_cache():
            self.run_processes(workers, beat)
        self.sweep_last_time()
        return CampaignResult(
            workdir=self.workdir,
            payments=Payment.objects.count(),
            refunds=self.refunds_made,
            seconds=time.monotonic() - started,
            killed_concurrency=self.killed_concurrency(),
            secrets=self.secrets,
            errors=self.errors,
            refusals=dict(self.refusals),
            refusal_messages=self.refusal_messages,
            hand_checks=dict(self.hand_checks),
            disruptions=self.disruptions,
        )

    def killed_concurrency(self) -> int:
        """The most gateway calls the SIGKILLed worker can have had in flight: its pool's two
        processes; with the loop, the loop's threads and the other three slots of its pool
        (per-row polls sent while no loop was alive)."""
        from django_motp.services.batch import THREADS

        return THREADS + 3 if self.loop else 2

    def shared_cache(self) -> contextlib.AbstractContextManager[Any]:
        """With the loop, this process (the services' callers, as a web process) shares the
        workers' cache, as a real site does: it sees the loop alive and sends no per-row poll
        meanwhile. Without it, this process keeps the tests' own cache."""
        from django.test import override_settings

        from tests.helpers import REDIS_URL

        if not self.loop:
            return contextlib.nullcontext()
        return override_settings(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": REDIS_URL,
                    "KEY_PREFIX": self.cache_prefix,
                }
            }
        )

    def worker(
        self, pool: str, *, concurrency: int, env: dict[str, str], name: str = ""
    ) -> CeleryProcess:
        node = f"{pool}{name}"
        args = ["worker", "-P", pool, "-c", str(concurrency), "-n", f"{node}@%h"]
        args += ["--without-gossip", "--without-mingle"]
        return CeleryProcess(f"worker-{node}", args, env, self.workdir)

    def run_processes(self, workers: list[CeleryProcess], beat: CeleryProcess) -> None:
        from django.db import connection

        from tests.celery_app import app as default_app

        issue = self.sandbox.issue_token

        def recorded_token(user: str, password: str) -> str:
            token = issue(user, password)
            self.secrets.add(token)
            return token

        self.sandbox.issue_token = recorded_token  # every token the gateway gives out
        self.workers = workers
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

    def supervise(self) -> None:
        """Start again a worker that exited by itself, as systemd or supervisord would (Celery
        5.7 with kombu 5.7 can stop with "Unrecoverable error: AttributeError ... 'hostname'"
        when the Redis broker goes away); each restart is recorded as a disruption."""
        for worker in self.workers:
            code = worker.process.poll() if worker.process else None
            if code is not None:
                self.disruptions.append(f"{worker.name} exited by itself ({code}), restarted")
                worker.start()

    def tick(self, refunders: ThreadPoolExecutor) -> None:
        """One round of the test's main loop: buyers act, refunds are asked for, and now and
        then an operator checks an unsettled payment or refund by hand while workers poll it."""
        self.supervise()
        self.buyers()
        self.ticks += 1
        if self.ticks % 10 == 0:
            refunders.submit(self.check_by_hand)
        wanted = self.total_refunds - self.refunds_made - len(self.refunding)
        if wanted > 0 and len(self.refunding) < 4:
            for pk in self.refund_candidates(min(wanted, 4 - len(self.refunding))):
                with self.lock:
                    self.refunding.add(pk)
                refunders.submit(self.refund, pk)
        time.sleep(0.05)  # the main loop's pace, not a wait for anything

    def check_by_hand(self) -> None:
        """``sync_payment`` or ``sync_refund`` of an unsettled row, as the admin's "check" button
        does; "being checked right now" is an answer, anything else raised is an error."""
        from django.db import connection

        from django_motp import services
        from django_motp.exceptions import CheckInProgress
        from django_motp.models import Payment, Refund

        model = Payment if self.random.random() < 0.7 else Refund
        unsettled = list(
            model.objects.filter(status__in=("created", "pending")).values_list("pk", flat=True)
        )
        if not unsettled:
            return
        obj = model.objects.get(pk=self.random.choice(unsettled))
        try:
            if isinstance(obj, Payment):
                services.sync_payment(obj)
            else:
                services.sync_refund(obj)
            self.hand_checks["made"] += 1
        except CheckInProgress as err:
            self.hand_checks["in progress"] += 1
            self.refusal_messages.append(str(err))
        except Exception as err:
            self.errors.append(f"check by hand of {obj}: {err!r}")
        finally:
            connection.close()

    def disrupt(self, what: str | None, workers: list[CeleryProcess]) -> None:
        if what == "kill":
            victim = self.busy_worker(workers if self.loop else workers[:1])
            log = victim.log.read_text(errors="replace")
            received = log.count("] received")
            loop_started = log.rfind("django_motp.tasks.poll_due[")
            calls = len(GATEWAY_CALL.findall(log))
            # With the loop, the calls made since its poll_due was received.
            in_loop = len(GATEWAY_CALL.findall(log, loop_started)) if loop_started >= 0 else 0
            victim.kill()
            since = f" ({in_loop} since its poll_due loop started)" if self.loop else ""
            self.disruptions.append(
                f"SIGKILL to {victim.name} and its pool, after {received} tasks received, "
                f"{calls} gateway calls made{since}"
            )
            victim.start()
        elif what == "broker":
            queued = self.redis.queued()
            self.redis.restart()
            self.disruptions.append(f"broker restarted, {queued} queued messages lost")
        elif what == "tokens":
            revoked = self.sandbox.expire_tokens()
            self.disruptions.append(f"every token revoked ({revoked} alive)")

    def busy_worker(self, workers: list[CeleryProcess]) -> CeleryProcess:
        """The first of ``workers`` that is busy, waiting for one while the main loop goes on:
        with the loop, one that received a ``poll_due`` and made ``BUSY`` gateway calls since
        (the loop runs 20 s and beat sends one every 10 s, so it runs one now); without, one
        that made ``BUSY`` gateway calls. After 60 s without one, the first, recorded as an
        error."""
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(2) as refunders:
            while time.monotonic() < deadline:
                for worker in workers:
                    log = worker.log.read_text(errors="replace") if worker.log.exists() else ""
                    at = log.rfind("django_motp.tasks.poll_due[") if self.loop else 0
                    if at >= 0 and len(GATEWAY_CALL.findall(log, at)) >= BUSY:
                        return worker
                self.tick(refunders)
        self.errors.append("no worker busy within 60 s of the kill's moment")
        return workers[0]

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
            self.supervise()
            self.buyers()
            time.sleep(0.5)

    def sweep_last_time(self) -> None:
        """With the workers gone and the gateway healthy, the sweep of a new worker, inline."""
        from django_motp import services, tasks

        tasks.sweep(inline=True)
        services.deliver_events()
