"""What every service shares: this thread's gateway client and the checks of the caller's input."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from ..client import MOTPClient
from ..conf import motp_settings
from ..models import MAX_AMOUNT, ApiCall, Payment

#: Merchant order and refund numbers: what WeChat Pay and Alipay accept (the whole text: a
#: trailing newline is not a character the gateway takes).
OUT_NO = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: Buyers' payment codes: 18 digits for WeChat Pay, 16 to 24 for Alipay. ASCII digits only:
#: ``\d`` would take Arabic-Indic or full-width digits, which no wallet's code has.
AUTH_CODE = re.compile(r"[0-9]{10,24}")
CENT = Decimal("0.01")
MAX_SUB_STORE_NAME = 64
#: The largest service id a ``PositiveIntegerField`` holds on every database.
MAX_SERVICE_ID = 2**31 - 1
MAX_REFERENCE = 255

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
        errors[field] = _("The amount can be at most %(max)s.") % {
            "max": number_format(MAX_AMOUNT, decimal_pos=2, force_grouping=True)
        }
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


def payment_fields(
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
    fields["amount"] = clean_amount(amount, "amount", errors)
    if method != Payment.Method.NATIVE:
        code = "" if auth_code is None else str(auth_code).strip()
        if not AUTH_CODE.fullmatch(code):
            errors["auth_code"] = _(
                "The payment code must be 10 to 24 digits; scan the buyer's code again."
            )
    fields["store_id"] = str(store_id or motp_settings.STORE_ID or "")
    if not fields["store_id"]:
        errors["store_id"] = _("No store id: pass store_id or set MOTP['STORE_ID'].")
    elif len(fields["store_id"]) > 32:
        errors["store_id"] = _("The store id can be at most 32 characters.")
    service = motp_settings.SERVICE_ID if service_id is None else service_id
    if not isinstance(service, int) or isinstance(service, bool) or service <= 0:
        errors["service_id"] = _("The service id must be a positive whole number.")
    elif service > MAX_SERVICE_ID:
        errors["service_id"] = _("The service id can be at most %(max)s.") % {"max": MAX_SERVICE_ID}
    fields["service_id"] = service
    fields["sub_store_id"] = "" if sub_store_id is None else str(sub_store_id)
    if len(fields["sub_store_id"]) > 64:
        errors["sub_store_id"] = _("The sub store id can be at most 64 characters.")
    fields["sub_store_name"] = sub_store_name or ""
    if len(fields["sub_store_name"]) > MAX_SUB_STORE_NAME:
        errors["sub_store_name"] = _(
            "The sub store name can be at most %(max)d characters; it has %(length)d."
        ) % {"max": MAX_SUB_STORE_NAME, "length": len(fields["sub_store_name"])}
    rate = motp_settings.FEE_RATE if fee_rate is None else fee_rate
    try:
        rate = Decimal(str(rate))
        if isinstance(fee_rate, float) or not (0 <= rate <= 100) or rate != rate.quantize(CENT):
            raise ValueError
        fields["fee_rate"] = rate
    except (InvalidOperation, ValueError):
        errors["fee_rate"] = _(
            "The fee rate is a percentage from 0 to 100 with at most two decimals."
        )
    fields["out_trade_no"] = clean_out_no(out_trade_no, Payment, "out_trade_no", errors)
    if len(reference or "") > MAX_REFERENCE:
        errors["reference"] = _("The reference can be at most %(max)d characters.") % {
            "max": MAX_REFERENCE
        }
    fields["reference"] = reference or ""
    try:
        fields["metadata"] = dict(metadata or {})
        encoded = DjangoJSONEncoder().encode(fields["metadata"])
    except (TypeError, ValueError):
        errors["metadata"] = _("Metadata must be a dict of JSON values.")
    else:
        if "\\u0000" in encoded:  # PostgreSQL stores no NUL character, in text or in JSON
            errors["metadata"] = _("Metadata may not contain NUL characters.")
    for name in ("reference", "sub_store_id", "sub_store_name"):
        if "\x00" in fields[name]:
            errors[name] = _("This may not contain NUL characters.")
    if errors:
        raise ValidationError(errors)
    return fields
