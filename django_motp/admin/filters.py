"""Changelist filters that are not a plain field: refund state, needs attention, undelivered.

Each filter is one indexed condition (see the model's ``Meta.indexes``), so a filtered page of
100,000 payments stays fast.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import signals
from ..conf import DEFAULT_ENDPOINTS
from ..models import Event, Payment, Refund

#: An event still undelivered this long after it was written needs a person (delivery normally
#: follows its transaction's commit at once).
EVENT_GRACE = timedelta(minutes=1)


def stuck_events(queryset: QuerySet[Event]) -> QuerySet[Event]:
    """Undelivered events whose delivery failed at least once, or that waited too long."""
    stale = timezone.now() - EVENT_GRACE
    return queryset.filter(delivered_at__isnull=True).filter(
        Q(attempts__gt=0) | Q(created_at__lt=stale)
    )


class RefundStateFilter(admin.SimpleListFilter):
    title = _("refunded")
    parameter_name = "refunded"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [("none", _("Nothing")), ("partial", _("In part")), ("full", _("In full"))]

    def queryset(self, request: Any, queryset: QuerySet[Payment]) -> QuerySet[Payment]:
        value = self.value()
        if value == "none":
            return queryset.filter(refunded_amount=0)
        if value == "partial":
            return queryset.filter(refunded_amount__gt=0, refunded_amount__lt=F("amount"))
        if value == "full":
            return queryset.filter(refunded_amount__gt=0, refunded_amount__gte=F("amount"))
        return queryset


class AttentionFilter(admin.SimpleListFilter):
    """Rows a person should look at (the model manager's ``needs_attention()``), in all or by
    reason."""

    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        reasons = [(value, label) for value, label in self.model.Attention.choices if value]
        return [
            ("yes", _("Needs attention")),
            ("past_deadline", _("Unsettled past its deadline")),
            *reasons,
        ]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "yes":
            return queryset.needs_attention()  # type: ignore[attr-defined]
        if value == "past_deadline":
            return queryset.filter(
                status__in=("created", "pending"), deadline_at__lt=timezone.now()
            )
        if value in self.model.Attention.values and value:
            return queryset.filter(attention=value)
        return queryset

    model: type[Payment] | type[Refund]


class PaymentAttentionFilter(AttentionFilter):
    model = Payment


class RefundAttentionFilter(AttentionFilter):
    model = Refund


class DeliveryFilter(admin.SimpleListFilter):
    title = _("delivery")
    parameter_name = "delivery"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("undelivered", _("Not delivered")),
            ("stuck", _("Needs attention")),
            ("delivered", _("Delivered")),
        ]

    def queryset(self, request: Any, queryset: QuerySet[Event]) -> QuerySet[Event]:
        value = self.value()
        if value == "undelivered":
            return queryset.filter(delivered_at__isnull=True)
        if value == "stuck":
            return stuck_events(queryset)
        if value == "delivered":
            return queryset.filter(delivered_at__isnull=False)
        return queryset


class ValuesFilter(admin.SimpleListFilter):
    """A filter on a field's known values, listed without Django's ``SELECT DISTINCT`` over a
    table that may hold millions of rows (the API call log)."""

    values: tuple[str, ...] = ()
    field: str

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [(value, value) for value in self.values]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in self.values:
            return queryset.filter(**{self.field: self.value()})
        return queryset


class OperationFilter(ValuesFilter):
    title = _("operation")
    parameter_name = field = "operation"
    values = tuple(DEFAULT_ENDPOINTS)


class SignalFilter(ValuesFilter):
    title = _("signal")
    parameter_name = field = "signal"
    values = signals.NAMES
