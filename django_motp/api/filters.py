"""Query filters for the lists (django-filter): ``?status=pending&method=quick``,
``?reference=...``, ``?created_after=2026-11-01T00:00:00Z&created_before=...``."""

from __future__ import annotations

from typing import Any

import django_filters
from django.apps import apps
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend

from ..models import Payment, Refund


class PaymentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=Payment.Status.choices, help_text=_("One or more statuses (repeat the parameter).")
    )
    method = django_filters.ChoiceFilter(choices=Payment.Method.choices)
    reference = django_filters.CharFilter(help_text=_("Exactly this reference."))
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text=_("Created at or after (ISO 8601).")
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text=_("Created before (ISO 8601).")
    )

    class Meta:
        model = Payment
        fields = ["status", "method", "reference", "created_after", "created_before"]


class RefundFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=Refund.Status.choices, help_text=_("One or more statuses (repeat the parameter).")
    )
    payment = django_filters.CharFilter(
        field_name="payment__out_trade_no", help_text=_("The refunded payment's out_trade_no.")
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text=_("Created at or after (ISO 8601).")
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text=_("Created before (ISO 8601).")
    )

    class Meta:
        model = Refund
        fields = ["status", "payment", "created_after", "created_before"]


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend. The browsable API shows its filter form only when
    ``django_filters`` is in ``INSTALLED_APPS``, where its template lives; without it the page
    renders without the form rather than failing."""

    def to_html(self, request: Any, queryset: Any, view: Any) -> str:
        if not apps.is_installed("django_filters"):
            return ""
        return str(super().to_html(request, queryset, view) or "")
