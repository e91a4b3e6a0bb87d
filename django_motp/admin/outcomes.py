"""Reporting what happened to many payments or refunds at once: one message per outcome.

An action over many rows collects ``(outcome, label, detail)`` and reports each outcome once
("Refunded: P1, P2"), at SUCCESS, WARNING or ERROR level, refusals and gateway errors with
their reasons.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.utils.translation import gettext

LEVELS = {
    "success": messages.SUCCESS,
    "info": messages.INFO,
    "warning": messages.WARNING,
    "error": messages.ERROR,
}


class Outcomes:
    """Outcomes collected per row, reported together with ``report()``."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, level: str, heading: str, item: str) -> None:
        """Record that ``item`` (e.g. an order number, with its reason) ended as ``heading``."""
        self._groups[(level, heading)].append(item)

    def report(self, model_admin: Any, request: Any) -> None:
        if not self._groups:
            model_admin.message_user(request, gettext("Nothing was done."), messages.WARNING)
        for (level, heading), items in self._groups.items():
            model_admin.message_user(
                request,
                gettext("%(heading)s (%(count)d): %(items)s")
                % {"heading": heading, "count": len(items), "items": "; ".join(items)},
                LEVELS[level],
            )
