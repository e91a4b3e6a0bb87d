"""Settling by hand what the gateway left unsettled: an operator's word, recorded."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import Refund
from .refunds import fail_refund, succeed_refund

logger = logging.getLogger("django_motp.services")


def resolve_refund(refund: Refund, succeeded: bool, *, by: Any, note: str) -> Refund:
    """Settle by hand a refund the gateway left unsettled past its deadline, once an operator
    has confirmed its fate with the gateway's support: succeeded (its amount counted as
    refunded) or failed (its reservation released). Records who (``by``), when and why
    (``note``), flags it ``resolved_by_hand`` and sends the usual signals.

    Raises ``ValidationError`` if the refund is already settled, not past its deadline, or
    ``note`` is empty; nothing is changed then.
    """
    note = (note or "").strip()
    refund.refresh_from_db()
    if refund.is_final:
        raise ValidationError(
            _("Refund %(number)s is already %(status)s.")
            % {"number": refund.out_refund_no, "status": refund.get_status_display().lower()},
            code="settled",
        )
    if refund.deadline_at is None or timezone.now() < refund.deadline_at:
        raise ValidationError(
            _("Refund %(number)s is not past its deadline yet; the gateway may still settle it.")
            % {"number": refund.out_refund_no},
            code="not_overdue",
        )
    if not note:
        raise ValidationError({"note": _("Say why, e.g. what the gateway's support confirmed.")})
    fields = {
        "resolved_by": by,
        "resolved_at": timezone.now(),
        "resolution_note": note,
        "attention": Refund.Attention.RESOLVED_BY_HAND,
    }
    message = _("Resolved by hand: %(note)s") % {"note": note}
    settle = succeed_refund if succeeded else fail_refund
    if not settle(refund, message, **fields):
        refund.refresh_from_db()
        raise ValidationError(
            _("Refund %(number)s was settled meanwhile: it is %(status)s.")
            % {"number": refund.out_refund_no, "status": refund.get_status_display().lower()},
            code="settled",
        )
    logger.warning(
        "Refund %s resolved by hand as %s by %s: %s", refund.out_refund_no, refund.status, by, note
    )
    return refund
