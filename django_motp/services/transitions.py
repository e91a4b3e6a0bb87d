"""State changes: one conditional UPDATE each, with its event row in the same transaction.

A transition moves a row from the status it was read with to a new one with
``filter(pk=..., status=<old>)``; only the caller whose UPDATE changed the row writes the
transition's ``Event`` (the outbox), in the same transaction, and delivers it after commit
(``events.deliver_events``). Whatever races with other threads, workers or retries, each
transition and its event happen exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import transaction
from django.utils import timezone

from .. import schedule
from ..models import Event, Payment, Refund
from . import events

logger = logging.getLogger("django_motp.services")

M = TypeVar("M", Payment, Refund)

#: The specific signal of a transition to a status, by model; others send only *_status_changed.
SPECIFIC_SIGNALS: dict[tuple[type[Payment] | type[Refund], str], str] = {
    (Payment, Payment.Status.SUCCEEDED): "payment_succeeded",
    (Payment, Payment.Status.FAILED): "payment_failed",
    (Payment, Payment.Status.EXPIRED): "payment_expired",
    (Refund, Refund.Status.SUCCEEDED): "refund_succeeded",
    (Refund, Refund.Status.FAILED): "refund_failed",
}
LATE_FROM = frozenset({Payment.Status.FAILED, Payment.Status.EXPIRED})


def signal_name(model: type[Payment] | type[Refund], new: str) -> str:
    """The name of the signal an event of a transition of ``model`` to ``new`` stands for."""
    default = "payment_status_changed" if model is Payment else "refund_status_changed"
    return SPECIFIC_SIGNALS.get((model, new), default)


def transition(
    obj: M,
    new: str,
    *,
    also: Callable[[], Any] | None = None,
    **fields: Any,
) -> bool:
    """Move ``obj`` from the status it was read with to ``new``, in one conditional UPDATE.

    Returns False (and changes nothing) if the row is no longer in that status. ``also`` runs in
    the same transaction, only when the row changed, while ``obj.status`` is still the old one.
    The transition's event is written in that transaction and delivered after commit.
    """
    old = obj.status
    model = type(obj)
    now = timezone.now()
    with transaction.atomic():
        changed = model._default_manager.filter(pk=obj.pk, status=old).update(
            status=new, updated_at=now, **fields
        )
        if not changed:
            return False
        if also is not None:
            also()
        event = Event.objects.create(
            signal=signal_name(model, new),
            payment=obj if isinstance(obj, Payment) else None,
            refund=obj if isinstance(obj, Refund) else None,
            old_status=old,
            new_status=new,
            late=model is Payment and new == Payment.Status.SUCCEEDED and old in LATE_FROM,
            created_at=now,
            next_attempt_at=schedule.event_due(now),
        )
        obj.status = new
        for name, value in fields.items():
            setattr(obj, name, value)
        transaction.on_commit(lambda: events.deliver_soon(event))
    return True


def move(obj: M, new: str, allowed: frozenset[str] | set[str], **fields: Any) -> bool:
    """``transition`` from whatever unsettled status ``obj`` is in now, re-reading on a race.

    Statuses only move forward, so a few rounds always settle it: False means another caller
    moved the row to a status not in ``allowed`` (and wrote that transition's event).
    """
    also = fields.pop("also", None)
    for _ in range(5):
        if obj.status not in allowed:
            return False
        if transition(obj, new, also=also, **fields):
            return True
        obj.refresh_from_db()
    return False


def update_if(obj: M, **fields: Any) -> bool:
    """Change non-status fields if the row is still in the status it was read with."""
    changed = (
        type(obj)
        ._default_manager.filter(pk=obj.pk, status=obj.status)
        .update(updated_at=timezone.now(), **fields)
    )
    if changed:
        for name, value in fields.items():
            setattr(obj, name, value)
    return bool(changed)


def flag(obj: Payment | Refund, attention: str, note: str = "") -> bool:
    """Mark ``obj`` as needing a person's attention for ``attention``, unless it already is
    (one conditional UPDATE: the caller logs only when this returns True)."""
    fields: dict[str, Any] = {"attention": attention}
    if isinstance(obj, Payment) and note:
        fields["attention_note"] = note[:255]
    changed = type(obj)._default_manager.filter(pk=obj.pk, attention="").update(**fields)
    if changed:
        for name, value in fields.items():
            setattr(obj, name, value)
    return bool(changed)
