"""Who may check a row now: claims, so that one worker or one person, never two, asks the
gateway about a payment or refund at a time.

A claim sets ``checking_until`` (and, for the polls, moves ``next_check_at`` a lease ahead) in
one conditional UPDATE. The polls claim a due check (``claim_check``, ``claim_due``); a check
made by hand (``sync_payment``/``sync_refund`` from the admin, the API or ``motp_sync``) takes
the same claim with ``held_by_hand``, waits a few seconds for a worker that holds it, then
raises ``CheckInProgress``. A claim whose holder died runs out with its lease.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import schedule
from ..conf import motp_settings
from ..exceptions import CheckInProgress
from ..models import Payment, Refund

M = TypeVar("M", Payment, Refund)

#: How long a check by hand waits for a worker's check of the same row to end.
HAND_WAIT = 5.0
HAND_WAIT_STEP = 0.1
#: Gateway calls one claimed check may make: a refund's status check, its resend and a second
#: status check; or a payment's check followed by the full refund of a double charge.
CALLS_PER_CHECK = 3


def claim_lease() -> float:
    """Seconds a claimed check may take before the sweep hands it to someone else: room for
    ``CALLS_PER_CHECK`` gateway calls, each with its token fetches and retries, plus a poll
    interval. Every HTTP call has a timeout, so a check ends within it on any Celery pool;
    polls are also killed before it runs out (``tasks.enqueue_poll``)."""
    return CALLS_PER_CHECK * schedule.call_window(motp_settings.TIMEOUT) + float(
        motp_settings.POLL_INTERVAL
    )


def _free(now: datetime) -> Q:
    return Q(checking_until__isnull=True) | Q(checking_until__lt=now)


def claim_check(model: type[M], pk: int, due: datetime | None) -> M | None:
    """Take the check of a row that is due, so one worker and only one makes it.

    ``due`` is the ``next_check_at`` the caller was scheduled for (a lease handed over by the
    sweep included); None means "whatever is due now". The claim moves ``next_check_at`` and
    ``checking_until`` a lease ahead in one conditional UPDATE: a duplicate delivery, a second
    worker, a check by hand or an older schedule then finds nothing to claim. Returns the row,
    or None when there is nothing to do. Release it with ``release`` when the check is over.
    """
    now = timezone.now()
    obj = model._default_manager.filter(pk=pk).first()
    if obj is None or obj.next_check_at is None:
        return None
    if due is None:
        if obj.next_check_at > now:
            return None
        due = obj.next_check_at
    lease = now + timedelta(seconds=claim_lease())
    claimed = (
        model._default_manager.filter(pk=pk, next_check_at=due)
        .filter(_free(now) | Q(checking_until=due))
        .update(next_check_at=lease, checking_until=lease)
    )
    if not claimed:
        return None
    obj.next_check_at = obj.checking_until = lease
    return obj


def claim_due(model: type[Payment] | type[Refund], limit: int) -> tuple[list[int], datetime]:
    """Claim up to ``limit`` rows whose check is due, for the sweep. Returns their ids and the
    ``next_check_at`` (lease) they now carry, which the polls they are handed to claim in turn.
    """
    rows, lease = claim_due_rows(model, limit, values=("pk",))
    return [pk for (pk,) in rows], lease


def claim_due_rows(
    model: type[Payment] | type[Refund], limit: int, values: tuple[str, ...] | None = None
) -> tuple[list[Any], datetime]:
    """Claim up to ``limit`` rows whose check is due, the earliest first; returns them (model
    instances, refunds with their payment; or tuples of ``values``) and the lease they carry.

    One short transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` so that concurrent claimers
    split the rows between them, one UPDATE that moves ``next_check_at`` and ``checking_until``
    a lease ahead, and one SELECT of what was claimed. No lock is held across an HTTP call.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=claim_lease())
    unsettled = [s for s in model.Status.values if s != model.Status.SUCCEEDED]
    manager: Any = model._default_manager  # either model's manager; the stubs cannot join them
    with transaction.atomic():
        pks = list(
            manager.select_for_update(skip_locked=True)
            .filter(_free(now), status__in=unsettled, next_check_at__lte=now)
            .order_by("next_check_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not pks:
            return [], lease
        # Conditional: a poll may have claimed one of them since the SELECT (SQLite has no FOR
        # UPDATE), and then it is that poll's.
        manager.filter(_free(now), pk__in=pks, next_check_at__lte=now).update(
            next_check_at=lease, checking_until=lease
        )
        claimed = manager.filter(pk__in=pks, next_check_at=lease, checking_until=lease)
        if values is not None:
            return list(claimed.values_list(*values)), lease
        if model is Refund:
            claimed = claimed.select_related("payment")
        return list(claimed), lease


def next_due(model: type[Payment] | type[Refund]) -> datetime | None:
    """When the earliest check of an unsettled ``model`` row is due (None: no check is
    planned); claimed rows count with their lease."""
    unsettled = [s for s in model.Status.values if s != model.Status.SUCCEEDED]
    return (
        model._default_manager.filter(status__in=unsettled, next_check_at__isnull=False)
        .order_by("next_check_at")
        .values_list("next_check_at", flat=True)
        .first()
    )


def release(model: type[Payment] | type[Refund], pk: int, lease: datetime | None) -> None:
    """End the claim ``lease`` on row ``pk`` (if it is still that one)."""
    if lease is not None:
        model._default_manager.filter(pk=pk, checking_until=lease).update(checking_until=None)


def release_many(model: type[Payment] | type[Refund], pks: list[int], lease: datetime) -> None:
    """End the claim ``lease`` on the rows ``pks`` that still carry it, in one UPDATE."""
    if pks:
        model._default_manager.filter(pk__in=pks, checking_until=lease).update(checking_until=None)


def hand_back(model: type[Payment] | type[Refund], pk: int, lease: datetime) -> None:
    """End the claim ``lease`` on row ``pk`` (if it is still that one) and make its check due
    now, for whoever claims due rows next: a poll handed a claim that it leaves to the loop."""
    model._default_manager.filter(pk=pk, checking_until=lease).update(
        checking_until=None, next_check_at=timezone.now()
    )


def back_off(
    model: type[Payment] | type[Refund], pk: int, lease: datetime, seconds: float | None = None
) -> None:
    """A check claimed with ``lease`` (or re-claimed since by the poll it was handed to, with a
    later one) raised: free the row and try it again after ``seconds`` (``OUTAGE_INTERVAL`` by
    default), never at full speed."""
    wait = schedule.OUTAGE_INTERVAL if seconds is None else seconds
    later = timezone.now() + timedelta(seconds=wait)
    model._default_manager.filter(pk=pk, checking_until__gte=lease).update(
        checking_until=None, next_check_at=later
    )


@contextmanager
def held_by_hand(obj: Payment | Refund, wait: float | None = None) -> Iterator[datetime]:
    """Hold ``obj``'s check for a check made by hand, waiting up to ``wait`` seconds (default
    ``HAND_WAIT``) for a worker (or another person) holding it; raises ``CheckInProgress`` if it
    is still held."""
    model = type(obj)
    ends = time.monotonic() + (HAND_WAIT if wait is None else wait)
    while True:
        now = timezone.now()
        lease = now + timedelta(seconds=claim_lease())
        if model._default_manager.filter(_free(now), pk=obj.pk).update(checking_until=lease):
            break
        if time.monotonic() >= ends:
            # Whole sentences, not "%(what)s ...": a translation may need to word them apart.
            if isinstance(obj, Payment):
                text = _("Payment %(number)s is being checked right now, try again in a moment.")
                number = obj.out_trade_no
            else:
                text = _("Refund %(number)s is being checked right now, try again in a moment.")
                number = obj.out_refund_no
            raise CheckInProgress(text % {"number": number})
        time.sleep(HAND_WAIT_STEP)
    try:
        yield lease
    finally:
        release(model, obj.pk, lease)
