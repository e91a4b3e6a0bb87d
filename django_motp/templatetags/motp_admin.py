"""``{% motp_attention %}``: the "needs attention" banner of the admin index pages."""

from __future__ import annotations

from typing import Any

from django import template

from ..admin.attention import attention_items
from ..admin.dates import date_hierarchy

register = template.Library()


@register.inclusion_tag("django_motp/admin/attention.html", takes_context=True)
def motp_attention(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return {"items": attention_items(user) if user is not None else []}


@register.inclusion_tag("admin/date_hierarchy.html")
def motp_date_hierarchy(cl: Any) -> dict[str, Any]:
    """Django's date drill-down without its DISTINCT query over every row (see
    ``django_motp.admin.dates``)."""
    return date_hierarchy(cl)
