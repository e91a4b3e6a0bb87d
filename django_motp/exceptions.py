"""The errors django-motp raises.

``MOTPError`` is the base of everything the gateway (or the road to it) can do wrong:

- ``MOTPAPIError``: the gateway answered ``success: false``; ``.message`` is its text.
- ``MOTPAuthError``: the gateway refused our credentials or token, even after one fresh token.
- ``MOTPTransportError``: no usable answer (timeout, reset, 5xx, HTML page, cut-off JSON). The
  outcome of the call is unknown: a payment may or may not exist. Resolve it with a status check.

``MOTPConfigurationError`` is an ``ImproperlyConfigured`` and stands outside that base: it is a bug
in settings, not something the gateway did.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class MOTPError(Exception):
    """Base class for errors coming from the gateway or the network path to it."""

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        payload: Any = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.payload = payload
        self.operation = operation

    def __str__(self) -> str:
        parts = [self.message or self.__class__.__name__]
        if self.operation:
            parts.append(f"operation={self.operation}")
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        return " ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


class MOTPAPIError(MOTPError):
    """The gateway answered ``success: false``; ``message`` is the gateway's own text."""


class MOTPAuthError(MOTPAPIError):
    """The gateway refused the credentials or the token, even after fetching a fresh token."""


class MOTPTransportError(MOTPError):
    """No usable answer came back, so the outcome of the call is unknown."""


class MOTPConfigurationError(ImproperlyConfigured):
    """``settings.MOTP`` is missing a required key or holds a value that cannot be used."""


class CheckInProgress(MOTPError):
    """A status check asked for by hand found the row being checked by a worker (or another
    person) and did not wait longer; nothing was changed. Try again in a moment."""
