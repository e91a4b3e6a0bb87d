"""What the admin shows of a payment or refund, computed from the row alone (no query).

Shared by the changelists, the payment page, its live status JSON and the cashier's panel, so
that the page and the script that keeps it fresh always say the same thing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..conf import motp_settings
from ..models import Payment, Refund

S = Payment.Status

#: Method names short enough for a changelist column.
METHOD_SHORT: dict[str, Any] = {
    Payment.Method.NATIVE: _("QR code"),
    Payment.Method.QUICK: _("Payment code"),
    Payment.Method.JSAPI: _("JSAPI"),
}


def money(amount: Decimal | None, currency: str) -> str:
    """``12.30 USD``, localized, always two decimals."""
    if amount is None:
        return "-"
    return f"{number_format(amount, decimal_pos=2)} {currency}"


def badge(status: str, label: Any, *, flagged: bool = False) -> SafeString:
    """A coloured status badge; ``flagged`` adds a marker for rows that need attention."""
    if flagged:
        return format_html(
            '<span class="motp-badge motp-status-{}">{}</span> '
            '<span class="motp-flag" title="{}">!</span>',
            status,
            label,
            gettext("Needs attention"),
        )
    return format_html('<span class="motp-badge motp-status-{}">{}</span>', status, label)


def payment_badge(payment: Payment) -> SafeString:
    return badge(payment.status, payment.get_status_display(), flagged=bool(payment.attention))


def refund_badge(refund: Refund) -> SafeString:
    return badge(refund.status, refund.get_status_display(), flagged=bool(refund.attention))


def refund_state(payment: Payment) -> str:
    """``none``, ``partial`` or ``full``: how much of the payment has been refunded."""
    if payment.refunded_amount <= 0:
        return "none"
    return "full" if payment.refunded_amount >= payment.amount else "partial"


def seconds_left(payment: Payment) -> int | None:
    """Whole seconds until an unsettled payment's deadline (0 once past); None when settled."""
    if payment.is_final or payment.deadline_at is None:
        return None
    return max(0, int((payment.deadline_at - timezone.now()).total_seconds()))


def headline(payment: Payment) -> tuple[str, str]:
    """The cashier's one-word answer and its tone (``paid``, ``declined``, ``waiting`` or
    ``expired``): PAID, DECLINED, WAITING FOR THE BUYER (PIN) ..."""
    if payment.status == S.SUCCEEDED:
        return gettext("PAID"), "paid"
    if payment.status == S.FAILED:
        return gettext("DECLINED"), "declined"
    if payment.status == S.EXPIRED:
        return gettext("EXPIRED: NOT PAID"), "expired"
    if payment.method == Payment.Method.NATIVE:
        return gettext("WAITING FOR THE BUYER TO SCAN"), "waiting"
    return gettext("WAITING FOR THE BUYER (PIN)"), "waiting"


def panel_message(payment: Payment) -> str:
    """The gateway's words worth a cashier's attention: a decline's reason, a payment code's
    "waiting for the PIN", or why a check got no answer; not the "SUCCESS" of a QR code made."""
    if payment.status == S.SUCCEEDED:
        return ""
    if payment.method == Payment.Method.NATIVE and not payment.is_final and payment.qr_code:
        return ""
    return payment.message


def status_data(payment: Payment) -> dict[str, Any]:
    """The live status of a payment, as ``payment/<pk>/status/`` answers it and the page shows
    it: ``status``, ``message``, ``refunded_amount``, ``refundable_amount``, ``next_check_at``
    (the contract), plus what the page needs to redraw itself."""
    title, tone = headline(payment)
    return {
        "status": payment.status,
        "message": payment.message,
        "refunded_amount": payment.refunded_amount,
        "refundable_amount": payment.refundable_amount,
        "next_check_at": payment.next_check_at,
        "status_display": payment.get_status_display(),
        "final": payment.is_final,
        "headline": title,
        "tone": tone,
        "panel_message": panel_message(payment),
        "seconds_left": seconds_left(payment),
        "poll_interval": motp_settings.POLL_INTERVAL,
    }


def mask_auth_code(code: str) -> str:
    """A buyer's payment code as a page may show it: its last four digits only."""
    return "\u2022" * 4 + code[-4:]
