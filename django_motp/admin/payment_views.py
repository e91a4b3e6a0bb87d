"""The payment admin's own pages: take a payment, its live status, check now, refund.

Each view takes the ``PaymentAdmin`` first. They call the services, which refuse to run inside
``transaction.atomic``, so ``PaymentAdmin.get_urls`` marks them ``non_atomic_requests`` (also
under ``ATOMIC_REQUESTS``); each re-checks its own permission (``admin_view`` checks only that
the user is staff) and answers 403 without it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import MOTPError
from ..forms import RefundForm, TakePaymentForm, apply_service_errors
from ..models import Payment, Refund
from .display import mask_auth_code, money, status_data
from .outcomes import Outcomes

if TYPE_CHECKING:
    from .payments import PaymentAdmin

S = Payment.Status
R = Refund.Status
#: Most rows an action moves money for at once (each one is a gateway call while the page waits).
MAX_ACTION_ROWS = 100


def render(
    model_admin: PaymentAdmin, request: HttpRequest, template: str, title: Any, **context: Any
) -> TemplateResponse:
    """An admin page of ours, with the site's header, sidebar and breadcrumbs."""
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.opts,
            "title": title,
            **context,
        },
    )


def payment_url(payment: Payment) -> str:
    return reverse("admin:django_motp_payment_change", args=[payment.pk])


def _payment(model_admin: PaymentAdmin, request: HttpRequest, object_id: str) -> Payment:
    payment = get_object_or_404(Payment, pk=object_id)
    if not model_admin.has_view_permission(request, payment):
        raise PermissionDenied
    return payment


# Taking a payment -----------------------------------------------------------------------------


def take_payment(model_admin: PaymentAdmin, request: HttpRequest) -> HttpResponse:
    """``payment/add/``: the cashier's form. A QR code payment goes to its page (the QR code, big);
    a payment code waits for the gateway, then its page shows PAID, DECLINED or WAITING."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    form = TakePaymentForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            payment = _create(data["method"], data["amount"], data["auth_code"], form)
        except ValidationError as err:
            apply_service_errors(form, err)  # nothing was saved, nothing was sent
        else:
            model_admin.log_addition(request, payment, [{"added": {}}])
            _report_new_payment(model_admin, request, payment, data["auth_code"])
            return HttpResponseRedirect(payment_url(payment))
    return render(
        model_admin,
        request,
        "django_motp/admin/take_payment.html",
        _("Take a payment"),
        form=form,
        add=True,
    )


def _create(method: str, amount: Decimal, auth_code: str, form: TakePaymentForm) -> Payment:
    options = form.service_options()
    if method == Payment.Method.NATIVE:
        return services.create_native_payment(amount, **options)
    if method == Payment.Method.QUICK:
        return services.create_quick_payment(amount, auth_code, **options)
    return services.create_jsapi_payment(amount, auth_code, **options)


def _report_new_payment(
    model_admin: PaymentAdmin, request: HttpRequest, payment: Payment, auth_code: str
) -> None:
    values = {
        "amount": money(payment.buyer_total, payment.currency),
        "number": payment.out_trade_no,
        "code": mask_auth_code(auth_code) if auth_code else "",
        "message": payment.message,
    }
    if payment.method == Payment.Method.NATIVE:
        text, level = gettext("Show the QR code to the buyer: %(amount)s."), messages.INFO
    elif payment.status == S.SUCCEEDED:
        text = gettext("Paid: %(amount)s from payment code %(code)s (%(number)s).")
        level = messages.SUCCESS
    elif payment.status == S.FAILED:
        text = gettext("Declined: %(message)s (payment code %(code)s, %(number)s).")
        level = messages.ERROR
    else:
        text = gettext(
            "Waiting for the buyer (payment code %(code)s): this page shows the result as soon "
            "as the gateway has it."
        )
        level = messages.WARNING
    model_admin.message_user(request, text % values, level)


# Live status and checking ---------------------------------------------------------------------


def payment_status(model_admin: PaymentAdmin, request: HttpRequest, object_id: str) -> JsonResponse:
    """``payment/<pk>/status/``: the payment's live status as JSON (needs ``view_payment``)."""
    payment = _payment(model_admin, request, object_id)
    return JsonResponse(status_data(payment))


def check_payment(model_admin: PaymentAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """``payment/<pk>/check/`` (POST): one status check with the gateway, the result in a
    message."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    payment = _payment(model_admin, request, object_id)
    old = payment.get_status_display()
    try:
        payment = services.sync_payment(payment)
    except MOTPError as err:  # e.g. CheckInProgress: a worker is checking it right now
        model_admin.message_user(request, err.message or str(err), messages.WARNING)
    else:
        values = {"old": old, "new": payment.get_status_display(), "message": payment.message}
        if payment.get_status_display() != old:
            text = gettext("Checked with the gateway: %(old)s → %(new)s (%(message)s).")
            model_admin.message_user(request, text % values, messages.SUCCESS)
        else:
            text = gettext("Checked with the gateway: still %(new)s (%(message)s).")
            model_admin.message_user(request, text % values, messages.INFO)
    return HttpResponseRedirect(payment_url(payment))


def check_many(model_admin: PaymentAdmin, request: HttpRequest, queryset: Any) -> None:
    """The "Check status with the gateway" action: one check per payment, one message per
    outcome."""
    payments = _limited(model_admin, request, queryset)
    if payments is None:
        return
    outcomes = Outcomes()
    for payment in payments:
        try:
            payment = services.sync_payment(payment)
        except MOTPError as err:
            outcomes.add("warning", gettext("Not checked"), f"{payment.out_trade_no}: {err}")
            continue
        level = "success" if payment.status == S.SUCCEEDED else "info"
        if payment.status in (S.FAILED, S.EXPIRED):
            level = "warning"
        heading = gettext("Checked, now %(status)s") % {"status": payment.get_status_display()}
        outcomes.add(level, heading, payment.out_trade_no)
    outcomes.report(model_admin, request)


def _limited(model_admin: PaymentAdmin, request: HttpRequest, queryset: Any) -> list[Any] | None:
    """The selected rows, or None (and an error message) when there are too many for one go."""
    rows = list(queryset[: MAX_ACTION_ROWS + 1])
    if len(rows) > MAX_ACTION_ROWS:
        too_many(model_admin, request)
        return None
    return rows


def too_many(model_admin: Any, request: HttpRequest) -> None:
    """Say that an action was refused because too many rows were selected."""
    model_admin.message_user(
        request,
        gettext("Select at most %(max)d rows at once; nothing was done.")
        % {"max": MAX_ACTION_ROWS},
        messages.ERROR,
    )


# Refunds --------------------------------------------------------------------------------------


def refund(model_admin: PaymentAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """``payment/<pk>/refund/`` (needs ``refund_payment``): refund part or all of a payment."""
    payment = _payment(model_admin, request, object_id)
    if not model_admin.has_refund_permission(request):
        raise PermissionDenied
    form = RefundForm(
        request.POST if request.method == "POST" else None,
        initial={"amount": payment.refundable_amount},
    )
    if request.method == "POST" and form.is_valid():
        try:
            made = services.refund_payment(
                payment,
                form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                requested_by=request.user,
            )
        except ValidationError as err:
            apply_service_errors(form, err)  # nothing was saved, nothing was sent
        else:
            text = _refund_message(made)
            model_admin.log_change(request, payment, text)
            levels: dict[str, int] = {R.SUCCEEDED: messages.SUCCESS, R.FAILED: messages.ERROR}
            level = levels.get(made.status, messages.INFO)
            model_admin.message_user(request, text, level)
            return HttpResponseRedirect(payment_url(payment))
    unsettled = payment.refunds.filter(status__in=(R.CREATED, R.PENDING))
    return render(
        model_admin,
        request,
        "django_motp/admin/refund_form.html",
        gettext("Refund %(number)s") % {"number": payment.out_trade_no},
        form=form,
        original=payment,
        unsettled=list(unsettled),
        refundable=money(payment.refundable_amount, payment.currency),
        paid=money(payment.amount, payment.currency),
        refunded=money(payment.refunded_amount, payment.currency),
    )


def _refund_message(made: Refund) -> str:
    values = {
        "number": made.out_refund_no,
        "amount": money(made.amount, made.payment.currency),
        "message": made.message,
    }
    if made.status == R.SUCCEEDED:
        return gettext("Refunded %(amount)s (refund %(number)s).") % values
    if made.status == R.FAILED:
        return gettext("Refund %(number)s of %(amount)s was refused: %(message)s") % values
    if made.status == R.PENDING:
        return (
            gettext(
                "Refund %(number)s of %(amount)s was accepted; the gateway has not confirmed it "
                "yet, it is checked until it does."
            )
            % values
        )
    return (
        gettext(
            "Refund %(number)s of %(amount)s: no answer from the gateway yet (%(message)s); it "
            "is tried again with the same number."
        )
        % values
    )


def refund_in_full(model_admin: PaymentAdmin, request: HttpRequest) -> HttpResponse:
    """``payment/refund-in-full/?ids=1,2``: the "Refund in full" action's confirmation page,
    listing every payment and amount; its POST refunds each one and reports every outcome."""
    if not model_admin.has_refund_permission(request):
        raise PermissionDenied
    params = request.POST if request.method == "POST" else request.GET
    ids = [pk for pk in params.get("ids", "").split(",") if pk.isdigit()][:MAX_ACTION_ROWS]
    payments = list(Payment.objects.filter(pk__in=ids).order_by("-created_at"))
    changelist = reverse("admin:django_motp_payment_changelist")
    if not payments:
        return HttpResponseRedirect(changelist)
    if request.method == "POST":
        outcomes = Outcomes()
        reason = params.get("reason", "")[:255]
        for payment in payments:
            _refund_one(payment, reason, request, model_admin, outcomes)
        outcomes.report(model_admin, request)
        return HttpResponseRedirect(changelist)
    total = sum((p.refundable_amount for p in payments), Decimal("0"))
    currencies = {p.currency for p in payments}
    return render(
        model_admin,
        request,
        "django_motp/admin/refund_in_full.html",
        _("Refund in full"),
        payments=payments,
        ids=",".join(str(p.pk) for p in payments),
        total=money(total, currencies.pop()) if len(currencies) == 1 else None,
    )


def _refund_one(
    payment: Payment,
    reason: str,
    request: HttpRequest,
    model_admin: PaymentAdmin,
    outcomes: Outcomes,
) -> None:
    try:
        made = services.refund_payment(payment, None, reason=reason, requested_by=request.user)
    except ValidationError as err:
        outcomes.add("error", gettext("Not refunded"), f"{payment.out_trade_no}: {_text(err)}")
        return
    except MOTPError as err:
        outcomes.add("error", gettext("Gateway error"), f"{payment.out_trade_no}: {err}")
        return
    model_admin.log_change(request, payment, _refund_message(made))
    item = f"{payment.out_trade_no} ({money(made.amount, payment.currency)})"
    if made.status == R.SUCCEEDED:
        outcomes.add("success", gettext("Refunded in full"), item)
    elif made.status == R.FAILED:
        outcomes.add("error", gettext("Refund refused"), f"{item}: {made.message}")
    elif made.status == R.PENDING:
        outcomes.add("info", gettext("Refund accepted, not confirmed yet"), item)
    else:  # no answer: it is sent again with the same number until the gateway answers
        heading = gettext("No answer from the gateway yet, it is tried again")
        outcomes.add("warning", heading, f"{item}: {made.message}")


def _text(error: ValidationError) -> str:
    return " ".join(str(message) for message in error.messages)
