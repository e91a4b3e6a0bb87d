"""What every service shares: this thread's gateway client and the checks of the caller's input."""

from __future__ import annotations

import re
import secrets
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Model
from django.utils import timezone
from django.utils.translation import gettext as _

from ..client import MOTPClient
from ..conf import motp_settings
from ..models import MAX_AMOUNT, ApiCall, Payment

#: Merchant order and refund numbers: what WeChat Pay and Alipay accept (the whole text: a
#: trailing newline is not a character the gateway takes).
OUT_NO = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: Buyers' payment codes: 18 digits for WeChat Pay, 16 to 24 for Alipay.
AUTH_CODE = re.compile(r"\d{10,24}")
CENT = Decimal("0.01")

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


def clean_amount(value: Any, field: str, errors: dict[str, str]) -> Decimal | None:
    """``value`` as an amount in cents, or None with the problem added to ``errors[field]``."""
    if isinstance(value, float | bool):
        errors[field] = _("Give the amount as a Decimal or a string such as '19.90', not a float.")
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        errors[field] = _("%(value)r is not an amount.") % {"value": value}
        return None
    if not amount.is_finite() or amount <= 0:
        errors[field] = _("The amount must be more than zero.")
    elif amount > MAX_AMOUNT:
        errors[field] = _("The amount can be at most %(max)s.") % {"max": f"{MAX_AMOUNT:,}"}
    elif amount != amount.quantize(CENT):
        errors[field] = _("%(amount)s has more than two decimals; amounts are in cents.") % {
            "amount": amount
        }
    else:
        return amount.quantize(CENT)
    return None


def clean_out_no(value: str | None, model: type[Model], field: str, errors: dict[str, str]) -> str:
    """A given order or refund number checked (format, not used yet), or a new one."""
    if value is None:
        return new_out_no("P" if model is Payment else "R")
    if not isinstance(value, str) or not OUT_NO.fullmatch(value):
        errors[field] = _("Use 1 to 32 letters, digits, '-' or '_'.")
    elif model._default_manager.filter(**{field: value}).exists():
        errors[field] = _("%(number)s is already used; each number can be used once.") % {
            "number": value
        }
    return value if isinstance(value, str) else ""


def new_out_no(prefix: str) -> str:
    """A fresh 27-character number: prefix, UTC time to the second, 12 random hex digits."""
    return f"{prefix}{timezone.now():%Y%m%d%H%M%S}{secrets.token_hex(6).upper()}"


def short(text: Any) -> str:
    """``text`` cut to fit a ``message`` column."""
    return str(text or "")[:255]
