"""Delivering the transitions' events to the signal receivers: exactly once for what the
receivers write to the database, at least once for anything else.

Each event is delivered inside one ``transaction.atomic()`` that also marks it delivered with a
conditional UPDATE (so two deliverers never both run it): ``*_status_changed`` first, then the
transition's own signal, with plain ``send``. A receiver that raises rolls the whole delivery
back (nothing any receiver wrote for it stays); the attempt and the error (a redacted
traceback) are recorded, and it is delivered again later with back-off, by the sweep. The
events of one payment or refund are delivered in order: an undelivered earlier one holds back
the later ones. Receivers get the object as it is at delivery, read fresh.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from .. import schedule, signals
from ..client import redact
from ..conf import motp_settings
from ..exceptions import MOTPConfigurationError
from ..models import Event, Payment, Refund

logger = logging.getLogger("django_motp.events")

#: Events one sweep delivers at most; the next sweep takes the rest.
DELIVERY_BATCH = 500
MAX_ERROR = 8000


def deliver_events(events: Iterable[Event] | None = None) -> int:
    """Deliver the given events now (an iterable or queryset of ``Event``), or, with None,
    every undelivered event that is due (its fast path is overdue, or its back-off is over),
    oldest first. Returns how many were delivered. Never raises for a receiver's error: that
    event's delivery is rolled back, recorded and retried later."""
    if events is None:
        now = timezone.now()
        events = (
            Event.objects.undelivered()
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("created_at")[:DELIVERY_BATCH]
        )
    return sum(1 for event in list(events) if _deliver(event))


def deliver_soon(event: Event) -> None:
    """The fast path, run on commit by the process that made the transition."""
    try:
        _deliver(event)
    except Exception:  # the database went away: the sweep delivers it
        logger.exception("Could not deliver event %s now; the sweep will", event.pk)


def _deliver(event: Event) -> bool:
    try:
        with transaction.atomic():
            # One conditional UPDATE claims it: still undelivered (two deliverers never both
            # run it) and no earlier event of the same object undelivered (order).
            same_object = (
                Q(payment_id=event.payment_id) if event.payment_id else Q(refund_id=event.refund_id)
            )
            earlier = Event.objects.filter(
                same_object, delivered_at__isnull=True, created_at__lt=OuterRef("created_at")
            )
            claimed = (
                Event.objects.filter(pk=event.pk, delivered_at__isnull=True)
                .filter(~Exists(earlier))
                .update(delivered_at=timezone.now())
            )
            if not claimed:
                return False  # delivered already, by another deliverer, or held back
            _send(event)
    except Exception as err:
        _record_failure(event.pk, err)
        return False
    return True


def _send(event: Event) -> None:
    obj: Payment | Refund
    if event.payment_id is not None:
        obj, name = Payment.objects.get(pk=event.payment_id), "payment"
    else:
        assert event.refund_id is not None  # a database constraint: exactly one of the two
        obj, name = Refund.objects.select_related("payment").get(pk=event.refund_id), "refund"
    changed = name
    model = type(obj)
    common = {name: obj, "event_id": event.pk}
    getattr(signals, f"{changed}_status_changed").send(
        sender=model, **common, old_status=event.old_status, new_status=event.new_status
    )
    if event.signal != f"{changed}_status_changed":
        extra = {"late": event.late} if event.signal == "payment_succeeded" else {}
        getattr(signals, event.signal).send(sender=model, **common, **extra)


def _record_failure(pk: Any, err: Exception) -> None:
    now = timezone.now()
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        secrets = [motp_settings.PASSWORD]
    except MOTPConfigurationError:
        secrets = []
    text = redact(text, secrets)[-MAX_ERROR:]
    attempts = (Event.objects.filter(pk=pk).values_list("attempts", flat=True).first() or 0) + 1
    retry_at = schedule.event_retry(attempts, now)
    Event.objects.filter(pk=pk, delivered_at__isnull=True).update(
        attempts=F("attempts") + 1, last_error=text, next_attempt_at=retry_at
    )
    logger.error(
        "A receiver of event %s raised (attempt %d); its delivery was rolled back and will be "
        "tried again at %s",
        pk,
        attempts,
        retry_at.isoformat(),
        exc_info=(type(err), err, err.__traceback__),
    )
