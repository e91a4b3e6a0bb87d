"""System checks for ``settings.MOTP``.

- ``django_motp.E001``: a required key (``BASE_URL``, ``USERNAME``, ``PASSWORD``) is missing
  or empty.
- ``django_motp.E002``: a value is malformed (a ``BASE_URL`` that is not http(s), a negative or
  non-numeric interval, an unknown endpoint name, ...).
- ``django_motp.W001``: ``BASE_URL`` points at the local sandbox while ``DEBUG`` is False.
- ``django_motp.W002``: ``settings.MOTP`` holds a key django-motp does not know (likely a typo).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import DEFAULT_ENDPOINTS, KNOWN_KEYS, REQUIRED, user_settings

#: Settings that are durations in seconds: the key and whether zero is allowed.
DURATIONS = {
    "TIMEOUT": False,
    "QUICK_PAY_TIMEOUT": False,
    "POLL_INTERVAL": False,
    "QUICK_PAY_DEADLINE": False,
    "NATIVE_PAY_DEADLINE": False,
    "REFUND_DEADLINE": False,
    "TOKEN_TTL": True,
}

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _malformed(key: str, problem: str, hint: str) -> Error:
    return Error(f"settings.MOTP[{key!r}] {problem}.", hint=hint, id="django_motp.E002")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _check_values(conf: dict[str, Any]) -> list[Error]:
    errors: list[Error] = []
    base_url = conf.get("BASE_URL")
    if base_url:
        parts = urlsplit(str(base_url))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(
                _malformed(
                    "BASE_URL",
                    f"is {base_url!r}, not an http(s) URL",
                    "Use the gateway's address, e.g. 'https://gateway.example.com'.",
                )
            )
    for key, zero_ok in DURATIONS.items():
        if key not in conf:
            continue
        value = conf[key]
        if not _is_number(value) or value < 0 or (value == 0 and not zero_ok):
            bound = "zero or more" if zero_ok else "more than zero"
            errors.append(_malformed(key, f"is {value!r}", f"Give a number of seconds, {bound}."))
    if "LATE_CHECKS" in conf:
        value = conf["LATE_CHECKS"]
        if not isinstance(value, list | tuple) or not all(_is_number(v) and v > 0 for v in value):
            errors.append(
                _malformed(
                    "LATE_CHECKS",
                    f"is {value!r}",
                    "Give a list of seconds after expiry, e.g. [60, 300, 1800].",
                )
            )
    if "ENDPOINTS" in conf:
        value = conf["ENDPOINTS"]
        if not isinstance(value, dict):
            errors.append(
                _malformed("ENDPOINTS", "is not a dict", "Map operation names to URL paths.")
            )
        else:
            unknown = sorted(set(value) - set(DEFAULT_ENDPOINTS))
            if unknown:
                errors.append(
                    _malformed(
                        "ENDPOINTS",
                        f"names unknown operations {unknown}",
                        f"Known operations: {', '.join(DEFAULT_ENDPOINTS)}.",
                    )
                )
            bad = sorted(k for k, v in value.items() if not isinstance(v, str) or not v)
            if bad:
                errors.append(
                    _malformed(
                        "ENDPOINTS",
                        f"has empty or non-string paths for {bad}",
                        "Give each a path.",
                    )
                )
    if "FEE_RATE" in conf:
        value = conf["FEE_RATE"]
        try:
            rate = Decimal(str(value))
            valid = not isinstance(value, bool) and Decimal(0) <= rate <= Decimal(100)
        except (InvalidOperation, ValueError):
            valid = False
        if not valid:
            errors.append(
                _malformed("FEE_RATE", f"is {value!r}", "Give a percentage from 0 to 100.")
            )
    if "SERVICE_ID" in conf and (
        not isinstance(conf["SERVICE_ID"], int) or isinstance(conf["SERVICE_ID"], bool)
    ):
        errors.append(
            _malformed(
                "SERVICE_ID",
                f"is {conf['SERVICE_ID']!r}",
                "Give the integer service id.",
            )
        )
    if "CURRENCY" in conf and not (
        isinstance(conf["CURRENCY"], str) and len(conf["CURRENCY"]) == 3
    ):
        errors.append(
            _malformed(
                "CURRENCY",
                f"is {conf['CURRENCY']!r}",
                "Give an ISO code such as 'USD'.",
            )
        )
    if "REFUND_DUPLICATES" in conf and not isinstance(conf["REFUND_DUPLICATES"], bool):
        errors.append(
            _malformed(
                "REFUND_DUPLICATES",
                f"is {conf['REFUND_DUPLICATES']!r}",
                "Give True (refund a double charge at once) or False (only flag it).",
            )
        )
    if "EVENT_RETENTION_DAYS" in conf:
        value = conf["EVENT_RETENTION_DAYS"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            errors.append(
                _malformed("EVENT_RETENTION_DAYS", f"is {value!r}", "Give whole days, 0 or more.")
            )
    if "PENDING_MESSAGES" in conf:
        value = conf["PENDING_MESSAGES"]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            errors.append(
                _malformed(
                    "PENDING_MESSAGES",
                    f"is {value!r}",
                    "Give a list of non-empty strings.",
                )
            )
    return errors


@register(Tags.compatibility)
def check_motp_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    conf = user_settings()
    messages: list[Error | Warning] = []
    missing = [key for key in REQUIRED if conf.get(key) in (None, "")]
    if missing:
        messages.append(
            Error(
                f"settings.MOTP is missing {', '.join(missing)}.",
                hint="Set them in the MOTP dict in your settings; see the README's settings "
                "reference.",
                id="django_motp.E001",
            )
        )
    messages.extend(_check_values(conf))
    base_url = conf.get("BASE_URL")
    if base_url and not settings.DEBUG:
        host = urlsplit(str(base_url)).hostname or ""
        if host in LOOPBACK_HOSTS or host.startswith("127."):
            messages.append(
                Warning(
                    f"settings.MOTP['BASE_URL'] is {base_url!r}, the local sandbox, while "
                    "DEBUG is False.",
                    hint="Point BASE_URL at the real gateway before taking real payments.",
                    id="django_motp.W001",
                )
            )
    unknown = sorted(set(conf) - KNOWN_KEYS)
    if unknown:
        messages.append(
            Warning(
                f"settings.MOTP has unknown keys {unknown}.",
                hint=f"Known keys: {', '.join(sorted(KNOWN_KEYS))}.",
                id="django_motp.W002",
            )
        )
    return messages
