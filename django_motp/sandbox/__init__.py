"""The sandbox: a faithful fake MOTP gateway for development, demos and tests.

Standard library only; it runs without Django configured::

    python -m django_motp.sandbox --port 8765

or in-process::

    from django_motp.sandbox import SandboxServer, AUTH_CODE_PIN

    with SandboxServer(port=0, pin_delay=0.5) as sandbox:
        ...  # point the client at sandbox.url; steer it with sandbox.state

It serves the gateway's operations at ``ENDPOINTS`` with the spec's answer shapes, scripted
outcomes chosen by the test auth codes below, a control API under ``/_sandbox/`` and a buyer page
at ``/``. See the "Sandbox" section of ``README.rst``.
"""

from .endpoints import ENDPOINTS, OPERATIONS
from .errors import NotFound, Refused
from .faults import FaultKind, When
from .outcomes import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_PAID,
    AUTH_CODE_PIN,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
    AUTH_CODE_USERPAYING,
    AUTH_CODES,
    Outcome,
)
from .server import SandboxServer
from .state import Config, SandboxState

__all__ = [
    "AUTH_CODES",
    "AUTH_CODE_DECLINED",
    "AUTH_CODE_NEVER_PAID",
    "AUTH_CODE_PAID",
    "AUTH_CODE_PIN",
    "AUTH_CODE_REFUND_PROCESSING",
    "AUTH_CODE_REFUND_REFUSED",
    "AUTH_CODE_USERPAYING",
    "ENDPOINTS",
    "OPERATIONS",
    "Config",
    "FaultKind",
    "NotFound",
    "Outcome",
    "Refused",
    "SandboxServer",
    "SandboxState",
    "When",
]
