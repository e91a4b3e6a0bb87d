"""The URL path of each gateway operation the sandbox serves.

A copy of ``django_motp.conf.DEFAULT_ENDPOINTS``: ``conf`` imports Django, and the sandbox must
run with the standard library alone. ``tests/test_sandbox.py`` asserts the two stay equal.
"""

from __future__ import annotations

ENDPOINTS: dict[str, str] = {
    "token": "/api/v1/token",
    "native_pay": "/api/v1/native-pay",
    "quick_pay": "/api/v1/quick-pay",
    "jsapi_pay": "/api/v1/jsapi-pay",
    "refund": "/api/v1/refund",
    "check_payment": "/api/v1/check-payment",
    "check_refund": "/api/v1/check-refund",
}

#: Operation names, in the order of ``ENDPOINTS``.
OPERATIONS: tuple[str, ...] = tuple(ENDPOINTS)

#: The operation served at each path.
OPERATION_AT: dict[str, str] = {path: operation for operation, path in ENDPOINTS.items()}
