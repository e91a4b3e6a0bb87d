"""Refunds: reserving the amount, sending the refund, confirming it, and settling it by hand.

A refund is written (status ``created``, its ``out_refund_no`` fixed, its amount reserved)
under a row lock of its payment before the gateway is called; the call happens outside the
lock; an unknown outcome is resolved by a status check of the same ``out_refund_no``, and the
refund is sent again only when the gateway says it does not have it. A refund fails only on a
definitive refusal, or when the gateway never had it by its deadline; one still unsettled then
keeps its amount reserved, is flagged and checked slowly until the gateway answers or an
operator resolves it (``resolve_refund``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Round
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import hooks, schedule
from ..conf import motp_settings
from ..exceptions import MOTPError
from ..models import Payment, Refund
from . import answers, claims
from .answers import Meaning
from .common import clean_amount, clean_out_no, get_client, short
from .transitions import flag, move, update_if

logger = logging.getLogger("django_motp.services")

MAX_REASON = 255
S = Payment.Status
R = Refund.Status


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
    wanted = None if amount is None else clean_amount(amount, "amount", errors)
    number = clean_out_no(out_refund_no, Refund, "out_refund_no", errors)
    if len(reason or "") > MAX_REASON:
        errors["reason"] = _("The reason can be at most %(max)d characters.") % {"max": MAX_REASON}
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
                next_check_at=now + timedelta(seconds=_call_window()),
            )
            Payment.objects.filter(pk=locked.pk).update(
                reserved_amount=Round(F("reserved_amount") + refund_amount, 2)
            )
            locked.refresh_from_db(fields=["reserved_amount"])
    except IntegrityError as err:
        if Refund.objects.filter(out_refund_no=number).exists():
            raise ValidationError(
                {"out_refund_no": _("%(number)s is already used.") % {"number": number}}
            ) from err
        raise
    _submit_refund(refund)
    hooks.enqueue_check(refund)
    payment.refresh_from_db()
    return refund


def _call_window() -> float:
    return schedule.call_window(motp_settings.TIMEOUT)


def _refundable(locked: Payment, wanted: Decimal | None) -> Decimal:
    """The amount to refund from ``locked`` (row-locked), or ``ValidationError`` saying why not."""
    if locked.status != S.SUCCEEDED:
        raise ValidationError(
            _("Only succeeded payments can be refunded; %(number)s is %(status)s.")
            % {"number": locked.out_trade_no, "status": locked.get_status_display().lower()},
            code="not_refundable",
        )
    if locked.refunds.filter(status__in=(R.CREATED, R.PENDING)).exists():
        raise ValidationError(
            _("A refund of %(number)s is still being processed; refund again once it has settled.")
            % {"number": locked.out_trade_no},
            code="refund_in_progress",
        )
    refundable = locked.refundable_amount
    if refundable <= 0:
        raise ValidationError(
            _("%(number)s has nothing left to refund.") % {"number": locked.out_trade_no},
            code="nothing_left",
        )
    if wanted is not None and wanted > refundable:
        raise ValidationError(
            {
                "amount": _(
                    "At most %(refundable)s %(currency)s can be refunded (paid %(paid)s, "
                    "refunds not failed %(reserved)s)."
                )
                % {
                    "refundable": refundable,
                    "currency": locked.currency,
                    "paid": locked.amount,
                    "reserved": locked.reserved_amount,
                }
            },
            code="too_much",
        )
    return refundable if wanted is None else wanted


def _submit_refund(refund: Refund, *, resend: bool = False) -> None:
    """Send the refund and apply the answer; an unknown outcome leaves it created.

    The refusal of a first send is definitive: it fails. The refusal of a resend may mean the
    first send got through after all ("out_refund_no already used"), so the refund's status is
    asked once more: it fails only if that shows the gateway refused it or does not have it.
    """
    payment = refund.payment
    answer: Mapping[str, Any] | MOTPError
    try:
        answer = get_client().refund(
            store_id=payment.store_id,
            service_id=payment.service_id,
            out_trade_no=payment.out_trade_no,
            out_refund_no=refund.out_refund_no,
            refund_amount=refund.amount,
            reason=refund.reason,
        )
    except MOTPError as err:
        answer = err
    meaning, message = answers.creation(answer)
    if meaning in (Meaning.NO_ANSWER, Meaning.AUTH_FAILED):
        message = message or _("No answer from the gateway")
        update_if(refund, message=short(message), next_check_at=_refund_retry(refund))
    elif meaning is Meaning.IN_PROGRESS:
        _refund_accepted(refund, message)
    elif meaning is Meaning.ACCEPTED:
        if _refund_accepted(refund, short(message or "Accepted")):
            _check_refund(refund)
    elif not resend:
        fail_refund(refund, message)
    else:
        status, status_message = _ask(refund)
        if status in (Meaning.REFUSED, Meaning.NOT_FOUND):
            fail_refund(refund, message)
        elif status in (Meaning.REFUNDED, Meaning.NOT_YET):
            if _refund_accepted(refund, _("Accepted (found by a status check)")):
                _apply(refund, status, status_message)
        else:  # the gateway may have it: no answer, never a failure
            _no_answer(refund, message)


def sync_refund(refund: Refund) -> Refund:
    """Settle the refund one step, for a check asked for by hand (the admin, the API,
    ``motp_sync``): the same claim as the polls (waits a few seconds for a worker holding it,
    then raises ``CheckInProgress``).

    A refund the gateway never acknowledged is asked about first; it is sent again (same
    ``out_refund_no``) only when the gateway says it does not have it, and never while its
    first call may still be in flight. Else its status is checked once and applied. The next
    check is enqueued (after commit) while one is needed. Returns the refund as it now is.

    A refund is succeeded only when a status check about this very ``out_refund_no``, with its
    amount, says so. It fails on a definitive refusal, or at ``REFUND_DEADLINE`` when the
    gateway never had it; one still unsettled then keeps its amount reserved, is flagged
    ``overdue`` and is checked every ``REFUND_MAX_INTERVAL`` s.
    """
    refund.refresh_from_db()
    if refund.is_final:
        return refund
    with claims.held_by_hand(refund):
        return check_refund_claimed(refund)


def check_refund_claimed(refund: Refund) -> Refund:
    """``sync_refund`` for a caller that already holds the row's claim (the polls)."""
    refund.refresh_from_db()
    if refund.status == R.CREATED:
        _resend_refund(refund)
    elif refund.status == R.PENDING:
        _check_refund(refund)
    hooks.enqueue_check(refund)
    return refund


def _resend_refund(refund: Refund) -> None:
    # Its first call may still be on its way (another process is in refund_payment): nothing
    # has been written since the row was (a first call that ended without an answer sets
    # ``message``; so checks made meanwhile leave it alone) and its call window is not over.
    in_flight = not refund.message and (
        timezone.now() < refund.created_at + timedelta(seconds=_call_window())
    )
    status, message = _ask(refund)
    if status in (Meaning.REFUNDED, Meaning.NOT_YET):
        if _refund_accepted(refund, _("Accepted (found by a status check)")):
            _apply(refund, status, message)
    elif status is Meaning.REFUSED:
        fail_refund(refund, message)
    elif in_flight:  # only checked, never resent: ask again later
        update_if(refund, next_check_at=_refund_retry(refund))
    elif status is Meaning.NOT_FOUND:
        assert refund.deadline_at is not None
        if timezone.now() >= refund.deadline_at:
            fail_refund(refund, _("The gateway never had this refund: %(why)s") % {"why": message})
        else:
            _submit_refund(refund, resend=True)
    else:
        _no_answer(refund, message)


def _ask(refund: Refund) -> tuple[Meaning, str]:
    """One status check of this very refund, and what it means (``answers.refund_status``);
    a mismatch is logged, flagged and returned as ``NO_ANSWER``."""
    payment = refund.payment
    answer: Mapping[str, Any] | MOTPError
    try:
        answer = get_client().check_refund(
            payment.store_id, payment.out_trade_no, refund.out_refund_no
        )
    except MOTPError as err:
        answer = err
    meaning, message = answers.refund_status(
        answer,
        out_trade_no=payment.out_trade_no,
        out_refund_no=refund.out_refund_no,
        amount=refund.amount,
        currency=payment.currency,
        only_refund=not payment.refunds.exclude(pk=refund.pk).exists(),
    )
    if meaning is Meaning.MISMATCH:
        logger.error(
            "The gateway's success answer about refund %s does not match it: %r",
            refund.out_refund_no,
            answer,
        )
        flag(refund, Refund.Attention.ANSWER_MISMATCH)
        return Meaning.NO_ANSWER, _("A success answer that does not match this refund")
    return meaning, message


def _check_refund(refund: Refund) -> None:
    status, message = _ask(refund)
    if status is Meaning.NOT_FOUND:
        status = Meaning.NO_ANSWER  # acknowledged: "not found" now is the gateway's problem
    _apply(refund, status, message)


def _apply(refund: Refund, status: Meaning, message: str) -> None:
    """Apply a status check's meaning to a pending refund."""
    if status is Meaning.REFUNDED:
        succeed_refund(refund, message or _("Refunded"))
    elif status is Meaning.REFUSED:
        fail_refund(refund, message)
    elif status is Meaning.NOT_YET:
        _not_refunded_yet(refund, short(message))
    else:
        _no_answer(refund, message)


def _not_refunded_yet(refund: Refund, message: str) -> None:
    assert refund.deadline_at is not None
    now = timezone.now()
    if now < refund.deadline_at:
        later = schedule.next_refund_check(refund.created_at, refund.deadline_at, now)
        update_if(refund, message=message, next_check_at=later)
        return
    _overdue(refund)
    later = now + timedelta(seconds=schedule.REFUND_MAX_INTERVAL)
    update_if(refund, message=message, next_check_at=later)


def _no_answer(refund: Refund, message: str) -> None:
    assert refund.deadline_at is not None
    if timezone.now() >= refund.deadline_at:
        _overdue(refund)
    update_if(refund, message=short(message), next_check_at=_refund_retry(refund))


def _overdue(refund: Refund) -> None:
    """Past its deadline and unsettled: money may still move, so its amount stays reserved; a
    person is told once (flag and WARNING)."""
    if flag(refund, Refund.Attention.OVERDUE):
        logger.warning(
            "Refund %s of %s is still unsettled after its deadline; its amount stays reserved "
            "until the gateway settles it or an operator resolves it",
            refund.out_refund_no,
            refund.amount,
        )


def _refund_accepted(refund: Refund, message: str) -> bool:
    assert refund.deadline_at is not None
    now = timezone.now()
    return move(
        refund,
        R.PENDING,
        {R.CREATED},
        message=short(message),
        next_check_at=schedule.next_refund_check(refund.created_at, refund.deadline_at, now),
    )


def _release(refund: Refund) -> None:
    Payment.objects.filter(pk=refund.payment_id).update(
        reserved_amount=Round(F("reserved_amount") - refund.amount, 2)
    )


def _credit(refund: Refund) -> None:
    Payment.objects.filter(pk=refund.payment_id).update(
        refunded_amount=Round(F("refunded_amount") + refund.amount, 2)
    )


def fail_refund(refund: Refund, message: str, **fields: Any) -> bool:
    moved = move(
        refund,
        R.FAILED,
        {R.CREATED, R.PENDING},
        message=short(message),
        completed_at=timezone.now(),
        next_check_at=None,
        also=lambda: _release(refund),
        **fields,
    )
    refund.payment.refresh_from_db(fields=["reserved_amount", "refunded_amount"])
    return moved


def succeed_refund(refund: Refund, message: str, **fields: Any) -> bool:
    # By hand (``fields`` given) also from created; from the gateway only once it accepted it.
    allowed: set[str] = {R.CREATED, R.PENDING} if fields else {R.PENDING}
    moved = move(
        refund,
        R.SUCCEEDED,
        allowed,
        message=short(message),
        completed_at=timezone.now(),
        next_check_at=None,
        also=lambda: _credit(refund),
        **fields,
    )
    refund.payment.refresh_from_db(fields=["reserved_amount", "refunded_amount"])
    return moved


def _refund_retry(refund: Refund) -> datetime:
    assert refund.deadline_at is not None
    now = timezone.now()
    regular = schedule.next_refund_check(refund.created_at, refund.deadline_at, now)
    if now >= refund.deadline_at:
        return now + timedelta(seconds=schedule.REFUND_MAX_INTERVAL)
    return schedule.retry_without_answer(regular, refund.deadline_at, now)
