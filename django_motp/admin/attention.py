"""What needs a person, counted for the admin index: payments and refunds that need attention
(``needs_attention()``) and events whose delivery is stuck."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.translation import ngettext

from ..models import Event, Payment, Refund
from .filters import stuck_events


def attention_items(user: Any) -> list[dict[str, Any]]:
    """``[{"count", "text", "url"}, ...]`` of what needs attention and ``user`` may view; only
    kinds with something in them. Three COUNT queries on partial indexes at most."""
    items = []
    if user.has_perm("django_motp.view_payment"):
        count = Payment.objects.needs_attention().count()
        text = ngettext("%(count)d payment", "%(count)d payments", count)
        url = reverse("admin:django_motp_payment_changelist") + "?attention=yes"
        items.append({"count": count, "text": text % {"count": count}, "url": url})
    if user.has_perm("django_motp.view_refund"):
        count = Refund.objects.needs_attention().count()
        text = ngettext("%(count)d refund", "%(count)d refunds", count)
        url = reverse("admin:django_motp_refund_changelist") + "?attention=yes"
        items.append({"count": count, "text": text % {"count": count}, "url": url})
    if user.has_perm("django_motp.view_event"):
        count = stuck_events(Event.objects.all()).count()
        text = ngettext("%(count)d undelivered event", "%(count)d undelivered events", count)
        url = reverse("admin:django_motp_event_changelist") + "?delivery=stuck"
        items.append({"count": count, "text": text % {"count": count}, "url": url})
    return [item for item in items if item["count"]]
