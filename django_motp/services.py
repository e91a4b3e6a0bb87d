"""Taking and refunding payments: the only code that calls the gateway and changes states.

Every state change is one conditional UPDATE (``filter(pk=..., status=<the status read>)``); only
the caller whose UPDATE changed the row sends the signals, after commit. So each transition and
its signals happen exactly once, whatever races with other threads, workers or retries.

Call these functions in autocommit mode (not inside ``transaction.atomic``): the row is saved
before the gateway is called so that a crash mid-call loses nothing, and the HTTP call must not
hold a transaction open.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Model
from django.db.models.functions import Round
from django.utils import timezone

from . import schedule, signals
from .client import MOTPClient
from .conf import motp_settings
from .exceptions import MOTPAPIError, MOTPAuthError, MOTPTransportError
from .models import MAX_AMOUNT, ApiCall, Payment, Refund

logger = logging.getLogger(__name__)

#: Merchant order and refund numbers: what WeChat Pay and Alipay accept.
OUT_NO = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
#: Buyers' payment codes: 18 digits for WeChat Pay, 16 to 24 for Alipay.
AUTH_CODE = re.compile(r"^\d{10,24}$")
MAX_SUB_STORE_NAME = 64
MAX_REFERENCE = 255
MAX_REASON = 255
CENT = Decimal("0.01")

S = Payment.Status
R = Refund.Status
M = TypeVar("M", Payment, Refund)

__all__ = [
    "claim_check",
    "claim_due",
    "create_jsapi_payment",
    "create_native_payment",
    "create_quick_payment",
    "get_client",
    "refund_payment",
    "sync_payment",
    "sync_refund",
]


# The client -----------------------------------------------------------------------------------

_local = threading.local()


def get_client() -> MOTPClient:
    """This thread's gateway client for the current settings, rebuilt when they change.

    One per thread keeps connection pooling without sharing a ``requests.Session`` across
    threads; calls are written to the API call log when ``LOG_API_CALLS`` is on.
    """
    s = motp_settings
    key = (
        s.BASE_URL,
        s.USERNAME,
        s.PASSWORD,
        tuple(sorted(s.ENDPOINTS.items())),
        s.TIMEOUT,
        s.QUICK_PAY_TIMEOUT,
        s.TOKEN_TTL,
        s.LOG_API_CALLS,
    )
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].close()
        on_call = ApiCall.record if s.LOG_API_CALLS else None
        _local.client = (key, MOTPClient.from_settings(on_call=on_call))
    return _local.client[1]


# Validation -----------------------------------------------------------------------------------


def _clean_amount(value: Any, field: str, errors: dict[str, str]) -> Decimal | None:
    if isinstance(value, float | bool):
        errors[field] = "Give the amount as a Decimal or a string such as '19.90', not a float."
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        errors[field] = f"{value!r} is not an amount."
        return None
    if not amount.is_finite() or amount <= 0:
        errors[field] = "The amount must be more than zero."
    elif amount > MAX_AMOUNT:
        errors[field] = f"The amount can be at most {MAX_AMOUNT:,}."
    elif amount != amount.quantize(CENT):
        errors[field] = f"{amount} has more than two decimals; amounts are in cents."
    else:
        return amount.quantize(CENT)
    return None


def _clean_out_no(value: str | None, model: type[Model], field: str, errors: dict[str, str]) -> str:
    if value is None:
        return _new_out_no("P" if model is Payment else "R")
    if not isinstance(value, str) or not OUT_NO.match(value):
        errors[field] = "Use 1 to 32 letters, digits, '-' or '_'."
    elif model._default_manager.filter(**{field: value}).exists():
        errors[field] = f"{value} is already used; each number can be used once."
    return value or ""


def _new_out_no(prefix: str) -> str:
    """A fresh 27-character number: prefix, UTC time to the second, 12 random hex digits."""
    return f"{prefix}{timezone.now():%Y%m%d%H%M%S}{secrets.token_hex(6).upper()}"


def _payment_fields(
    method: str,
    amount: Any,
    auth_code: str | None,
    *,
    store_id: str | None,
    service_id: int | None,
    sub_store_id: str | int | None,
    sub_store_name: str | None,
    fee_rate: Any,
    out_trade_no: str | None,
    reference: str,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The new payment's fields, or ``ValidationError`` listing every problem."""
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {"method": method, "currency": motp_settings.CURRENCY}
    fields["amount"] = _clean_amount(amount, "amount", errors)
    if method != Payment.Method.NATIVE:
        code = "" if auth_code is None else str(auth_code).strip()
        if not AUTH_CODE.match(code):
            errors["auth_code"] = (
                "The payment code must be 10 to 24 digits; scan the buyer's code again."
            )
    fields["store_id"] = str(store_id or motp_settings.STORE_ID or "")
    if not fields["store_id"]:
        errors["store_id"] = "No store id: pass store_id or set MOTP['STORE_ID']."
    elif len(fields["store_id"]) > 32:
        errors["store_id"] = "The store id can be at most 32 characters."
    service = motp_settings.SERVICE_ID if service_id is None else service_id
    if not isinstance(service, int) or isinstance(service, bool) or service <= 0:
        errors["service_id"] = "The service id must be a positive whole number."
    fields["service_id"] = service
    fields["sub_store_id"] = "" if sub_store_id is None else str(sub_store_id)
    if len(fields["sub_store_id"]) > 64:
        errors["sub_store_id"] = "The sub store id can be at most 64 characters."
    fields["sub_store_name"] = sub_store_name or ""
    if len(fields["sub_store_name"]) > MAX_SUB_STORE_NAME:
        errors["sub_store_name"] = (
            f"The sub store name can be at most {MAX_SUB_STORE_NAME} characters; "
            f"it has {len(fields['sub_store_name'])}."
        )
    rate = motp_settings.FEE_RATE if fee_rate is None else fee_rate
    try:
        rate = Decimal(str(rate))
        if isinstance(fee_rate, float) or not (0 <= rate <= 100) or rate != rate.quantize(CENT):
            raise ValueError
        fields["fee_rate"] = rate
    except (InvalidOperation, ValueError):
        errors["fee_rate"] = "The fee rate is a percentage from 0 to 100 with at most two decimals."
    fields["out_trade_no"] = _clean_out_no(out_trade_no, Payment, "out_trade_no", errors)
    if len(reference or "") > MAX_REFERENCE:
        errors["reference"] = f"The reference can be at most {MAX_REFERENCE} characters."
    fields["reference"] = reference or ""
    try:
        fields["metadata"] = dict(metadata or {})
        DjangoJSONEncoder().encode(fields["metadata"])
    except (TypeError, ValueError):
        errors["metadata"] = "Metadata must be a dict of JSON values."
    if errors:
        raise ValidationError(errors)
    return fields


# Transitions ----------------------------------------------------------------------------------

_SIGNALS: dict[tuple[type[Model], str], signals.Signal] = {
    (Payment, S.SUCCEEDED): signals.payment_succeeded,
    (Payment, S.FAILED): signals.payment_failed,
    (Payment, S.EXPIRED): signals.payment_expired,
    (Refund, R.SUCCEEDED): signals.refund_succeeded,
    (Refund, R.FAILED): signals.refund_failed,
}


def _announce(obj: Payment | Refund, old: str, new: str) -> None:
    """Send the transition's signals; a receiver that raises is logged, never propagated."""
    model = type(obj)
    name = "payment" if model is Payment else "refund"
    changed = signals.payment_status_changed if model is Payment else signals.refund_status_changed
    results = changed.send_robust(sender=model, **{name: obj}, old_status=old, new_status=new)
    specific = _SIGNALS.get((model, new))
    if specific is not None:
        results += specific.send_robust(sender=model, **{name: obj})
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "Receiver %r of the %s %s -> %s signal raised",
                receiver,
                obj,
                old,
                new,
                exc_info=(type(result), result, result.__traceback__),
            )


def _transition(
    obj: M,
    new: str,
    *,
    also: Callable[[], Any] | None = None,
    **fields: Any,
) -> bool:
    """Move ``obj`` from the status it was read with to ``new``, in one conditional UPDATE.

    Returns False (and changes nothing) if the row is no longer in that status. ``also`` runs in
    the same transaction, only when the row changed. The signals go out after commit.
    """
    old = obj.status
    with transaction.atomic():
        changed = (
            type(obj)
            ._default_manager.filter(pk=obj.pk, status=old)
            .update(status=new, updated_at=timezone.now(), **fields)
        )
        if not changed:
            return False
        if also is not None:
            also()
        obj.status = new
        for name, value in fields.items():
            setattr(obj, name, value)
        transaction.on_commit(lambda: _announce(obj, old, new))
    return True


def _move(obj: M, new: str, allowed: frozenset[str] | set[str], **fields: Any) -> bool:
    """``_transition`` from whatever unsettled status ``obj`` is in now, re-reading on a race.

    Statuses only move forward, so a few rounds always settle it: False means another caller
    moved the row to a status not in ``allowed`` (and sent that transition's signals).
    """
    also = fields.pop("also", None)
    for _ in range(5):
        if obj.status not in allowed:
            return False
        if _transition(obj, new, also=also, **fields):
            return True
        obj.refresh_from_db()
    return False


def _update_if(obj: M, **fields: Any) -> bool:
    """Change non-status fields if the row is still in the status it was read with."""
    changed = (
        type(obj)
        ._default_manager.filter(pk=obj.pk, status=obj.status)
        .update(updated_at=timezone.now(), **fields)
    )
    if changed:
        for name, value in fields.items():
            setattr(obj, name, value)
    return bool(changed)


def _is_pending_message(message: str) -> bool:
    """Whether a refusal is one of the gateway's in-progress codes (``PENDING_MESSAGES``), matched
    as whole words and case-sensitively: "USERPAYING: ..." is, "Error processing refund" is not."""
    return any(
        re.search(rf"(?<![A-Z0-9_]){re.escape(code)}(?![A-Z0-9_])", message)
        for code in motp_settings.PENDING_MESSAGES
    )


def _short(text: Any) -> str:
    return str(text or "")[:255]


# Payments -------------------------------------------------------------------------------------


def create_native_payment(amount: Any, **options: Any) -> Payment:
    """Create a payment paid by the buyer scanning a QR code; ``payment.qr_code`` holds it.

    Returns the payment, pending with ``qr_code`` set (or pending without it when the gateway's
    answer was lost: polling then settles it). Raises ``ValidationError`` for bad input, before
    any HTTP call and without saving anything.
    """
    return _create_payment(Payment.Method.NATIVE, amount, None, **options)


def create_quick_payment(amount: Any, auth_code: str, **options: Any) -> Payment:
    """Charge the buyer's payment code (the cashier scans it).

    Waits for the gateway's answer, up to ``QUICK_PAY_TIMEOUT`` (the buyer may have to type a
    PIN), and returns the payment succeeded, failed (declined), or pending with polling
    scheduled (still in progress, or the outcome is unknown). Raises ``ValidationError`` for bad
    input, before any HTTP call and without saving anything.
    """
    return _create_payment(Payment.Method.QUICK, amount, auth_code, **options)


def create_jsapi_payment(amount: Any, auth_code: str, **options: Any) -> Payment:
    """Like ``create_quick_payment``, through the gateway's JSAPI (in-wallet) operation."""
    return _create_payment(Payment.Method.JSAPI, amount, auth_code, **options)


def _create_payment(
    method: str,
    amount: Any,
    auth_code: str | None,
    *,
    store_id: str | None = None,
    service_id: int | None = None,
    sub_store_id: str | int | None = None,
    sub_store_name: str | None = None,
    fee_rate: Any = None,
    out_trade_no: str | None = None,
    reference: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Payment:
    fields = _payment_fields(
        method,
        amount,
        auth_code,
        store_id=store_id,
        service_id=service_id,
        sub_store_id=sub_store_id,
        sub_store_name=sub_store_name,
        fee_rate=fee_rate,
        out_trade_no=out_trade_no,
        reference=reference,
        metadata=metadata,
    )
    client = get_client()  # a configuration error surfaces here, before anything is saved
    now = timezone.now()
    call_timeout = client.quick_pay_timeout if method != Payment.Method.NATIVE else client.timeout
    # If this process dies mid-call, the sweep checks the row once the call must have ended.
    call_ended = now + timedelta(seconds=schedule.call_window(call_timeout))
    try:
        with transaction.atomic(durable=True):  # committed before the gateway hears of it
            payment = Payment.objects.create(
                **fields,
                status=S.CREATED,
                created_at=now,
                deadline_at=schedule.payment_deadline(method, call_ended),
                next_check_at=call_ended,
            )
    except IntegrityError as err:  # the same out_trade_no, created a moment ago elsewhere
        raise ValidationError(
            {"out_trade_no": f"{fields['out_trade_no']} is already used."}
        ) from err

    request: dict[str, Any] = {
        "store_id": payment.store_id,
        "service_id": payment.service_id,
        "amount": payment.amount,
        "out_trade_no": payment.out_trade_no,
        "sub_store_id": payment.sub_store_id or None,
        "sub_store_name": payment.sub_store_name or None,
        "fee_rate": payment.fee_rate,
    }
    try:
        if method == Payment.Method.NATIVE:
            data = client.native_pay(**request)
        elif method == Payment.Method.QUICK:
            data = client.quick_pay(**request, auth_code=str(auth_code).strip())
        else:
            data = client.jsapi_pay(**request, auth_code=str(auth_code).strip())
    except MOTPTransportError as err:
        # Rule 1: the outcome is unknown, so a status check of this out_trade_no settles it.
        _wait_for_payment(payment, f"No answer from the gateway: {err.message}")
    except MOTPAuthError as err:
        logger.error("The gateway refused django-motp's credentials: %s", err)
        _fail_payment(payment, f"Gateway authentication failed: {err.message}")
    except MOTPAPIError as err:
        if _is_pending_message(err.message):
            _wait_for_payment(payment, err.message)
        else:
            _fail_payment(payment, err.message)
    else:
        result = str(data.get("result_code") or "SUCCESS").upper()
        if method == Payment.Method.NATIVE:
            _wait_for_payment(
                payment, data.get("message") or result, str(data.get("qr_code") or "")
            )
        elif result == "SUCCESS":
            _succeed_payment(payment, data)
        else:
            _wait_for_payment(payment, result)
    if payment.next_check_at is not None:
        _enqueue_poll(payment)
    return payment


def _next_check(payment: Payment, now: datetime) -> datetime:
    assert payment.deadline_at is not None
    return schedule.next_payment_check(payment.method, payment.created_at, payment.deadline_at, now)


def _wait_for_payment(payment: Payment, message: str, qr_code: str = "") -> None:
    """Created -> pending: the gateway has not settled it yet, or we did not hear how it did.

    The deadline counts from now, when the call is over: the buyer gets the whole
    ``QUICK_PAY_DEADLINE`` (or ``NATIVE_PAY_DEADLINE``) after it, whatever the call took.
    """
    now = timezone.now()
    clock = payment.method
    if payment.method == Payment.Method.NATIVE and not qr_code:
        clock = Payment.Method.QUICK  # nobody can pay a QR code that never reached the shop
    payment.deadline_at = schedule.payment_deadline(clock, now)
    _move(
        payment,
        S.PENDING,
        {S.CREATED},
        message=_short(message),
        qr_code=qr_code,
        deadline_at=payment.deadline_at,
        next_check_at=_next_check(payment, now),
    )


def _fail_payment(payment: Payment, message: str) -> None:
    now = timezone.now()
    _move(
        payment,
        S.FAILED,
        {S.CREATED, S.PENDING},
        message=_short(message),
        settled_at=now,
        late_checks_done=0,
        next_check_at=schedule.late_check(now, 0),
    )


def _succeed_payment(payment: Payment, data: Mapping[str, Any]) -> None:
    now = timezone.now()
    _move(
        payment,
        S.SUCCEEDED,
        Payment.UNPAID_STATUSES,
        transaction_id=str(data.get("transaction_id") or payment.transaction_id)[:64],
        message=_short(data.get("message") or data.get("result_code") or "Paid"),
        paid_at=now,
        settled_at=now,
        next_check_at=None,
    )


def sync_payment(payment: Payment) -> Payment:
    """Check the payment's status at the gateway once and apply the answer.

    A "paid" answer turns any unpaid payment succeeded (also a late one, after it expired or
    failed). "Not paid yet" keeps it pending until its deadline, then expires it; for a failed or
    expired payment it counts the late-success checks whose time has come. A transport or auth
    error changes nothing but ``message`` and the next check time. The next check is enqueued
    (after commit) while one is needed. Returns the payment as it now is.
    """
    payment.refresh_from_db()
    if payment.status == S.SUCCEEDED:
        return payment
    if payment.is_final and payment.next_check_at is None:
        return payment  # all late-success checks are done
    try:
        data = get_client().check_payment(payment.store_id, payment.out_trade_no)
    except (MOTPTransportError, MOTPAuthError) as err:
        data = {"no_answer": err.message}
    except MOTPAPIError as err:  # e.g. "order not found": not paid, as far as the gateway knows
        data = {"is_success": False, "message": err.message}
    answered_no = data.get("out_trade_no")
    if "no_answer" in data:
        _checked_without_answer(payment, data["no_answer"])
    elif answered_no and answered_no != payment.out_trade_no:
        _checked_without_answer(payment, f"The gateway answered about {answered_no}")
    elif data.get("is_success") is True:
        _succeed_payment(payment, data)
    else:
        _not_paid_yet(payment, _short(data.get("message") or "Not paid"))
    _enqueue_poll(payment)
    return payment


def _not_paid_yet(payment: Payment, message: str) -> None:
    now = timezone.now()
    if payment.status in (S.CREATED, S.PENDING):
        assert payment.deadline_at is not None
        if now >= payment.deadline_at:
            _move(
                payment,
                S.EXPIRED,
                {S.CREATED, S.PENDING},
                message=message,
                settled_at=now,
                late_checks_done=0,
                next_check_at=schedule.late_check(now, 0),
            )
        else:
            _update_if(payment, message=message, next_check_at=_next_check(payment, now))
    else:  # failed or expired: a late-success check, counted once its offset has come
        assert payment.settled_at is not None
        done = max(payment.late_checks_done, schedule.due_late_checks(payment.settled_at, now))
        _update_if(
            payment,
            late_checks_done=done,
            next_check_at=schedule.late_check(payment.settled_at, done),
        )


def _checked_without_answer(payment: Payment, message: str) -> None:
    """A check that got no usable answer: try again later; a deadline alone never settles it."""
    now = timezone.now()
    if payment.status in (S.CREATED, S.PENDING):
        at = schedule.retry_without_answer(_next_check(payment, now), payment.deadline_at, now)
        _update_if(payment, message=_short(message), next_check_at=at)
    else:  # a late-success check that could not be made: it is not counted as done
        _update_if(payment, next_check_at=schedule.retry_without_answer(now, None, now))


# Refunds --------------------------------------------------------------------------------------


def refund_payment(
    payment: Payment,
    amount: Any = None,
    *,
    reason: str = "",
    out_refund_no: str | None = None,
    requested_by: Any = None,
) -> Refund:
    """Refund ``amount`` of a succeeded payment (None: everything still refundable).

    The refund is written, and its amount reserved, under a row lock of the payment before the
    gateway is called; the call happens outside the lock. An accepted refund is confirmed with a
    refund status check at once; if it is still processing, or the outcome is unknown, polling
    settles it. Raises ``ValidationError`` if the payment is not succeeded, the amount is not
    refundable, or another refund of the payment is still unsettled (the gateway's refund status
    check is only sure to answer about a payment's latest refund), before any HTTP call and
    without saving anything.
    """
    errors: dict[str, str] = {}
    wanted = None if amount is None else _clean_amount(amount, "amount", errors)
    number = _clean_out_no(out_refund_no, Refund, "out_refund_no", errors)
    if len(reason or "") > MAX_REASON:
        errors["reason"] = f"The reason can be at most {MAX_REASON} characters."
    if errors:
        raise ValidationError(errors)
    get_client()  # a configuration error surfaces here, before anything is saved
    now = timezone.now()
    try:
        with transaction.atomic(durable=True):  # committed before the gateway hears of it
            locked = Payment.objects.select_for_update().get(pk=payment.pk)
            refund_amount = _refundable(locked, wanted)
            refund = Refund.objects.create(
                payment=locked,
                out_refund_no=number,
                amount=refund_amount,
                reason=reason or "",
                requested_by=requested_by,
                status=R.CREATED,
                created_at=now,
                deadline_at=schedule.refund_deadline(now),
                next_check_at=now + timedelta(seconds=schedule.call_window(motp_settings.TIMEOUT)),
            )
            Payment.objects.filter(pk=locked.pk).update(
                reserved_amount=Round(F("reserved_amount") + refund_amount, 2)
            )
            locked.refresh_from_db(fields=["reserved_amount"])
    except IntegrityError as err:
        if Refund.objects.filter(out_refund_no=number).exists():
            raise ValidationError({"out_refund_no": f"{number} is already used."}) from err
        raise
    _submit_refund(refund)
    _enqueue_poll(refund)
    payment.refresh_from_db()
    return refund


def _refundable(locked: Payment, wanted: Decimal | None) -> Decimal:
    """The amount to refund from ``locked`` (row-locked), or ``ValidationError`` saying why not."""
    if locked.status != S.SUCCEEDED:
        raise ValidationError(
            f"Only succeeded payments can be refunded; {locked.out_trade_no} is "
            f"{locked.get_status_display().lower()}.",
            code="not_refundable",
        )
    if locked.refunds.filter(status__in=(R.CREATED, R.PENDING)).exists():
        raise ValidationError(
            f"A refund of {locked.out_trade_no} is still being processed; refund again once it "
            "has settled.",
            code="refund_in_progress",
        )
    refundable = locked.refundable_amount
    if refundable <= 0:
        raise ValidationError(
            f"{locked.out_trade_no} has nothing left to refund.", code="nothing_left"
        )
    if wanted is not None and wanted > refundable:
        raise ValidationError(
            {
                "amount": f"At most {refundable} {locked.currency} can be refunded "
                f"(paid {locked.amount}, refunds not failed {locked.reserved_amount})."
            },
            code="too_much",
        )
    return refundable if wanted is None else wanted


def _submit_refund(refund: Refund, *, resend: bool = False) -> None:
    """Send the refund and apply the answer; an unknown outcome leaves it created, to resend.

    A refusal of a resend may mean the first send got through after all ("out_refund_no already
    used"), so the refund's status is asked once more: it fails unless that says it succeeded or
    is in progress.
    """
    payment = refund.payment
    try:
        data = get_client().refund(
            store_id=payment.store_id,
            service_id=payment.service_id,
            out_trade_no=payment.out_trade_no,
            out_refund_no=refund.out_refund_no,
            refund_amount=refund.amount,
            reason=refund.reason,
        )
    except (MOTPTransportError, MOTPAuthError) as err:
        _update_if(refund, message=_short(err.message), next_check_at=_refund_retry(refund))
        return
    except MOTPAPIError as err:
        if _is_pending_message(err.message):
            _refund_accepted(refund, err.message)
        elif not resend:
            _fail_refund(refund, err.message)
        elif (status := _ask_refund_status(refund)) is not None:
            got_through = status.get("out_refund_no") == refund.out_refund_no and (
                status.get("is_success") is True
                or _is_pending_message(str(status.get("message") or ""))
            )
            if not got_through:
                _fail_refund(refund, err.message)
            elif _refund_accepted(refund, "Accepted (found by a status check)"):
                _apply_refund_status(refund, status)
        return
    if _refund_accepted(refund, _short(data.get("result_code") or "Accepted")):
        _check_refund(refund)


def _resend_refund(refund: Refund) -> None:
    """A refund the gateway never acknowledged: the first send may have got through, so ask
    about it first, and send it again (same ``out_refund_no``) only when the gateway says it
    does not have it: a refusal of the check, or an answer about another refund."""
    data = _ask_refund_status(refund)
    if data is None:
        return
    answered_no = data.get("out_refund_no")
    if answered_no == refund.out_refund_no:
        if _refund_accepted(refund, "Accepted (found by a status check)"):
            _apply_refund_status(refund, data)
    elif answered_no or data.get("refused"):
        _submit_refund(refund, resend=True)
    else:  # an answer naming no refund says nothing about ours: ask again later
        _update_if(refund, message=_short(data.get("message")), next_check_at=_refund_retry(refund))


def _ask_refund_status(refund: Refund) -> Mapping[str, Any] | None:
    """One status check of this very refund: the answer's data (``refused`` and ``is_success``
    False with the gateway's message when it refused the check, e.g. "refund not found"), or
    None when no usable answer came, the next try then scheduled."""
    payment = refund.payment
    try:
        return get_client().check_refund(
            payment.store_id, payment.out_trade_no, refund.out_refund_no
        )
    except (MOTPTransportError, MOTPAuthError) as err:
        message = err.message
    except MOTPAPIError as err:
        if not _is_pending_message(err.message):
            return {"refused": True, "is_success": False, "message": err.message}
        message = err.message  # "SYSTEMERROR" and the like: no answer either
    _update_if(refund, message=_short(message), next_check_at=_refund_retry(refund))
    return None


def _refund_accepted(refund: Refund, message: str) -> bool:
    assert refund.deadline_at is not None
    now = timezone.now()
    return _move(
        refund,
        R.PENDING,
        {R.CREATED},
        message=_short(message),
        next_check_at=schedule.next_refund_check(refund.created_at, refund.deadline_at, now),
    )


def _fail_refund(refund: Refund, message: str) -> None:
    def release() -> None:
        Payment.objects.filter(pk=refund.payment_id).update(
            reserved_amount=Round(F("reserved_amount") - refund.amount, 2)
        )

    _move(
        refund,
        R.FAILED,
        {R.CREATED, R.PENDING},
        message=_short(message),
        completed_at=timezone.now(),
        next_check_at=None,
        also=release,
    )
    refund.payment.refresh_from_db(fields=["reserved_amount", "refunded_amount"])


def _succeed_refund(refund: Refund, message: str) -> None:
    def credit() -> None:
        Payment.objects.filter(pk=refund.payment_id).update(
            refunded_amount=Round(F("refunded_amount") + refund.amount, 2)
        )

    _move(
        refund,
        R.SUCCEEDED,
        {R.PENDING},
        message=_short(message),
        completed_at=timezone.now(),
        next_check_at=None,
        also=credit,
    )
    refund.payment.refresh_from_db(fields=["reserved_amount", "refunded_amount"])


def _refund_retry(refund: Refund) -> datetime:
    assert refund.deadline_at is not None
    now = timezone.now()
    regular = schedule.next_refund_check(refund.created_at, refund.deadline_at, now)
    return schedule.retry_without_answer(regular, refund.deadline_at, now)


def sync_refund(refund: Refund) -> Refund:
    """Settle the refund one step: if the gateway never acknowledged it, find out whether it has
    it and resend it if not (same ``out_refund_no``); else check its status once and apply the
    answer. The next check is enqueued (after commit) while one is needed. Returns the refund as
    it now is.

    A refund is succeeded only when a status check about this very ``out_refund_no`` says so.
    It fails when the gateway refuses it, or at ``REFUND_DEADLINE`` when the gateway no longer
    calls it in progress; one still processing then keeps its amount reserved and is checked on.
    """
    refund.refresh_from_db()
    if refund.status == R.CREATED:
        _resend_refund(refund)
    elif refund.status == R.PENDING:
        _check_refund(refund)
    _enqueue_poll(refund)
    return refund


def _check_refund(refund: Refund) -> None:
    data = _ask_refund_status(refund)
    if data is not None:
        _apply_refund_status(refund, data)


def _apply_refund_status(refund: Refund, data: Mapping[str, Any]) -> None:
    assert refund.deadline_at is not None
    now = timezone.now()
    message = _short(data.get("message"))
    answered_no = data.get("out_refund_no")
    if answered_no and answered_no != refund.out_refund_no:
        _update_if(
            refund,
            message=_short(f"The gateway answered about refund {answered_no}"),
            next_check_at=_refund_retry(refund),
        )
    elif data.get("is_success") is True:
        _succeed_refund(refund, message or "Refunded")
    elif now < refund.deadline_at:
        later = schedule.next_refund_check(refund.created_at, refund.deadline_at, now)
        _update_if(refund, message=message, next_check_at=later)
    elif _is_pending_message(message):
        # Money may still move: keep the amount reserved and keep asking, slowly.
        logger.warning("Refund %s is still in progress after its deadline", refund.out_refund_no)
        later = now + timedelta(seconds=schedule.REFUND_MAX_INTERVAL)
        _update_if(refund, message=message, next_check_at=later)
    else:
        _fail_refund(refund, f"Not refunded by its deadline: {message or 'no reason given'}")


# Polling --------------------------------------------------------------------------------------


def claim_check(model: type[M], pk: int, due: datetime | None) -> M | None:
    """Take the check of a row that is due, so one worker and only one makes it.

    ``due`` is the ``next_check_at`` the caller was scheduled for; None means "whatever is due
    now". The claim moves ``next_check_at`` a lease ahead in one conditional UPDATE: a duplicate
    delivery, a second worker or an older schedule then finds nothing to claim, and a worker that
    dies holding the claim is relieved by the sweep when the lease runs out. Returns the row, or
    None when there is nothing to do.
    """
    now = timezone.now()
    obj = model._default_manager.filter(pk=pk).first()
    if obj is None or obj.next_check_at is None:
        return None
    if due is None:
        if obj.next_check_at > now:
            return None
        due = obj.next_check_at
    lease = now + timedelta(seconds=claim_lease())
    claimed = model._default_manager.filter(pk=pk, next_check_at=due).update(next_check_at=lease)
    if not claimed:
        return None
    obj.next_check_at = lease
    return obj


def claim_due(model: type[Payment] | type[Refund], limit: int) -> tuple[list[int], datetime]:
    """Claim up to ``limit`` rows whose check is due, for the sweep. Returns their ids and the
    ``next_check_at`` (lease) they now carry, which the polls they are handed to claim in turn.

    A short transaction with ``SELECT ... FOR UPDATE SKIP LOCKED`` so that concurrent sweeps
    split the rows between them; no lock is held across an HTTP call.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=claim_lease())
    unsettled = [s for s in model.Status.values if s != model.Status.SUCCEEDED]
    with transaction.atomic():
        pks = list(
            model._default_manager.select_for_update(skip_locked=True)
            .filter(status__in=unsettled, next_check_at__lte=now)
            .order_by("next_check_at")
            .values_list("pk", flat=True)[:limit]
        )
        # Conditional: a poll may have claimed one of them since the SELECT (SQLite has no FOR
        # UPDATE), and then it is that poll's.
        model._default_manager.filter(pk__in=pks, next_check_at__lte=now).update(
            next_check_at=lease
        )
        pks = list(
            model._default_manager.filter(pk__in=pks, next_check_at=lease).values_list(
                "pk", flat=True
            )
        )
    return pks, lease


def claim_lease() -> float:
    """Seconds a claimed check may take before the sweep hands it to someone else: room for two
    gateway calls with their token fetches and retries (a refund's status check, then its
    resend). Polls are killed before it runs out (``tasks.enqueue_poll``), so no two workers
    ever hold the same check."""
    return 2 * schedule.call_window(motp_settings.TIMEOUT) + float(motp_settings.POLL_INTERVAL)


def _enqueue_poll(obj: Payment | Refund) -> None:
    from .tasks import enqueue_poll

    transaction.on_commit(lambda: enqueue_poll(obj))
