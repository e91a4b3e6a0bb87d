"""Strict validation of request bodies.

``parse_body(content_type, body)`` reads the JSON object of a request, for the gateway and the
control API alike: ``Content-Type: application/json`` and a JSON object, else ``Refused``.

``clean(operation, body, store_id)`` returns the fields of a request, normalized (amounts as
``Decimal`` with two places, ``store_id`` and ``auth_code`` as strings), or raises ``Refused``
with a message naming the offending field. Fields the gateway does not know are ignored, as a
real gateway does. The rules:

- ``service_id``: an integer (not a string, not a boolean), at least 1.
- ``store_id``: a string or an integer equal to the merchant's store id.
- amounts (``amount``, ``refund_amount``): JSON numbers, never strings; greater than 0, at most
  two decimals, at most 9999999999.99.
- ``out_trade_no``, ``out_refund_no``: non-empty strings of at most 64 characters.
- ``sub_store_id``: optional string or integer; ``sub_store_name``: optional string of at most
  64 characters; ``fee_rate``: optional number from 0 to 100; ``reason``: optional string of at
  most 256 characters.
- ``auth_code`` (quick and JSAPI pay; ignored by native pay): 10 to 24 digits, as a string or an
  integer.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

from . import jsonio
from .errors import Refused

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("9999999999.99")
MAX_REFERENCE_LENGTH = 64
MAX_SUB_STORE_NAME_LENGTH = 64
MAX_REASON_LENGTH = 256
AUTH_CODE_DIGITS = (10, 24)

_PAYMENT_FIELDS = ("service_id", "store_id", "amount", "out_trade_no")
_PAYMENT_OPTIONAL = ("sub_store_id", "sub_store_name", "fee_rate")

#: Per operation: (required fields, optional fields).
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "token": (("user", "password"), ()),
    "native_pay": (_PAYMENT_FIELDS, _PAYMENT_OPTIONAL),
    "quick_pay": ((*_PAYMENT_FIELDS, "auth_code"), _PAYMENT_OPTIONAL),
    "jsapi_pay": ((*_PAYMENT_FIELDS, "auth_code"), _PAYMENT_OPTIONAL),
    "refund": (
        ("service_id", "store_id", "refund_amount", "out_trade_no", "out_refund_no"),
        ("reason",),
    ),
    "check_payment": (("store_id", "out_trade_no"), ()),
    "check_refund": (("store_id", "out_trade_no"), ("out_refund_no",)),
}


def _is_integer(value: Any) -> bool:
    # bool is a subclass of int: ``true`` is not a service id.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_integer(value) or isinstance(value, Decimal)


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (list, dict)):
        return "an array" if isinstance(value, list) else "an object"
    return "a number"


def _service_id(value: Any) -> int:
    if not _is_integer(value) or value < 1:
        raise Refused(f"service_id must be a positive integer, not {_kind(value)} {value!r}")
    return int(value)


def _store_id(value: Any, store_id: str) -> str:
    if not (isinstance(value, str) or _is_integer(value)):
        raise Refused(f"store_id must be a string or an integer, not {_kind(value)}")
    if str(value) != store_id:
        raise Refused(f"store_id {value} is not a store of this merchant")
    return store_id


def _amount(name: str, value: Any) -> Decimal:
    if isinstance(value, str):
        raise Refused(f"{name} must be a JSON number such as 1.00, not a string")
    if not _is_number(value):
        raise Refused(f"{name} must be a JSON number such as 1.00, not {_kind(value)}")
    amount = Decimal(value)
    if amount <= 0:
        raise Refused(f"{name} must be greater than 0")
    if amount > MAX_AMOUNT:
        raise Refused(f"{name} must be at most {MAX_AMOUNT}")
    if amount != amount.quantize(CENT):
        raise Refused(f"{name} must have at most 2 decimals")
    return amount.quantize(CENT)


def _reference(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REFERENCE_LENGTH:
        raise Refused(
            f"{name} must be a non-empty string of at most {MAX_REFERENCE_LENGTH} characters"
        )
    return value


def _auth_code(value: Any) -> str:
    low, high = AUTH_CODE_DIGITS
    text = str(value) if _is_integer(value) and value >= 0 else value
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise Refused(f"auth_code is invalid: expected {low} to {high} digits")
    if not low <= len(text) <= high:
        raise Refused(f"auth_code is invalid: expected {low} to {high} digits, got {len(text)}")
    return text


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise Refused(f"{name} must be a string of at most {limit} characters")
    return value


def _sub_store_id(value: Any) -> str | int:
    if _is_integer(value):
        return int(value)
    return _text("sub_store_id", value, MAX_REFERENCE_LENGTH)


def _fee_rate(value: Any) -> Decimal:
    if not _is_number(value) or not 0 <= value <= 100:
        raise Refused("fee_rate must be a number from 0 to 100")
    return Decimal(value)


def _credential(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Refused(f"{name} must be a string")
    return value


#: The rule of each field but ``store_id`` (which needs the merchant's store id).
_RULES: dict[str, Callable[[Any], Any]] = {
    "service_id": _service_id,
    "amount": partial(_amount, "amount"),
    "refund_amount": partial(_amount, "refund_amount"),
    "out_trade_no": partial(_reference, "out_trade_no"),
    "out_refund_no": partial(_reference, "out_refund_no"),
    "auth_code": _auth_code,
    "sub_store_id": _sub_store_id,
    "sub_store_name": partial(_text, "sub_store_name", limit=MAX_SUB_STORE_NAME_LENGTH),
    "fee_rate": _fee_rate,
    "reason": partial(_text, "reason", limit=MAX_REASON_LENGTH),
    "user": partial(_credential, "user"),
    "password": partial(_credential, "password"),
}


def _clean_field(name: str, value: Any, store_id: str) -> Any:
    if name == "store_id":
        return _store_id(value, store_id)
    return _RULES[name](value)


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, lowercase, without parameters ("" if none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(content_type: str | None, body: bytes, *, empty: bool = False) -> dict[str, Any]:
    """The JSON object of a request body.

    Raises ``Refused`` unless the ``Content-Type`` is ``application/json`` and the body a JSON
    object. With ``empty=True`` an empty body (of any type) counts as ``{}``.
    """
    if empty and not body.strip():
        return {}
    if media_type(content_type) != "application/json":
        found = media_type(content_type) or "missing"
        raise Refused(f"Content-Type must be application/json, not {found}")
    try:
        value = jsonio.loads(body)
    except ValueError as error:
        raise Refused(f"The request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise Refused(f"The request body must be a JSON object, not {_kind(value)}")
    return value


def clean(operation: str, body: dict[str, Any], store_id: str) -> dict[str, Any]:
    """The validated fields of ``body`` for ``operation``; raises ``Refused`` naming a bad field.

    Optional fields that are absent or ``null`` are left out of the result.
    """
    required, optional = FIELDS[operation]
    cleaned: dict[str, Any] = {}
    for name in required:
        if body.get(name) in (None, ""):
            raise Refused(f"{name} is required")
        cleaned[name] = _clean_field(name, body[name], store_id)
    for name in optional:
        if body.get(name) is not None:
            cleaned[name] = _clean_field(name, body[name], store_id)
    return cleaned
