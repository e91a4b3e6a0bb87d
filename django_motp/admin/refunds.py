"""The refunds admin: the changelist, the read-only refund page, "Check refund status", and
"Resolve..." for a refund the gateway left unsettled past its deadline."""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import MOTPError
from ..forms import ResolveRefundForm, apply_service_errors
from ..models import Refund
from .display import money, refund_badge
from .filters import RefundAttentionFilter
from .outcomes import Outcomes
from .payment_views import MAX_ACTION_ROWS, too_many

R = Refund.Status


def can_be_resolved(refund: Refund) -> bool:
    """Whether an operator may settle the refund by hand: unsettled past its deadline."""
    return (
        refund.status in (R.CREATED, R.PENDING)
        and refund.deadline_at is not None
        and refund.deadline_at < timezone.now()
    )


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = (
        "out_refund_no",
        "payment_link",
        "amount_display",
        "reason",
        "status_badge",
        "requested_by",
        "created_at",
        "completed_at",
    )
    list_filter = ("status", RefundAttentionFilter)
    date_hierarchy = "created_at"
    search_fields = ("=out_refund_no", "=payment__out_trade_no")
    list_select_related = ("payment", "requested_by")
    show_full_result_count = False
    ordering = ("-created_at",)
    actions = ("check_status",)
    readonly_fields = (
        "out_refund_no",
        "payment_link",
        "amount_display",
        "reason",
        "status_badge",
        "message",
        "requested_by",
        "created_at",
        "completed_at",
        "deadline_at",
        "next_check_at",
        "attention",
        "resolved_by",
        "resolved_at",
        "resolution_note",
    )
    fields = readonly_fields

    class Media:
        css = {"all": ("django_motp/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # refunds are made from their payment's page

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_motp.refund_payment")

    @admin.display(description=_("payment"), ordering="payment__created_at")
    def payment_link(self, refund: Refund) -> SafeString:
        url = reverse("admin:django_motp_payment_change", args=[refund.payment_id])
        return format_html('<a href="{}">{}</a>', url, refund.payment.out_trade_no)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, refund: Refund) -> str:
        return money(refund.amount, refund.payment.currency)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, refund: Refund) -> SafeString:
        return refund_badge(refund)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Refund]:
        return super().get_queryset(request).select_related("payment", "requested_by")

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Refund | None = None,
    ) -> HttpResponse:
        if obj is not None and can_be_resolved(obj) and self.has_refund_permission(request):
            context["resolve_url"] = reverse("admin:django_motp_refund_resolve", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    @transaction.non_atomic_requests
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The actions run here and call the services: no transaction around them.
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[URLPattern]:
        def resolve(request: HttpRequest, object_id: str) -> HttpResponse:
            return self.resolve_view(request, object_id)

        update_wrapper(resolve, self.resolve_view)
        view = self.admin_site.admin_view(transaction.non_atomic_requests(resolve))
        return [
            path("<path:object_id>/resolve/", view, name="django_motp_refund_resolve"),
            *super().get_urls(),
        ]

    @admin.action(description=_("Check refund status"), permissions=["view"])
    def check_status(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        rows = list(queryset[: MAX_ACTION_ROWS + 1])
        if len(rows) > MAX_ACTION_ROWS:
            too_many(self, request)
            return
        outcomes = Outcomes()
        for refund in rows:
            try:
                refund = services.sync_refund(refund)
            except MOTPError as err:
                outcomes.add("warning", gettext("Not checked"), f"{refund.out_refund_no}: {err}")
                continue
            levels: dict[str, str] = {R.SUCCEEDED: "success", R.FAILED: "warning"}
            level = levels.get(refund.status, "info")
            heading = gettext("Checked, now %(status)s") % {"status": refund.get_status_display()}
            outcomes.add(level, heading, refund.out_refund_no)
        outcomes.report(self, request)

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """``refund/<pk>/resolve/`` (needs ``refund_payment``): record what the gateway's support
        confirmed about a refund left unsettled past its deadline (``services.resolve_refund``)."""
        refund = get_object_or_404(Refund.objects.select_related("payment"), pk=object_id)
        if not self.has_refund_permission(request):
            raise PermissionDenied
        form = ResolveRefundForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                refund = services.resolve_refund(
                    refund,
                    form.cleaned_data["outcome"],
                    by=request.user,
                    note=form.cleaned_data["note"],
                )
            except ValidationError as err:
                apply_service_errors(form, err)
            else:
                text = gettext("Refund %(number)s recorded as %(status)s by hand.") % {
                    "number": refund.out_refund_no,
                    "status": refund.get_status_display().lower(),
                }
                self.log_change(request, refund, text)
                self.message_user(request, text, messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:django_motp_refund_change", args=[refund.pk])
                )
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Resolve refund %(number)s") % {"number": refund.out_refund_no},
            "original": refund,
            "form": form,
            "resolvable": can_be_resolved(refund),
            "amount": money(refund.amount, refund.payment.currency),
        }
        return TemplateResponse(request, "django_motp/admin/resolve_refund.html", context)
