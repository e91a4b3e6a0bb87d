"""The shop's orders in the admin: read-only (orders come from the checkout, their status from
the payments' signals), each linking to its payments in django-motp's admin."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .models import Order


class AttentionFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if self.value() == "yes":
            return queryset.exclude(attention="")
        if self.value() == "no":
            return queryset.filter(attention="")
        return queryset


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "created_at",
        "description",
        "total",
        "status",
        "refunded_amount",
        "flagged",
    ]
    list_filter = ["status", AttentionFilter, "created_at"]
    search_fields = ["number"]
    date_hierarchy = "created_at"
    list_select_related = ["payment"]
    fields = [
        "number",
        "status",
        "attention",
        "description",
        "total",
        "refunded_amount",
        "created_at",
        "paid_at",
        "payment_links",
        "history",
    ]
    readonly_fields = fields

    # An order is a record: made by the checkout, changed only by the receivers.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    @admin.display(boolean=True, description=_("attention"))
    def flagged(self, order: Order) -> bool:
        return bool(order.attention)

    @admin.display(description=_("payments"))
    def payment_links(self, order: Order) -> str:
        """Each payment of the order, linked to its page in the admin (refund it there)."""
        rows = []
        for payment in order.payments():
            try:
                url = reverse("admin:django_motp_payment_change", args=[payment.pk])
            except NoReverseMatch:  # django_motp's admin not installed in this project
                url = ""
            number = (
                format_html('<a class="payment-link" href="{}">{}</a>', url, payment.out_trade_no)
                if url
                else payment.out_trade_no
            )
            rows.append((number, payment.amount, payment.get_status_display()))
        if not rows:
            return "-"
        return format_html_join(mark_safe("<br>"), "{} {} ({})", rows)

    @admin.display(description=_("history"))
    def history(self, order: Order) -> str:
        """What the receivers noted, oldest first."""
        notes = [
            (note.created_at.strftime("%Y-%m-%d %H:%M:%S"), note.text) for note in order.notes.all()
        ]
        if not notes:
            return "-"
        return format_html_join(mark_safe("<br>"), "{} &nbsp; {}", notes)
