"""The signal outbox, read-only, with "Deliver again" for events whose receivers failed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..models import Event, Payment
from .filters import DeliveryFilter, SignalFilter


def last_line(error: str) -> str:
    """What a recorded traceback ends with: the exception and its message."""
    lines = error.strip().splitlines()
    return lines[-1] if lines else ""


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "signal",
        "subject",
        "transition",
        "late",
        "attempts",
        "delivered_at",
        "error_short",
    )
    list_filter = (DeliveryFilter, SignalFilter, "late")
    list_select_related = ("payment", "refund")
    show_full_result_count = False
    date_hierarchy = "created_at"
    actions = ("deliver_again",)
    fields = (
        "id",
        "signal",
        "subject",
        "old_status",
        "new_status",
        "late",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_deliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_motp.change_event")

    @admin.display(description=_("payment or refund"))
    def subject(self, event: Event) -> SafeString:
        if event.payment is not None:
            url = reverse("admin:django_motp_payment_change", args=[event.payment_id])
            return format_html('<a href="{}">{}</a>', url, event.payment.out_trade_no)
        assert event.refund is not None  # exactly one of the two is set (a constraint)
        url = reverse("admin:django_motp_refund_change", args=[event.refund_id])
        return format_html('<a href="{}">{}</a>', url, event.refund.out_refund_no)

    @admin.display(description=_("transition"))
    def transition(self, event: Event) -> str:
        # The statuses' labels, lowercased: their values in English, translated elsewhere.
        labels = dict(Payment.Status.choices)
        old, new = (str(labels.get(v, v)).lower() for v in (event.old_status, event.new_status))
        return f"{old} \u2192 {new}"

    @admin.display(description=_("last error"))
    def error_short(self, event: Event) -> str:
        return Truncator(last_line(event.last_error)).chars(80)

    @transaction.non_atomic_requests
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Delivery runs each event in its own transaction: none around the action.
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Deliver again"), permissions=["deliver"])
    def deliver_again(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        wanted = list(queryset.filter(delivered_at__isnull=True).values_list("pk", flat=True))
        skipped = queryset.count() - len(wanted)
        delivered = services.deliver_events(Event.objects.filter(pk__in=wanted))
        if delivered:
            text = gettext("Delivered %(count)d event(s).") % {"count": delivered}
            self.message_user(request, text, messages.SUCCESS)
        failed = Event.objects.filter(pk__in=wanted, delivered_at__isnull=True)
        for event in failed:
            text = gettext("Event %(id)s was not delivered: %(error)s") % {
                "id": event.pk,
                "error": Truncator(last_line(event.last_error)).chars(200) or "-",
            }
            self.message_user(request, text, messages.ERROR)
        if skipped:
            text = gettext("%(count)d event(s) had been delivered already.") % {"count": skipped}
            self.message_user(request, text, messages.INFO)
