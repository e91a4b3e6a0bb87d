"""Checking due payments and refunds in batches: the polling loop's engine (``tasks.poll_due``).

A ``BatchChecker`` claims every due check of both models with one short transaction per model
(``claims.claim_due_rows``: ``SELECT ... FOR UPDATE SKIP LOCKED``, one UPDATE, one SELECT),
hands the claimed rows to a pool of threads that make their gateway calls concurrently and apply
the answers through the very code of the per-row polls (``check_payment_claimed``,
``check_refund_claimed``: each transition one conditional UPDATE with its event, exactly once),
and ends the claims of the finished rows with one UPDATE per batch. Compared with a Celery poll
per check it saves, per check, a message published, consumed and acknowledged, the claim's own
queries and the release; the rules stay: one checker per row at a time (the claim), no lock
across an HTTP call, and the schedule in the rows (``next_check_at``), so the checks it makes
enqueue nothing (``hooks.checks_taken_from_database``) and whatever it leaves behind (a process
killed mid-batch) is claimed again when its lease runs out.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from datetime import datetime
from types import TracebackType
from typing import Any

from django.db import DatabaseError, connections

from .. import hooks
from ..conf import motp_settings
from ..models import Payment, Refund
from . import claims
from .payments import check_payment_claimed
from .refunds import check_refund_claimed

logger = logging.getLogger("django_motp.services")

#: Gateway calls in flight at once: at 50 ms a call, 16 threads make 300 checks a second.
THREADS = 16
#: Rows claimed but not yet checked, per thread: enough to keep the threads busy between two
#: claims, few enough that a process killed mid-batch strands little (until its lease ends).
BACKLOG_PER_THREAD = 4

Model = type[Payment] | type[Refund]


class BatchChecker:
    """Claims due checks and makes them on a pool of threads; use it as a context manager.

    ``claim()`` starts the checks of every due row (up to the free room in the backlog) and
    returns how many it claimed; ``release_finished()`` ends the claims of the checks that are
    over; ``wait()`` waits for the running checks. Leaving the block waits for the checks,
    releases them and closes the threads' database connections.
    """

    def __init__(self, threads: int = THREADS, backlog: int | None = None) -> None:
        self.threads = max(1, threads)
        self.backlog = backlog or self.threads * BACKLOG_PER_THREAD
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="motp-check")
        self._running: set[Future[None]] = set()
        self._finished: dict[tuple[Model, datetime], list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self.checked = 0

    def __enter__(self) -> BatchChecker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def claim(self) -> int:
        """Claim due payment and refund checks (payments first, they are what buyers wait
        for) while the backlog has room, and start them. Returns how many were claimed."""
        self.release_finished()
        self._running = {future for future in self._running if not future.done()}
        room = self.backlog - len(self._running)
        claimed = 0
        for model in (Payment, Refund):
            if room <= 0:
                break
            rows, lease = claims.claim_due_rows(model, room)
            for obj in rows:
                self._running.add(self._executor.submit(self._check, obj, lease))
            claimed += len(rows)
            room -= len(rows)
        return claimed

    @property
    def busy(self) -> int:
        """Checks claimed and not finished yet."""
        return sum(1 for future in self._running if not future.done())

    def wait(self) -> None:
        """Wait for every check started so far."""
        wait(self._running)

    def release_finished(self) -> None:
        """End the claims of the checks that are over: one UPDATE per model and lease."""
        with self._lock:
            finished, self._finished = self._finished, defaultdict(list)
        for (model, lease), pks in finished.items():
            claims.release_many(model, pks, lease)

    def close(self) -> None:
        try:
            self.wait()
            self.release_finished()
        finally:
            self._close_connections()
            self._executor.shutdown(wait=True)

    def _check(self, obj: Payment | Refund, lease: datetime) -> None:
        """One claimed check, in a pool thread. A check that raises frees its row for a later
        try (soon after a database error, after ``OUTAGE_INTERVAL`` otherwise), so one bad row
        neither stops the batch nor is retried at full speed."""
        model = type(obj)
        check: Callable[[Any], Any] = (
            check_payment_claimed if model is Payment else check_refund_claimed
        )
        try:
            with hooks.checks_taken_from_database():
                check(obj)
        except DatabaseError:
            logger.warning(
                "Checking %s failed on the database; it is tried again soon", obj, exc_info=True
            )
            connections.close_all()  # this thread's connections: the next check reconnects
            self._back_off(model, obj.pk, lease, float(motp_settings.POLL_INTERVAL))
            return
        except Exception:
            logger.error("Checking %s failed; it is tried again later", obj, exc_info=True)
            self._back_off(model, obj.pk, lease, None)
            return
        with self._lock:
            self._finished[(model, lease)].append(obj.pk)
            self.checked += 1

    @staticmethod
    def _back_off(model: Model, pk: int, lease: datetime, seconds: float | None) -> None:
        try:
            claims.back_off(model, pk, lease, seconds)
        except DatabaseError:  # still down: the claim runs out with its lease
            connections.close_all()

    def _close_connections(self) -> None:
        """Close the database connection of each pool thread, from that thread (Django's
        connections belong to the thread that opened them): one job per thread, held at a
        barrier until every thread has one."""
        barrier = threading.Barrier(self.threads)

        def close() -> None:
            with suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)
            connections.close_all()

        wait([self._executor.submit(close) for _ in range(self.threads)])


def check_due(threads: int = THREADS, limit: int | None = None) -> int:
    """Check every payment and refund that is due now (at most ``limit`` of them) on
    ``threads`` threads, and return how many were checked. For a caller that wants one batch
    (a test, a command); the worker's loop is ``tasks.poll_due``."""
    with BatchChecker(threads, backlog=limit or 10**9) as checker:
        checker.claim()
    return checker.checked
