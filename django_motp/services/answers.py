"""What each gateway answer means: one table per operation, and nothing else decides it.

The services ask the gateway, hand what came back (the answer's ``data`` or the exception) to one
of the functions below, and act on the ``Meaning`` alone.

Status checks (``check_payment``, ``check_refund``); only ``success: true`` answers are evidence:

==========================================================  ==================  ================
answer                                                      payment check       refund check
==========================================================  ==================  ================
``is_success: true``, our numbers, our amount and currency  ``PAID``            ``REFUNDED``
``is_success: true``, another number / amount / currency,   ``MISMATCH``        ``MISMATCH``
or (refund) no number while the payment has several refunds
``is_success: false`` about our order (refund), message     ``NOT_YET``         ``NOT_YET``
in progress (``PENDING_MESSAGES``)
``is_success: false`` about our order (refund), any other   ``NOT_YET``         ``REFUSED``
message (a refund the gateway holds as failed)
``is_success: false`` about another order or refund         ``NO_ANSWER``       ``NO_ANSWER``
``success: false`` saying "not found"                       ``NOT_FOUND``       ``NOT_FOUND``
any other ``success: false`` (SYSTEMERROR, throttling,      ``NO_ANSWER``       ``NO_ANSWER``
a refusal), a refused token, no usable answer
==========================================================  ==================  ================

``NOT_FOUND`` is evidence only about an order or refund the gateway never acknowledged; for one
it did, the caller treats it as ``NO_ANSWER``. ``NO_ANSWER`` never expires a payment, never
fails a refund and never counts a late check. ``MISMATCH`` is logged at ERROR by the caller,
kept as no answer and flagged for a person.

Creating calls (``native_pay``, ``quick_pay``, ``jsapi_pay``, ``refund``): ``creation()``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ..conf import motp_settings
from ..exceptions import MOTPAPIError, MOTPAuthError, MOTPError, MOTPTransportError

#: A ``success: false`` message saying the order (or refund) does not exist at the gateway.
NOT_FOUND = re.compile(r"\b(not found|not exist|does not exist|no such)\b", re.IGNORECASE)


class Meaning(enum.StrEnum):
    PAID = "paid"
    REFUNDED = "refunded"
    NOT_YET = "not_yet"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    MISMATCH = "mismatch"
    NO_ANSWER = "no_answer"
    # Creating calls only:
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    DECLINED = "declined"
    AUTH_FAILED = "auth_failed"


def is_in_progress(message: str) -> bool:
    """Whether a gateway message says "not settled yet": one of ``PENDING_MESSAGES`` as an
    upper-case whole word anywhere ("USERPAYING: ...", "SYSTEMERROR"), or, where the gateway
    writes words, as the message's last word in any case ("Refund processing"). "Error
    processing refund" is not: there the word describes the error."""
    codes = [str(code) for code in motp_settings.PENDING_MESSAGES]
    for code in codes:
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(code)}(?![A-Za-z0-9_])", message):
            return True
    words = re.findall(r"[A-Za-z0-9_]+", message)
    return bool(words) and words[-1].upper() in {code.upper() for code in codes}


def _same_amount(answered: Any, ours: Decimal) -> bool:
    if answered is None:
        return True  # not stated: nothing to contradict
    try:
        return Decimal(str(answered)) == ours
    except (InvalidOperation, ValueError):
        return False


def _same_currency(answered: Any, ours: str) -> bool:
    return answered in (None, "") or str(answered).upper() == ours.upper()


def _refusal(err: MOTPError) -> tuple[Meaning, str]:
    refused = isinstance(err, MOTPAPIError) and not isinstance(err, MOTPAuthError)
    if refused and NOT_FOUND.search(err.message) and not is_in_progress(err.message):
        return Meaning.NOT_FOUND, err.message
    return Meaning.NO_ANSWER, err.message


def payment_status(
    answer: Mapping[str, Any] | MOTPError, *, out_trade_no: str, amount: Decimal, currency: str
) -> tuple[Meaning, str]:
    """What a ``check_payment`` answer (its data, or the error the client raised) says about
    our order; with the message to keep."""
    if isinstance(answer, MOTPError):
        return _refusal(answer)
    message = str(answer.get("message") or "")
    about_ours = answer.get("out_trade_no") == out_trade_no
    if answer.get("is_success") is True:
        trusted = (
            about_ours
            and _same_amount(answer.get("amount"), amount)
            and _same_currency(answer.get("currency"), currency)
        )
        return (Meaning.PAID if trusted else Meaning.MISMATCH), message
    if answer.get("is_success") is False and about_ours:
        return Meaning.NOT_YET, message
    return Meaning.NO_ANSWER, message


def refund_status(
    answer: Mapping[str, Any] | MOTPError,
    *,
    out_trade_no: str,
    out_refund_no: str,
    amount: Decimal,
    currency: str,
    only_refund: bool,
) -> tuple[Meaning, str]:
    """What a ``check_refund`` answer says about our refund. ``only_refund``: the payment has no
    other refund, so an answer naming none can only be about ours."""
    if isinstance(answer, MOTPError):
        return _refusal(answer)
    message = str(answer.get("message") or "")
    answered_no = answer.get("out_refund_no")
    about_ours = answer.get("out_trade_no") in (None, out_trade_no) and (
        answered_no == out_refund_no or (not answered_no and only_refund)
    )
    if answer.get("is_success") is True:
        trusted = (
            about_ours
            and _same_amount(answer.get("amount", answer.get("refund_amount")), amount)
            and _same_currency(answer.get("currency"), currency)
        )
        return (Meaning.REFUNDED if trusted else Meaning.MISMATCH), message
    if answer.get("is_success") is False and about_ours:
        return (Meaning.NOT_YET if is_in_progress(message) else Meaning.REFUSED), message
    return Meaning.NO_ANSWER, message


def creation(answer: Mapping[str, Any] | MOTPError) -> tuple[Meaning, str]:
    """What the answer to a payment or refund call means: ``ACCEPTED`` (a payment paid at once
    when its ``result_code`` is SUCCESS, a refund accepted), ``IN_PROGRESS`` (an in-progress
    code: the buyer is typing a PIN, the wallet is processing), ``DECLINED`` (any other
    refusal), ``AUTH_FAILED`` (our credentials were refused) or ``NO_ANSWER`` (the outcome is
    unknown: never retried blindly, a status check settles it)."""
    if isinstance(answer, MOTPTransportError):
        return Meaning.NO_ANSWER, answer.message
    if isinstance(answer, MOTPAuthError):
        return Meaning.AUTH_FAILED, answer.message
    if isinstance(answer, MOTPError):
        if is_in_progress(answer.message):
            return Meaning.IN_PROGRESS, answer.message
        return Meaning.DECLINED, answer.message
    result = str(answer.get("result_code") or "SUCCESS")
    if result.upper() == "SUCCESS":
        return Meaning.ACCEPTED, str(answer.get("message") or result)
    return Meaning.IN_PROGRESS, result
