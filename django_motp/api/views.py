"""The API's views: payments (list, read, create, status check, refund) and refunds (list, read).

No business logic here: each action validates its input, calls one service and answers with the
row as stored. The money-moving actions run through ``IdempotentMixin.idempotent`` and outside
``transaction.atomic`` (the services commit before they call the gateway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from .. import services
from ..exceptions import CheckInProgress
from ..models import Payment, Refund
from . import schema as docs
from .filters import FilterBackend, PaymentFilter, RefundFilter
from .idempotency import IdempotentMixin
from .parsers import DecimalJSONParser
from .permissions import ADD, REFUND, VIEW, api_permission_classes
from .serializers import (
    DeclinedPaymentSerializer,
    PaymentCreateSerializer,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundSerializer,
)


class CheckRunning(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("This payment is being checked right now; try again in a moment.")
    default_code = "check_in_progress"


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn what the services raise into API answers: a Django ``ValidationError`` into a 400
    with DRF's usual field errors, ``CheckInProgress`` into a 409."""
    try:
        yield
    except DjangoValidationError as exc:
        raise ValidationError(as_serializer_error(exc)) from exc
    except CheckInProgress as exc:
        raise CheckRunning(exc.message or None) from exc


class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class MOTPViewSet(viewsets.GenericViewSet[Any]):
    """What every view of the API shares: permissions from ``MOTP["API_PERMISSION_CLASSES"]``,
    amounts read as ``Decimal``, cursor pagination and django-filter filters."""

    parser_classes = [DecimalJSONParser, FormParser, MultiPartParser]
    pagination_class = NewestFirstPagination
    filter_backends = [FilterBackend]
    #: Action -> the Django permission ``MOTPModelPermissions`` requires (default: view_payment).
    required_permissions: dict[str, str] = {}

    def get_permissions(self) -> list[BasePermission]:
        return [permission() for permission in api_permission_classes()]


@docs.payment_views
class PaymentViewSet(
    IdempotentMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, MOTPViewSet
):
    """Payments, named by their ``out_trade_no``; amounts are strings with two decimals. Send
    every POST with an ``Idempotency-Key`` header, and again with the same key if no answer came.
    """

    # The docstring above is the schema's description of each payment operation (drf-spectacular
    # would otherwise take IdempotentMixin's, which speaks to programmers).
    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    lookup_field = "out_trade_no"
    required_permissions = {"create": ADD, "sync": VIEW, "refunds": REFUND}

    def get_serializer_class(self) -> Any:
        # The browsable API's form for a new payment asks for what creating one takes.
        if self.action in ("list", "create") and self.request.method == "POST":
            return PaymentCreateSerializer
        return PaymentSerializer

    def create(self, request: Request) -> Response:
        return self.idempotent(self.create_payment)

    @action(detail=True, methods=["post"])
    def sync(self, request: Request, out_trade_no: str) -> Response:
        return self.idempotent(self.sync_payment)

    @action(detail=True, methods=["post"])
    def refunds(self, request: Request, out_trade_no: str) -> Response:
        return self.idempotent(self.refund_payment)

    def create_payment(self) -> Response:
        """201 for a succeeded payment or a QR code to show, 202 for one still pending (the
        worker settles it), 402 for a declined one."""
        serializer = PaymentCreateSerializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        options = dict(serializer.validated_data)
        method, amount = options.pop("method"), options.pop("amount")
        auth_code = options.pop("auth_code", None)
        with service_errors():
            if method == Payment.Method.NATIVE:
                payment = services.create_native_payment(amount, **options)
            elif method == Payment.Method.QUICK:
                payment = services.create_quick_payment(amount, auth_code, **options)
            else:
                payment = services.create_jsapi_payment(amount, auth_code, **options)
        payment = Payment.objects.get(pk=payment.pk)  # as stored: what a GET answers later
        if payment.status in (Payment.Status.FAILED, Payment.Status.EXPIRED):
            return Response(
                DeclinedPaymentSerializer(payment).data, status=status.HTTP_402_PAYMENT_REQUIRED
            )
        settled = payment.status == Payment.Status.SUCCEEDED
        if settled or (payment.method == Payment.Method.NATIVE and payment.qr_code):
            return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)
        return Response(PaymentSerializer(payment).data, status=status.HTTP_202_ACCEPTED)

    def sync_payment(self) -> Response:
        """Ask the gateway about the payment once and answer it as it now is."""
        payment = self.get_object()
        with service_errors():
            services.sync_payment(payment)
        return Response(PaymentSerializer(Payment.objects.get(pk=payment.pk)).data)

    def refund_payment(self) -> Response:
        """201 for a refund already settled, 202 for one the worker settles, 402 if the
        gateway refused it."""
        payment = self.get_object()
        serializer = RefundCreateSerializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = self.request.user
        with service_errors():
            refund = services.refund_payment(
                payment,
                data.get("amount"),
                reason=data.get("reason", ""),
                out_refund_no=data.get("out_refund_no"),
                requested_by=user if user.is_authenticated else None,
            )
        refund = Refund.objects.select_related("payment").get(pk=refund.pk)
        code = {
            Refund.Status.SUCCEEDED: status.HTTP_201_CREATED,
            Refund.Status.FAILED: status.HTTP_402_PAYMENT_REQUIRED,
        }.get(Refund.Status(refund.status), status.HTTP_202_ACCEPTED)
        return Response(RefundSerializer(refund).data, status=code)


@docs.refund_views
class RefundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, MOTPViewSet):
    """Refunds, named by their ``out_refund_no``, each with its payment's ``out_trade_no``;
    amounts are strings with two decimals. Refund a payment with POST
    ``/payments/{out_trade_no}/refunds/``."""

    queryset = Refund.objects.select_related("payment")
    serializer_class = RefundSerializer
    filterset_class = RefundFilter
    lookup_field = "out_refund_no"
