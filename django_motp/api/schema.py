"""The OpenAPI 3 description of the API, when drf-spectacular is installed (the ``api-docs``
extra, with ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "drf_spectacular.openapi.AutoSchema"``
as drf-spectacular asks); without it ``payment_views`` and ``refund_views`` leave the views as
they are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _

from .idempotency import HEADER, MAX_KEY_LENGTH, REPLAYED_HEADER
from .serializers import (
    DeclinedPaymentSerializer,
    ErrorSerializer,
    PaymentCreateSerializer,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundSerializer,
)

__all__ = ["payment_views", "refund_views"]


payment_views: Callable[[Any], Any]
refund_views: Callable[[Any], Any]

try:
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
        extend_schema_view,
    )
except ImportError:  # pragma: no cover - the api-docs extra is not installed

    def payment_views(view: Any) -> Any:
        return view

    refund_views = payment_views
else:

    def _error(description: Any) -> OpenApiResponse:
        return OpenApiResponse(ErrorSerializer, description=description)

    IDEMPOTENCY_KEY = OpenApiParameter(
        HEADER,
        str,
        OpenApiParameter.HEADER,
        description=_(
            "1 to %(max)d characters, unique per operation (e.g. a UUID). Makes the call safe to "
            "send again: the first answer is stored and replayed for the same key and body, "
            "for %(ttl)s."
        )
        % {"max": MAX_KEY_LENGTH, "ttl": _("MOTP['IDEMPOTENCY_KEY_TTL'] seconds (default a day)")},
    )
    REPLAYED = OpenApiParameter(
        REPLAYED_HEADER,
        str,
        OpenApiParameter.HEADER,
        enum=["true"],
        response=True,
        description=_("Present when the answer is a replay of the first one for this key."),
    )
    FIELD_ERRORS = OpenApiResponse(
        OpenApiTypes.OBJECT,
        description=_(
            "Refused by validation, before any gateway call; nothing is saved and the key is "
            "not used up. Each field names a list of messages; 'non_field_errors' for the "
            "request as a whole."
        ),
    )
    FORBIDDEN = _error(_("Not authenticated, or without the permission the action needs."))
    NOT_FOUND = _error(_("No payment or refund with this number."))
    KEY_RUNNING = _error(
        _("The first request with this Idempotency-Key is still running; try again later.")
    )
    KEY_REUSED = _error(_("This Idempotency-Key was used for a different request."))

    def _post(summary: Any, request: Any, responses: dict[int, Any]) -> Any:
        return extend_schema(
            summary=summary,
            request=request,
            parameters=[IDEMPOTENCY_KEY, REPLAYED],
            responses={**responses, 403: FORBIDDEN, 409: KEY_RUNNING, 422: KEY_REUSED},
        )

    payment_views = extend_schema_view(
        list=extend_schema(
            summary=_("List payments, newest first"),
            responses={200: PaymentSerializer(many=True), 400: FIELD_ERRORS, 403: FORBIDDEN},
        ),
        retrieve=extend_schema(
            summary=_("Read a payment"),
            responses={200: PaymentSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        ),
        create=_post(
            _("Take a payment"),
            PaymentCreateSerializer,
            {
                201: OpenApiResponse(
                    PaymentSerializer,
                    description=_("Succeeded, or a QR code (native) for the buyer to scan."),
                ),
                202: OpenApiResponse(
                    PaymentSerializer,
                    description=_(
                        "Pending: the buyer is typing a PIN, or the gateway's answer was lost. "
                        "The worker settles it; poll GET /payments/{out_trade_no}/."
                    ),
                ),
                400: FIELD_ERRORS,
                402: OpenApiResponse(
                    DeclinedPaymentSerializer,
                    description=_("Declined: the failed payment and the gateway's message."),
                ),
            },
        ),
        sync=_post(
            _("Ask the gateway about a payment now"),
            None,
            {
                200: OpenApiResponse(PaymentSerializer, description=_("The payment as it is now.")),
                404: NOT_FOUND,
            },
        ),
        refunds=_post(
            _("Refund a payment in full or in part"),
            RefundCreateSerializer,
            {
                201: OpenApiResponse(RefundSerializer, description=_("Refunded.")),
                202: OpenApiResponse(
                    RefundSerializer,
                    description=_("Accepted; the worker settles it. Poll GET /refunds/{no}/."),
                ),
                400: FIELD_ERRORS,
                402: OpenApiResponse(
                    RefundSerializer, description=_("Refused by the gateway; see 'message'.")
                ),
                404: NOT_FOUND,
            },
        ),
    )
    refund_views = extend_schema_view(
        list=extend_schema(
            summary=_("List refunds, newest first"),
            responses={200: RefundSerializer(many=True), 400: FIELD_ERRORS, 403: FORBIDDEN},
        ),
        retrieve=extend_schema(
            summary=_("Read a refund"),
            responses={200: RefundSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        ),
    )
