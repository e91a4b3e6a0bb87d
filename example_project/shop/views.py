"""The buyer's pages: the checkout, the order (QR code, then the receipt) and its status.

The shop creates the payment server-side with ``create_native_payment`` (its ``reference`` is
the order number) and shows its QR code; the page then follows the order through the shop's own
status endpoint (see ``shop.progress`` for why not the MOTP REST API). A buyer sees only the
orders placed from their browser session; staff who may view orders see any.
"""

from __future__ import annotations

from typing import Any

import segno
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from django_motp import services
from django_motp.exceptions import MOTPError

from .forms import CheckoutForm, describe, total_of
from .models import Order
from .progress import Progress

SESSION_KEY = "shop_orders"


def _remember(request: HttpRequest, order: Order) -> None:
    numbers = request.session.get(SESSION_KEY, [])
    request.session[SESSION_KEY] = [*numbers, order.number][-50:]


def _order_for(request: HttpRequest, number: str) -> Order:
    """The order, if this browser placed it or the user is staff allowed to view orders."""
    order = get_object_or_404(Order, number=number)
    if number in request.session.get(SESSION_KEY, []) or request.user.has_perm("shop.view_order"):
        return order
    raise Http404(_("No such order."))


def _start_payment(request: HttpRequest, order: Order) -> None:
    """Ask the gateway for a QR code. Runs outside any transaction: django-motp commits the
    payment before it calls the gateway (a view under ATOMIC_REQUESTS would need
    ``@transaction.non_atomic_requests``)."""
    try:
        services.create_native_payment(
            order.total, reference=order.number, metadata={"order": order.number}
        )
    except (ValidationError, MOTPError) as error:
        messages.error(request, _("The payment could not be started: %(error)s") % {"error": error})


@require_http_methods(["GET", "POST"])
def checkout(request: HttpRequest) -> HttpResponse:
    form = CheckoutForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        lines = form.lines()
        order = Order.objects.create(
            items=lines, description=describe(lines), total=total_of(lines)
        )
        _remember(request, order)
        _start_payment(request, order)
        return redirect("shop:order", number=order.number)
    return render(request, "shop/checkout.html", {"form": form})


@never_cache
@require_GET
def order_page(request: HttpRequest, number: str) -> HttpResponse:
    order = _order_for(request, number)
    progress = Progress.of(order)
    context: dict[str, Any] = {"order": order, "progress": progress}
    if progress.awaiting_scan:
        assert progress.current is not None
        qr = segno.make(progress.current.qr_code, error="m")
        context["qr_svg"] = mark_safe(  # segno escapes nothing it did not generate
            qr.svg_inline(scale=6, border=2, dark="#1d1d1f", omitsize=True)
        )
        if settings.DEBUG:
            # The demo's "phone": the sandbox's buyer page pays pending QR codes.
            context["sandbox_url"] = settings.MOTP["BASE_URL"].rstrip("/") + "/"
    return render(request, "shop/order.html", context)


@require_POST
def order_pay(request: HttpRequest, number: str) -> HttpResponse:
    """A new QR code for an open order whose last one expired or failed."""
    order = _order_for(request, number)
    if Progress.of(order).can_retry:
        _start_payment(request, order)
    return redirect("shop:order", number=order.number)


@never_cache
@require_GET
def order_status(request: HttpRequest, number: str) -> JsonResponse:
    """Where the order stands, for the page's script: status, payments and refunds (amounts as
    strings), ``state`` (reload when it changes) and ``settled`` (stop asking)."""
    order = _order_for(request, number)
    return JsonResponse(Progress.of(order).as_json())
