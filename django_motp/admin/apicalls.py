"""The API call log, read-only: what was asked of the gateway and what it answered (redacted by
the client before it was stored: no password, token or payment code)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import ApiCall
from .filters import OperationFilter


def pretty(value: Any) -> SafeString:
    return format_html(
        '<pre class="motp-json">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, cls=DjangoJSONEncoder),
    )


@admin.register(ApiCall)
class ApiCallAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "operation",
        "out_trade_no",
        "out_refund_no",
        "http_status",
        "outcome",
        "duration_ms",
    )
    list_filter = (OperationFilter, "outcome")
    search_fields = ("=out_trade_no", "=out_refund_no")
    show_full_result_count = False
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "operation",
        "out_trade_no",
        "out_refund_no",
        "url",
        "http_status",
        "outcome",
        "duration_ms",
        "error",
        "request_json",
        "response_json",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ("django_motp/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # motp_purge_api_calls deletes old ones

    @admin.display(description=_("request"))
    def request_json(self, call: ApiCall) -> SafeString:
        return pretty(call.request)

    @admin.display(description=_("answer"))
    def response_json(self, call: ApiCall) -> SafeString:
        return pretty(call.response)
