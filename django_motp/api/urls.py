"""The API's URLs: ``path("motp/", include("django_motp.api.urls"))``.

Every view is ``non_atomic_requests``: the services must run outside ``transaction.atomic``
(they commit before calling the gateway) even when a project sets ``ATOMIC_REQUESTS``.
"""

from __future__ import annotations

from typing import Any

from django.db.transaction import non_atomic_requests
from django.urls import URLPattern, path

from .views import PaymentViewSet, RefundViewSet

app_name = "django_motp_api"


def _view(viewset: Any, actions: dict[str, str], **initkwargs: Any) -> Any:
    return non_atomic_requests(viewset.as_view(actions, **initkwargs))


urlpatterns: list[URLPattern] = [
    path(
        "payments/",
        _view(
            PaymentViewSet,
            {"get": "list", "post": "create"},
            basename="payment",
            detail=False,
            suffix="List",
        ),
        name="payment-list",
    ),
    path(
        "payments/<str:out_trade_no>/",
        _view(PaymentViewSet, {"get": "retrieve"}, basename="payment", detail=True),
        name="payment-detail",
    ),
    path(
        "payments/<str:out_trade_no>/sync/",
        _view(PaymentViewSet, {"post": "sync"}, basename="payment", detail=True),
        name="payment-sync",
    ),
    path(
        "payments/<str:out_trade_no>/refunds/",
        _view(PaymentViewSet, {"post": "refunds"}, basename="payment", detail=True),
        name="payment-refunds",
    ),
    path(
        "refunds/",
        _view(RefundViewSet, {"get": "list"}, basename="refund", detail=False, suffix="List"),
        name="refund-list",
    ),
    path(
        "refunds/<str:out_refund_no>/",
        _view(RefundViewSet, {"get": "retrieve"}, basename="refund", detail=True),
        name="refund-detail",
    ),
]

try:
    from drf_spectacular.views import SpectacularAPIView
except ImportError:  # pragma: no cover - the api-docs extra is not installed
    pass
else:
    urlpatterns.append(path("schema/", SpectacularAPIView.as_view(), name="schema"))
