"""Celery tasks that poll payments and refunds until settled, and the sweep behind them.

The database holds the schedule (``next_check_at``); broker messages are only the fast path.
``poll_due`` (started by celery beat every 10 s; one per worker process runs at a time) is a
loop that claims every due check many rows at a time and makes them on a pool of threads
(``services.BatchChecker``), with no message per check; while it runs (a key it keeps in the
cache), the services send no poll either. Without it, ``poll_payment``/``poll_refund`` check one
row: sent with a countdown when a payment or refund is created, and by the sweep; each poll
first claims the row's due check (``services.claim_check``), so a duplicate delivery, a second
worker, a check by hand or an outdated countdown does nothing, then calls the service, which
enqueues the next check. ``sweep`` (run it every 15 s with celery beat) claims whatever is due
and was left behind by a lost message or a dead worker (in a process running the loop, the
loop's own claims do that), and delivers the signal events that their fast path did not
deliver (a dead process, a receiver that raised).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from celery import shared_task
from celery.signals import worker_shutting_down
from celery.utils.time import get_exponential_backoff_interval
from django.core.cache import cache
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from . import schedule, services
from .models import Payment, Refund

logger = logging.getLogger(__name__)

#: Checks further ahead than this are left to the sweep: Redis redelivers countdowns longer than
#: its visibility timeout (an hour by default), and a far-off countdown holds a worker's memory.
MAX_COUNTDOWN = 900
#: Rows one sweep claims per model; the next sweep takes the rest.
SWEEP_BATCH = 500
#: Hard limit of a poll sent by other code than this module's (which computes one from the
#: settings): above every HTTP timeout, below the claim lease of the default settings (163 s).
DEFAULT_TIME_LIMIT = 140

#: How long one ``poll_due`` loops before it hands over to the next one (which it sends).
LOOP_SECONDS = 20.0
#: Pause between two claims of the loop: about the most a due check waits for it.
LOOP_TICK = 0.1
#: The longest pause of a loop with nothing due and nothing running.
LOOP_IDLE = 1.0

#: Cache key that a running loop keeps (a few seconds at a time): while it is there, the next
#: checks of new payments and refunds are not sent as polls, the loop claims them when due.
LOOP_ALIVE_KEY = "django_motp:poll_due:alive"
LOOP_ALIVE_TTL = 3.0

_loop_lock = threading.Lock()
_shutting_down = threading.Event()

POLL_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "ignore_result": True,
    "time_limit": DEFAULT_TIME_LIMIT,
    "max_retries": 8,
}


def _due(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _poll(task: Any, model: type[Payment] | type[Refund], pk: int, due: str | None) -> None:
    if _loop_lock.locked():
        # This process runs the poll_due loop, which claims every due row within LOOP_TICK:
        # leave the check to it. A poll that checked here would compete with the loop for the
        # claims and the CPU and chain another poll, a message per check, most of all when
        # the loop is behind (a burst of new payments). A poll handed a claim (by a sweep or
        # a retry) hands it back, due now, rather than leave the row until the lease ends.
        if due is not None:
            services.hand_back(model, pk, datetime.fromisoformat(due))
        return
    lease = None
    try:
        obj: Payment | Refund | None = services.claim_check(model, pk, _due(due))  # type: ignore[type-var]
        if obj is None:
            return  # not due, already taken by another worker, or settled
        lease = obj.next_check_at
        services.check_claimed(obj)
    except DatabaseError as exc:
        # Transient (connection lost, lock timeout): retry. After a failed claim with the same
        # ``due``; after a failed check while our lease still stands (if it ran out, the sweep
        # has handed the check to someone else and the retry finds nothing).
        countdown = get_exponential_backoff_interval(
            factor=1, retries=task.request.retries, maximum=60, full_jitter=True
        )
        retry_due = lease.isoformat() if lease is not None else due
        raise task.retry(
            exc=exc, countdown=countdown, kwargs={**_id_kwarg(model, pk), "due": retry_due}
        ) from exc
    services.release(model, pk, lease)


def _id_kwarg(model: type[Payment] | type[Refund], pk: int) -> dict[str, int]:
    return {"payment_id": pk} if model is Payment else {"refund_id": pk}


@shared_task(**POLL_OPTIONS)
def poll_payment(self: Any, payment_id: int, due: str | None = None) -> None:
    """Check payment ``payment_id`` if its check is due (``due``: the ``next_check_at`` this run
    was scheduled for), apply the answer, and schedule the next check while one is needed."""
    _poll(self, Payment, payment_id, due)


@shared_task(**POLL_OPTIONS)
def poll_refund(self: Any, refund_id: int, due: str | None = None) -> None:
    """Like ``poll_payment``, for refund ``refund_id``."""
    _poll(self, Refund, refund_id, due)


def enqueue_poll(obj: Payment | Refund) -> bool:
    """Send the poll for ``obj``'s next check with a countdown to its ``next_check_at``.

    Returns False when nothing was sent: no check is needed, the check is far enough off for
    the sweep to take, Celery runs eagerly, a ``poll_due`` loop runs (it claims the check when
    it is due), or the broker is unreachable; the sweep then takes the check when it is due.
    """
    if obj.next_check_at is None:
        return False
    countdown = max(0.0, (obj.next_check_at - timezone.now()).total_seconds())
    task = poll_payment if isinstance(obj, Payment) else poll_refund
    if countdown > MAX_COUNTDOWN or task.app.conf.task_always_eager:
        # Eager mode cannot wait: each poll would run the next at once, hammering the gateway.
        return False
    if loop_alive():
        return False
    try:
        _send(
            task,
            {**_id_kwarg(type(obj), obj.pk), "due": obj.next_check_at.isoformat()},
            countdown=countdown,
        )
    except Exception:  # any broker failure: the schedule is safe in the database
        logger.warning(
            "Could not enqueue the check of %s; the sweep will take it", obj, exc_info=True
        )
        return False
    return True


def _send(task: Any, kwargs: dict[str, Any], countdown: float = 0) -> None:
    """Send a poll, killed before its claim's lease runs out, so that a poll stuck on the
    network never overlaps the one the sweep hands the check to next."""
    lease = services.claim_lease()
    task.apply_async(
        kwargs=kwargs,
        countdown=countdown,
        time_limit=0.9 * lease,
        soft_time_limit=0.8 * lease,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )


@worker_shutting_down.connect
def _stop_loops(**kwargs: Any) -> None:
    # A warm shutdown waits for running tasks: end the loop at its next claim, not in 20 s.
    _shutting_down.set()


@shared_task(ignore_result=True)
def poll_due(seconds: float = LOOP_SECONDS, threads: int = services.batch.THREADS) -> int:
    """For ``seconds``, claim every due payment and refund check every ``LOOP_TICK`` and make
    them on ``threads`` threads; then send the next ``poll_due``. Returns how many checks were
    made (0 when this process runs the loop already: one loop per process at a time).

    Schedule it with celery beat (it keeps itself going; beat restarts it after a lost
    message or a dead worker)::

        CELERY_BEAT_SCHEDULE = {
            "motp-poll-due": {
                "task": "django_motp.tasks.poll_due",
                "schedule": 10.0,
                "options": {"expires": 10.0},
            },
        }
    """
    if not _loop_lock.acquire(blocking=False):
        return 0
    try:
        ends = time.monotonic() + seconds
        marked = 0.0
        with services.BatchChecker(threads) as checker:
            while not _shutting_down.is_set():
                if time.monotonic() - marked > LOOP_ALIVE_TTL / 3:
                    _mark_alive(True)
                    marked = time.monotonic()
                try:
                    claimed = checker.claim()
                    idle = not claimed and not checker.busy
                    pause = _until_due(LOOP_IDLE) if idle else LOOP_TICK
                except DatabaseError:  # connection lost, failover: the loop goes on
                    logger.warning("poll_due could not claim; trying again", exc_info=True)
                    close_old_connections()
                    pause = LOOP_IDLE
                left = ends - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(pause, left))
    finally:
        _mark_alive(False)  # the next loop marks it again at once
        _loop_lock.release()
    if seconds > 0 and not _shutting_down.is_set():
        try:
            poll_due.apply_async(
                kwargs={"seconds": seconds, "threads": threads}, expires=max(seconds, 1.0)
            )
        except Exception:  # broker down: beat starts the next loop once it is back
            logger.warning("Could not send the next poll_due; beat will", exc_info=True)
    return checker.checked


def loop_alive() -> bool:
    """Whether a ``poll_due`` loop ran a moment ago, in any process sharing the cache."""
    try:
        return bool(cache.get(LOOP_ALIVE_KEY))
    except Exception:  # the cache is down: send the polls, as without a loop
        return False


def _mark_alive(alive: bool) -> None:
    try:
        if alive:
            cache.set(LOOP_ALIVE_KEY, True, LOOP_ALIVE_TTL)
        else:
            cache.delete(LOOP_ALIVE_KEY)
    except Exception:  # the cache is down: polls are sent as without a loop
        logger.warning("poll_due could not reach the cache", exc_info=True)


def _until_due(longest: float) -> float:
    """Seconds until the earliest planned check, between ``LOOP_TICK`` and ``longest``."""
    now = timezone.now()
    waits = [
        (due - now).total_seconds()
        for due in (services.next_due(Payment), services.next_due(Refund))
        if due is not None
    ]
    return max(LOOP_TICK, min([longest, *waits]))


@shared_task(acks_late=True, ignore_result=True)
def sweep(inline: bool = False) -> int:
    """Claim every due payment and refund check and hand each to a poll (or run it here when
    ``inline`` or the broker is unreachable), unless this process runs the ``poll_due`` loop,
    which claims them itself; then deliver the events that are due. Returns how many checks
    were claimed.

    Run it periodically, every 15 s is recommended::

        CELERY_BEAT_SCHEDULE = {
            "motp-sweep": {"task": "django_motp.tasks.sweep", "schedule": 15.0},
        }
    """
    claimed = 0
    if _loop_lock.locked() and not inline:
        # This process runs the poll_due loop, whose claims take every due row, those that a
        # dead worker left included: handing them out as polls here would only add a message
        # per check, most when the loop is behind.
        services.deliver_events()
        return claimed
    for model, task in ((Payment, poll_payment), (Refund, poll_refund)):
        pks, lease = services.claim_due(model, SWEEP_BATCH)
        claimed += len(pks)
        for pk in pks:
            kwargs = {"due": lease.isoformat(), **_id_kwarg(model, pk)}
            if not inline:
                try:
                    _send(task, kwargs)
                    continue
                except Exception:  # broker down: do the check here rather than wait for the lease
                    logger.warning("Broker unreachable; checking %s %s inline", model.__name__, pk)
            _run_inline(task, model, pk, kwargs, lease)
    services.deliver_events()
    return claimed


def _run_inline(
    task: Any, model: type[Payment] | type[Refund], pk: int, kwargs: dict[str, Any], lease: Any
) -> None:
    """Run one claimed poll here; a row whose check raises is logged and backed off, so it
    neither stops the rest of the sweep nor is retried at full speed."""
    try:
        task.run(**kwargs)
    except Exception:
        logger.error(
            "Checking %s %s failed; it is tried again in %d s",
            model.__name__,
            pk,
            schedule.OUTAGE_INTERVAL,
            exc_info=True,
        )
        services.back_off(model, pk, lease)
