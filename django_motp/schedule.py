"""When a payment or refund is checked next: pure functions of the row's times and ``now``.

- Quick and JSAPI pay: every ``POLL_INTERVAL`` until ``QUICK_PAY_DEADLINE`` after creation, as the
  gateway's spec advises (3 s for 45 s).
- Native pay: every ``POLL_INTERVAL`` for the first minute, then a tenth of the payment's age, at
  most ``NATIVE_MAX_INTERVAL``, until ``NATIVE_PAY_DEADLINE``.
- Refunds: the same age-proportional back-off, at most ``REFUND_MAX_INTERVAL``, until
  ``REFUND_DEADLINE``; one the gateway still calls processing then is checked every
  ``REFUND_MAX_INTERVAL`` until it answers.
- Failed and expired payments: once at each ``LATE_CHECKS`` offset after they settled.

A check is never scheduled past the deadline, so the check that expires a row runs on time.
A check that got no usable answer is retried on the same schedule, but at least
``POLL_INTERVAL`` ahead, and past the deadline every ``OUTAGE_INTERVAL``: only an answer settles
a row, and an outage should not be polled at full speed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .conf import motp_settings

#: The first minute of a native QR is polled at full speed: that is when buyers pay.
NATIVE_FAST_PERIOD = 60
NATIVE_MAX_INTERVAL = 60
REFUND_MAX_INTERVAL = 300
#: How often a row past its deadline is retried while the gateway gives no usable answer.
OUTAGE_INTERVAL = 60


def _backoff(age: float, fast_period: float, ceiling: float) -> float:
    interval = float(motp_settings.POLL_INTERVAL)
    if age <= fast_period:
        return interval
    return max(interval, min(ceiling, age / 10))


def payment_deadline(method: str, start: datetime) -> datetime:
    """When a payment of ``method`` stops being worth waiting for, counted from ``start``: the
    moment the gateway's answer came (or did not come) back."""
    seconds = (
        motp_settings.NATIVE_PAY_DEADLINE
        if method == "native"
        else motp_settings.QUICK_PAY_DEADLINE
    )
    return start + timedelta(seconds=seconds)


def call_window(call_timeout: float) -> float:
    """Seconds a payment or refund call may take before its outcome is sure to be unknown: twice
    (once more after a refused token) a token fetch (waiting up to one timeout for another
    process's fetch, then the fetch and its one retry) and the call."""
    return 2 * (3 * float(motp_settings.TIMEOUT) + float(call_timeout))


def payment_interval(method: str, age: float) -> float:
    """Seconds until the next check of a pending payment that is ``age`` seconds old."""
    if method == "native":
        return _backoff(age, NATIVE_FAST_PERIOD, NATIVE_MAX_INTERVAL)
    return float(motp_settings.POLL_INTERVAL)


def next_payment_check(
    method: str, created_at: datetime, deadline_at: datetime, now: datetime
) -> datetime:
    """The next check of a pending payment, never later than its deadline."""
    age = (now - created_at).total_seconds()
    return min(now + timedelta(seconds=payment_interval(method, age)), max(deadline_at, now))


def late_check(settled_at: datetime, done: int) -> datetime | None:
    """The late-success check after ``done`` of them, or None when all ``LATE_CHECKS`` are done."""
    offsets = sorted(motp_settings.LATE_CHECKS)
    if done >= len(offsets):
        return None
    return settled_at + timedelta(seconds=offsets[done])


def refund_deadline(created_at: datetime) -> datetime:
    return created_at + timedelta(seconds=motp_settings.REFUND_DEADLINE)


def next_refund_check(created_at: datetime, deadline_at: datetime, now: datetime) -> datetime:
    """The next check of an unsettled refund, never later than its deadline."""
    age = (now - created_at).total_seconds()
    interval = _backoff(age, NATIVE_FAST_PERIOD, REFUND_MAX_INTERVAL)
    return min(now + timedelta(seconds=interval), max(deadline_at, now))


def retry_without_answer(
    regular: datetime, deadline_at: datetime | None, now: datetime
) -> datetime:
    """When to try again after a check or resend that got no usable answer; ``regular`` is when
    the row's next check would have been."""
    if deadline_at is None or now >= deadline_at:
        return now + timedelta(seconds=OUTAGE_INTERVAL)
    return max(regular, now + timedelta(seconds=float(motp_settings.POLL_INTERVAL)))


def due_late_checks(settled_at: datetime, now: datetime) -> int:
    """How many of the ``LATE_CHECKS`` offsets have passed since ``settled_at``."""
    elapsed = (now - settled_at).total_seconds()
    return sum(1 for offset in motp_settings.LATE_CHECKS if offset <= elapsed)


#: Seconds an event may wait for its fast-path delivery (on commit, in the process that made the
#: transition) before the sweep delivers it instead: that process may have died.
EVENT_GRACE = 5
#: Back-off of an event whose receivers raised: doubling from EVENT_RETRY_BASE, at most
#: EVENT_RETRY_MAX; past EVENT_SLOW_AFTER attempts, every EVENT_RETRY_MAX.
EVENT_RETRY_BASE = 10
EVENT_RETRY_MAX = 3600
EVENT_SLOW_AFTER = 8


def event_due(created_at: datetime) -> datetime:
    """When the sweep delivers an event that its fast path has not delivered."""
    return created_at + timedelta(seconds=EVENT_GRACE)


def event_retry(attempts: int, now: datetime) -> datetime:
    """The next delivery of an event whose receivers raised ``attempts`` times."""
    if attempts >= EVENT_SLOW_AFTER:
        return now + timedelta(seconds=EVENT_RETRY_MAX)
    delay = min(EVENT_RETRY_BASE * 2 ** max(attempts - 1, 0), EVENT_RETRY_MAX)
    return now + timedelta(seconds=delay)
