"""The payments admin: the changelist, the read-only payment page and its buttons, the actions.

Nothing about a payment is editable here: amounts and states only change through the services,
which this admin calls from its own non-atomic views (``payment_views``), never from
``save_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

import segno
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.formats import date_format, number_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import ApiCall, Event, Payment, Refund
from . import payment_views as views
from .display import METHOD_SHORT, money, payment_badge, refund_badge, status_data
from .filters import PaymentAttentionFilter, RefundStateFilter

#: API calls shown on a payment's page (the newest ones; the API call log has them all).
API_CALLS_SHOWN = 50


class ReadOnlyInline(admin.TabularInline):
    """Rows shown on the payment page to whoever may view the payment; never edited there."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("django_motp.view_payment")


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = (
        "out_refund_no",
        "amount",
        "refund_status",
        "reason",
        "requested_by",
        "created_at",
        "completed_at",
        "message",
    )
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Refund]:
        return super().get_queryset(request).select_related("requested_by")

    @admin.display(description=_("status"))
    def refund_status(self, refund: Refund) -> SafeString:
        return refund_badge(refund)


class EventInline(ReadOnlyInline):
    model = Event
    fk_name = "payment"
    fields = (
        "signal",
        "old_status",
        "new_status",
        "late",
        "created_at",
        "attempts",
        "delivered_at",
        "last_error",
    )
    readonly_fields = fields
    verbose_name_plural = _("events (signals sent)")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    # Status and amount first: what a phone shows without scrolling sideways.
    list_display = (
        "status_badge",
        "amount_display",
        "reference",
        "out_trade_no",
        "buyer_total_display",
        "method_short",
        "refunded_display",
        "created_at",
    )
    list_display_links = ("out_trade_no",)
    list_filter = (
        "status",
        "method",
        RefundStateFilter,
        PaymentAttentionFilter,
    )
    date_hierarchy = "created_at"
    # Exact matches only (see get_search_results): each one an index lookup.
    search_fields = ("out_trade_no", "transaction_id", "reference")
    search_help_text = _("An order number, a wallet transaction id or a reference, exactly.")
    # A page of 100,000 rows: no full count, no join (every column comes from the row itself).
    show_full_result_count = False
    list_select_related = False
    list_per_page = 50
    ordering = ("-created_at",)
    actions = ("check_status", "refund_in_full")
    inlines = (RefundInline, EventInline)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "out_trade_no",
                    "reference",
                    "status_badge",
                    "method",
                    "amount_display",
                    "buyer_total_display",
                    "fee_rate",
                    "refunded_display",
                    "refundable_display",
                )
            },
        ),
        (
            _("Gateway"),
            {
                "fields": (
                    "transaction_id",
                    "message",
                    "store_id",
                    "service_id",
                    "sub_store_id",
                    "sub_store_name",
                )
            },
        ),
        (
            _("Times"),
            {
                "fields": (
                    "created_at",
                    "paid_at",
                    "settled_at",
                    "deadline_at",
                    "next_check_at",
                    "late_checks_done",
                )
            },
        ),
        (_("Needs attention"), {"fields": ("attention", "attention_note", "duplicate_of")}),
        (_("Metadata"), {"fields": ("metadata",), "classes": ("collapse",)}),
        (_("API calls"), {"fields": ("api_calls",)}),
    )

    class Media:
        css = {"all": ("django_motp/admin.css",)}
        js = ("django_motp/admin.js",)

    # Permissions: nothing is edited or deleted here; refunds need their own permission.

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets)  # every field shown, none editable

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.refund_payment")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Payment], search_term: str
    ) -> tuple[QuerySet[Payment], bool]:
        """The payments whose order number, wallet transaction id or reference is the term, as
        typed or scanned: three index lookups, where Django's ``icontains`` would read every
        row."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(out_trade_no=term) | Q(transaction_id=term) | Q(reference=term)
        # As a subquery: otherwise SQLite walks the whole created_at index for the page's order
        # and tests every row against the three terms (0.4 s at 100,000 rows, not 20 ms).
        return queryset.filter(pk__in=Payment.objects.filter(match).values("pk")), False

    # Columns, computed from the row (no query per row).

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, payment: Payment) -> str:
        return money(payment.amount, payment.currency)

    @admin.display(description=_("buyer pays"))
    def buyer_total_display(self, payment: Payment) -> str:
        return money(payment.buyer_total, payment.currency)

    @admin.display(description=_("method"), ordering="method")
    def method_short(self, payment: Payment) -> str:
        return str(METHOD_SHORT.get(payment.method, payment.method))

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, payment: Payment) -> SafeString:
        return payment_badge(payment)

    @admin.display(description=_("refunded"), ordering="refunded_amount")
    def refunded_display(self, payment: Payment) -> str:
        if not payment.refunded_amount:
            return "-"
        return money(payment.refunded_amount, payment.currency)

    @admin.display(description=_("refundable"))
    def refundable_display(self, payment: Payment) -> str:
        return money(payment.refundable_amount, payment.currency)

    @admin.display(description=_("API calls (redacted)"))
    def api_calls(self, payment: Payment) -> SafeString:
        calls = ApiCall.objects.filter(out_trade_no=payment.out_trade_no)[:API_CALLS_SHOWN]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td></tr>",
            (
                (
                    reverse("admin:django_motp_apicall_change", args=[call.pk]),
                    date_format(localtime(call.created_at), "SHORT_DATETIME_FORMAT"),
                    call.operation,
                    call.out_refund_no or "",
                    call.http_status or "-",
                    call.get_outcome_display(),
                    gettext("%(ms)s ms") % {"ms": number_format(call.duration_ms)},
                )
                for call in calls
            ),
        )
        if not rows:
            return format_html("<span>{}</span>", _("None logged."))
        return format_html(
            '<table class="motp-calls"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("at"),
            _("operation"),
            _("refund number"),
            _("HTTP status"),
            _("outcome"),
            _("duration"),
            rows,
        )

    # The payment page: the cashier's panel (big status, QR code, live updates) and buttons.

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Payment | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(self.panel_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def panel_context(self, request: HttpRequest, payment: Payment) -> dict[str, Any]:
        status = status_data(payment)
        qr_svg = None
        if payment.qr_code and not payment.is_final:
            qr = segno.make(payment.qr_code, error="m")
            qr_svg = qr.svg_inline(scale=6, dark="#000", light="#fff", title=str(_("QR code")))
        return {
            "headline": status["headline"],
            "tone": status["tone"],
            "panel_message": status["panel_message"],
            "qr_svg": qr_svg,
            "seconds_left": status["seconds_left"],
            "poll_interval": status["poll_interval"],
            "status_url": reverse("admin:django_motp_payment_status", args=[payment.pk]),
            "check_url": reverse("admin:django_motp_payment_check", args=[payment.pk]),
            "refund_url": reverse("admin:django_motp_payment_refund", args=[payment.pk]),
            "can_take": self.has_add_permission(request),
            "can_refund": self.has_refund_permission(request)
            and payment.status == Payment.Status.SUCCEEDED,
            "amount_text": money(payment.amount, payment.currency),
            "buyer_total_text": money(payment.buyer_total, payment.currency),
            "badge": payment_badge(payment),
        }

    # Taking a payment replaces Django's add view, which runs in a transaction.

    @transaction.non_atomic_requests
    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return views.take_payment(self, request)

    @transaction.non_atomic_requests
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The actions run here and call the services: no transaction around them.
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"

        def own(view: Callable[..., HttpResponse], route: str, name: str) -> URLPattern:
            def bound(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return view(self, request, *args, **kwargs)

            update_wrapper(bound, view)
            return path(
                route,
                self.admin_site.admin_view(transaction.non_atomic_requests(bound)),
                name=f"{info}_{name}",
            )

        # Ours first: Django's list ends in a catch-all object URL.
        return [
            own(views.refund_in_full, "refund-in-full/", "refund_in_full"),
            own(views.payment_status, "<path:object_id>/status/", "status"),
            own(views.check_payment, "<path:object_id>/check/", "check"),
            own(views.refund, "<path:object_id>/refund/", "refund"),
            *super().get_urls(),
        ]

    # Actions.

    @admin.action(description=_("Check status with the gateway"), permissions=["view"])
    def check_status(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        views.check_many(self, request, queryset)

    @admin.action(description=_("Refund in full…"), permissions=["refund"])
    def refund_in_full(
        self, request: HttpRequest, queryset: QuerySet[Payment]
    ) -> HttpResponseRedirect | None:
        ids = list(queryset.values_list("pk", flat=True)[: views.MAX_ACTION_ROWS + 1])
        if len(ids) > views.MAX_ACTION_ROWS:
            views.too_many(self, request)
            return None
        query = urlencode({"ids": ",".join(str(pk) for pk in ids)})
        return HttpResponseRedirect(
            f"{reverse('admin:django_motp_payment_refund_in_full')}?{query}"
        )
