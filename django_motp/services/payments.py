"""Taking payments: creating them at the gateway and settling them by status checks.

Call these functions in autocommit mode (not inside ``transaction.atomic``): the row is saved
before the gateway is called so that a crash mid-call loses nothing, and the HTTP call must not
hold a transaction open.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import hooks, schedule
from ..conf import motp_settings
from ..exceptions import MOTPError
from ..models import Payment
from . import answers, claims
from .answers import Meaning
from .common import get_client, payment_fields, short
from .transitions import flag, move, update_if

logger = logging.getLogger("django_motp.services")

S = Payment.Status


def create_native_payment(amount: Any, **options: Any) -> Payment:
    """create_native_payment(amount, *, store_id=None, service_id=None, sub_store_id=None, \
sub_store_name=None, fee_rate=None, out_trade_no=None, reference="", metadata=None)

    Create a payment paid by the buyer scanning a QR code; ``payment.qr_code`` holds it.

    ``amount`` is a ``Decimal`` (or a string or int; never a float) above 0 with at most two
    decimals. ``store_id``, ``service_id`` and ``fee_rate`` (percent charged to the buyer on
    top) default to ``MOTP["STORE_ID"]``, ``MOTP["SERVICE_ID"]`` and ``MOTP["FEE_RATE"]``;
    ``out_trade_no`` is generated when not given (one already used is an error); ``reference``
    (your order's number, say) and ``metadata`` (a JSON object) are yours, kept on the row.

    Returns the payment, pending with ``qr_code`` set (or pending without it when the gateway's
    answer was lost: polling then settles it). Raises ``ValidationError`` for bad input, before
    any HTTP call and without saving anything.
    """
    return _create_payment(Payment.Method.NATIVE, amount, None, **options)


def create_quick_payment(amount: Any, auth_code: str, **options: Any) -> Payment:
    """create_quick_payment(amount, auth_code, *, store_id=None, service_id=None, \
sub_store_id=None, sub_store_name=None, fee_rate=None, out_trade_no=None, reference="", \
metadata=None)

    Charge the buyer's payment code (the cashier scans it); ``auth_code`` is 10 to 24 digits,
    never stored or logged. The other arguments are ``create_native_payment``'s.

    Waits for the gateway's answer, up to ``QUICK_PAY_TIMEOUT`` (the buyer may have to type a
    PIN), and returns the payment succeeded, failed (declined), or pending with polling
    scheduled (still in progress, or the outcome is unknown). Raises ``ValidationError`` for bad
    input, before any HTTP call and without saving anything.
    """
    return _create_payment(Payment.Method.QUICK, amount, auth_code, **options)


def create_jsapi_payment(amount: Any, auth_code: str, **options: Any) -> Payment:
    """create_jsapi_payment(amount, auth_code, *, store_id=None, service_id=None, \
sub_store_id=None, sub_store_name=None, fee_rate=None, out_trade_no=None, reference="", \
metadata=None)

    Like ``create_quick_payment``, through the gateway's JSAPI (in-wallet) operation.
    """
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
    fields = payment_fields(
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
            {"out_trade_no": _("%(number)s is already used.") % {"number": fields["out_trade_no"]}}
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
    answer: Mapping[str, Any] | MOTPError
    try:
        if method == Payment.Method.NATIVE:
            answer = client.native_pay(**request)
        elif method == Payment.Method.QUICK:
            answer = client.quick_pay(**request, auth_code=str(auth_code).strip())
        else:
            answer = client.jsapi_pay(**request, auth_code=str(auth_code).strip())
    except MOTPError as err:
        answer = err
    meaning, message = answers.creation(answer)
    if meaning is not Meaning.NO_ANSWER:  # the gateway has heard of it, whatever it said
        update_if(payment, acknowledged=True)
    if meaning is Meaning.NO_ANSWER:
        # Rule 1: the outcome is unknown, so a status check of this out_trade_no settles it.
        _wait_for_payment(payment, _("No answer from the gateway: %(why)s") % {"why": message})
    elif meaning is Meaning.AUTH_FAILED:
        logger.error("The gateway refused django-motp's credentials: %s", message)
        _fail_payment(payment, _("Gateway authentication failed: %(why)s") % {"why": message})
    elif meaning is Meaning.DECLINED:
        _fail_payment(payment, message)
    elif method == Payment.Method.NATIVE:
        data = answer if isinstance(answer, Mapping) else {}
        _wait_for_payment(payment, message, str(data.get("qr_code") or ""))
    elif meaning is Meaning.ACCEPTED:
        assert isinstance(answer, Mapping)
        _succeed_payment(payment, answer)
    else:
        _wait_for_payment(payment, message)
    if payment.next_check_at is not None:
        hooks.enqueue_check(payment)
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
    move(
        payment,
        S.PENDING,
        {S.CREATED},
        message=short(message),
        qr_code=qr_code,
        deadline_at=payment.deadline_at,
        next_check_at=_next_check(payment, now),
    )


def _fail_payment(payment: Payment, message: str) -> None:
    now = timezone.now()
    move(
        payment,
        S.FAILED,
        {S.CREATED, S.PENDING},
        message=short(message),
        settled_at=now,
        late_checks_done=0,
        next_check_at=schedule.late_check(now, 0),
    )


def _succeed_payment(payment: Payment, data: Mapping[str, Any]) -> bool:
    """Any unpaid status -> succeeded. A late success (after it expired or failed) is flagged,
    in the same transaction, as a double charge when its reference already has a succeeded
    payment, else as a late success; the double charge's refund follows after commit."""
    now = timezone.now()

    def flag_late() -> None:
        if payment.status not in (S.FAILED, S.EXPIRED):
            return
        other = None
        if payment.reference:
            other = (
                Payment.objects.filter(reference=payment.reference, status=S.SUCCEEDED)
                .exclude(pk=payment.pk)
                .order_by("paid_at", "pk")
                .first()
            )
        if other is None:
            flag(payment, Payment.Attention.LATE_SUCCESS, _("Paid after it had expired or failed"))
            return
        note = _("Paid twice: %(other)s was already paid for reference %(reference)s") % {
            "other": other.out_trade_no,
            "reference": payment.reference,
        }
        Payment.objects.filter(pk=payment.pk).update(
            attention=Payment.Attention.DOUBLE_CHARGE, attention_note=note[:255], duplicate_of=other
        )
        payment.attention, payment.attention_note = Payment.Attention.DOUBLE_CHARGE, note[:255]
        payment.duplicate_of = other
        logger.warning("Payment %s: %s", payment.out_trade_no, note)

    moved = move(
        payment,
        S.SUCCEEDED,
        Payment.UNPAID_STATUSES,
        transaction_id=str(data.get("transaction_id") or payment.transaction_id)[:64],
        message=short(data.get("message") or data.get("result_code") or "Paid"),
        paid_at=now,
        settled_at=now,
        next_check_at=None,
        also=flag_late,
    )
    if moved and payment.attention == Payment.Attention.DOUBLE_CHARGE:
        # After the success's own event, so receivers hear of the payment before its refund.
        transaction.on_commit(lambda: refund_double_charge(payment))
    return moved


def refund_double_charge(payment: Payment) -> None:
    """With ``REFUND_DUPLICATES``: refund a double charge in full, at once (``motp_reconcile``
    takes up one whose refund could not be made)."""
    if not motp_settings.REFUND_DUPLICATES:
        return
    from .refunds import refund_payment  # refunds build on payments, not the other way

    other = payment.duplicate_of
    reason = _("Paid twice: %(other)s was already paid for reference %(reference)s") % {
        "other": other.out_trade_no if other else "",
        "reference": payment.reference,
    }
    try:
        refund = refund_payment(payment, reason=reason[:255])
    except Exception:  # the flag stays: a person or motp_reconcile takes it up
        logger.exception("Refunding the double charge %s failed", payment.out_trade_no)
        return
    logger.warning(
        "Refunding the double charge %s in full: refund %s is %s",
        payment.out_trade_no,
        refund.out_refund_no,
        refund.status,
    )


def sync_payment(payment: Payment) -> Payment:
    """Check the payment's status at the gateway once and apply the answer, for a check asked
    for by hand (the admin, the API, ``motp_sync``).

    Takes the same claim as the polls: if a worker is checking the row, waits a few seconds for
    it, then raises ``CheckInProgress`` (nothing changed). A "paid" answer turns any unpaid
    payment succeeded (also a late one, after it expired or failed). "Not paid yet" keeps it
    pending until its deadline, then expires it; for a failed or expired payment it counts the
    late-success checks whose time has come. Any answer that is not evidence (see
    ``services.answers``) changes nothing but ``message`` and the next check time. The next
    check is enqueued (after commit) while one is needed. Returns the payment as it now is.
    """
    payment.refresh_from_db()
    if payment.status == S.SUCCEEDED or (payment.is_final and payment.next_check_at is None):
        return payment  # paid, or all late-success checks are done
    with claims.held_by_hand(payment):
        return check_payment_claimed(payment)


def reconcile_payment(payment: Payment) -> Payment:
    """Check an expired or failed payment once more, by hand, even after its late-success checks
    are over (``motp_reconcile``: a QR code or a slow wallet may settle later still). Raises
    ``CheckInProgress`` like ``sync_payment``. Returns the payment as it now is."""
    payment.refresh_from_db()
    if payment.status == S.SUCCEEDED:
        return payment
    with claims.held_by_hand(payment):
        return check_payment_claimed(payment, after_late_checks=True)


def check_payment_claimed(payment: Payment, *, after_late_checks: bool = False) -> Payment:
    """``sync_payment`` for a caller that already holds the row's claim (the polls)."""
    payment.refresh_from_db()
    if payment.status == S.SUCCEEDED:
        return payment
    if payment.is_final and payment.next_check_at is None and not after_late_checks:
        return payment  # all late-success checks are done
    sent = timezone.now()  # an expiry is judged by when the question was asked
    answer: Mapping[str, Any] | MOTPError
    try:
        answer = get_client().check_payment(payment.store_id, payment.out_trade_no)
    except MOTPError as err:
        answer = err
    meaning, message = answers.payment_status(
        answer, out_trade_no=payment.out_trade_no, amount=payment.amount, currency=payment.currency
    )
    if meaning is Meaning.NOT_FOUND and payment.acknowledged:
        meaning = Meaning.NO_ANSWER  # it had it: "not found" now is the gateway's problem
    if meaning is Meaning.PAID:
        assert isinstance(answer, Mapping)
        _succeed_payment(payment, answer)
    elif meaning in (Meaning.NOT_YET, Meaning.NOT_FOUND):
        _not_paid_yet(payment, short(message or "Not paid"), sent)
    elif meaning is Meaning.MISMATCH:
        logger.error(
            "The gateway's success answer about payment %s does not match it: %r",
            payment.out_trade_no,
            answer,
        )
        flag(payment, Payment.Attention.ANSWER_MISMATCH, short(message))
        _checked_without_answer(payment, _("A success answer that does not match this payment"))
    else:
        _checked_without_answer(payment, message or _("No usable answer"))
    hooks.enqueue_check(payment)
    return payment


def _not_paid_yet(payment: Payment, message: str, sent: datetime) -> None:
    now = timezone.now()
    if payment.status in (S.CREATED, S.PENDING):
        assert payment.deadline_at is not None
        if sent >= payment.deadline_at:
            move(
                payment,
                S.EXPIRED,
                {S.CREATED, S.PENDING},
                message=message,
                settled_at=now,
                late_checks_done=0,
                next_check_at=schedule.late_check(now, 0),
            )
        else:
            update_if(payment, message=message, next_check_at=_next_check(payment, now))
    else:  # failed or expired: a late-success check, counted once its offset has come
        assert payment.settled_at is not None
        done = max(payment.late_checks_done, schedule.due_late_checks(payment.settled_at, sent))
        update_if(
            payment,
            late_checks_done=done,
            next_check_at=schedule.late_check(payment.settled_at, done),
        )


def _checked_without_answer(payment: Payment, message: str) -> None:
    """A check that got no usable answer: try again later; a deadline alone never settles it."""
    now = timezone.now()
    if payment.status in (S.CREATED, S.PENDING):
        at = schedule.retry_without_answer(_next_check(payment, now), payment.deadline_at, now)
        update_if(payment, message=short(message), next_check_at=at)
    else:  # a late-success check that could not be made: it is not counted as done
        update_if(payment, next_check_at=schedule.retry_without_answer(now, None, now))
