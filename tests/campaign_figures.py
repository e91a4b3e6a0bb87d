"""What a fault campaign run leaves to the test: its result, and its figures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.campaign_common import receipts


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
    #: Checks by hand made, and refused because a worker held the row.
    hand_checks: dict[str, int] = field(default_factory=dict)


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
        "checks by hand": result.hand_checks,
        "disruptions": result.disruptions,
    }
    (result.workdir / "summary.json").write_text(json.dumps(figures, indent=2))
    return figures
