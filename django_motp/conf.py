"""Lazy access to ``settings.MOTP``.

Every read goes back to ``django.conf.settings``, so ``override_settings`` and
``pytest-django``'s ``settings`` fixture take effect at once. Use the module-level
``motp_settings`` object::

    from django_motp.conf import motp_settings
    motp_settings.BASE_URL          # raises MOTPConfigurationError naming the key if unset
    motp_settings.ENDPOINTS["refund"]

Required keys have no default; reading one that is missing or empty raises
``MOTPConfigurationError`` naming it. ``ENDPOINTS`` given in settings is merged over the defaults,
so a project overrides only the paths its gateway spells differently.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings

from .exceptions import MOTPConfigurationError

REQUIRED = ("BASE_URL", "USERNAME", "PASSWORD")

#: The paths the sandbox serves; the real gateway's paths come from the merchant's onboarding.
DEFAULT_ENDPOINTS: dict[str, str] = {
    "token": "/api/v1/token",
    "native_pay": "/api/v1/native-pay",
    "quick_pay": "/api/v1/quick-pay",
    "jsapi_pay": "/api/v1/jsapi-pay",
    "refund": "/api/v1/refund",
    "check_payment": "/api/v1/check-payment",
    "check_refund": "/api/v1/check-refund",
}

DEFAULTS: dict[str, Any] = {
    "STORE_ID": "",
    "SERVICE_ID": 30,
    "FEE_RATE": Decimal("0"),
    "CURRENCY": "USD",
    "ENDPOINTS": DEFAULT_ENDPOINTS,
    "TIMEOUT": 10,
    "QUICK_PAY_TIMEOUT": 45,
    "POLL_INTERVAL": 3,
    "QUICK_PAY_DEADLINE": 45,
    "NATIVE_PAY_DEADLINE": 7200,
    "REFUND_DEADLINE": 86400,
    "LATE_CHECKS": [60, 300, 1800],
    "TOKEN_TTL": 50,
    # Codes in a ``success: false`` message that mean "not settled yet", not a decline.
    # Matched as whole words, case-sensitively: the gateway's codes are upper case.
    "PENDING_MESSAGES": ["USERPAYING", "SYSTEMERROR", "BANKERROR", "PROCESSING", "PENDING"],
    "LOG_API_CALLS": True,
    # A late success for a reference that another payment already succeeded for: refund it.
    "REFUND_DUPLICATES": True,
    # Delivered signal events are kept this many days (``manage.py motp_purge_events``).
    "EVENT_RETENTION_DAYS": 30,
    # REST API: how long an Idempotency-Key is remembered, and who may call the API.
    "IDEMPOTENCY_KEY_TTL": 86400,
    "API_PERMISSION_CLASSES": ["django_motp.api.permissions.MOTPModelPermissions"],
}

KNOWN_KEYS = frozenset(REQUIRED) | frozenset(DEFAULTS)


def user_settings() -> dict[str, Any]:
    """The ``MOTP`` dict exactly as the project wrote it (empty if absent)."""
    value = getattr(settings, "MOTP", None)
    return value if isinstance(value, dict) else {}


class MotpSettings:
    """Attribute access to ``settings.MOTP`` with defaults, read on every access."""

    def __getattr__(self, name: str) -> Any:
        if name not in KNOWN_KEYS:
            raise AttributeError(f"Unknown MOTP setting {name!r}")
        configured = user_settings()
        if name in REQUIRED:
            value = configured.get(name)
            if value in (None, ""):
                raise MOTPConfigurationError(f"settings.MOTP[{name!r}] is required and is not set.")
            return value
        if name == "ENDPOINTS":
            return {**DEFAULT_ENDPOINTS, **configured.get("ENDPOINTS", {})}
        if name == "FEE_RATE":
            return Decimal(str(configured.get(name, DEFAULTS[name])))
        return configured.get(name, DEFAULTS[name])


motp_settings = MotpSettings()
