"""Refusals: what the sandbox answers with ``success: false`` and a message.

Gateway operations answer every ``Refused`` with HTTP 200, as the gateway does. The control API
maps ``NotFound`` to 404, ``Conflict`` to 409 and any other ``Refused`` to 400. ``Stopped`` is
no refusal: the server drops the request it interrupts.
"""

from __future__ import annotations


class Refused(Exception):
    """The request is refused; ``message`` is the human text put in ``data.message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(Refused, LookupError):
    """The order or refund named in the request does not exist."""


class Conflict(Refused):
    """The order or refund exists but is in a state that does not allow the request."""


class Unauthorized(Refused):
    """Wrong credentials, or a missing, unknown or expired token.

    The gateway answers it with the configured ``auth_failure_status`` (401 by default).
    """


class Stopped(Exception):
    """The server stopped while the request waited: it is dropped without an answer."""
