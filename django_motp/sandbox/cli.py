"""The command line of the sandbox: ``python -m django_motp.sandbox`` and its options.

``manage.py motp_sandbox`` shares the options (``add_arguments``) and the serving (``serve``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import Refused
from .faults import parse_rate
from .server import SandboxServer
from .state import RUNTIME_OPTIONS, Config, parse_seconds

DEFAULT_PORT = 8765


def _number(parse: Callable[[Decimal], float]) -> Callable[[str], float]:
    """An argparse type: the option's text as a number, checked by ``parse`` (the parser of the
    control API's bodies, so both take the same values).
    """

    def convert(text: str) -> float:
        try:
            value = Decimal(text)
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite():
            raise argparse.ArgumentTypeError("must be a number")
        try:
            return parse(value)
        except Refused as error:
            raise argparse.ArgumentTypeError(error.message) from None

    return convert


_fault_rate = _number(parse_rate)
_seconds = _number(lambda value: parse_seconds("the value", value))


def _http_status(text: str) -> int:
    status = int(text)
    if not 200 <= status <= 599:
        raise argparse.ArgumentTypeError("must be an HTTP status from 200 to 599")
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to ``parser``.

    ``--username``, ``--password`` and ``--store-id`` default to None so that a caller can fill
    them from elsewhere (the management command reads ``settings.MOTP``); see ``server_options``.
    """
    defaults = Config()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (default: %(default)s)")
    add("--username", help=f"merchant user the token call accepts (default: {defaults.username})")
    add("--password", help=f"its password (default: {defaults.password})")
    add("--store-id", help=f"the merchant's store id (default: {defaults.store_id})")
    add(
        "--token-ttl",
        type=_seconds,
        default=defaults.token_ttl,
        metavar="SECONDS",
        help="how long a token lives (default: %(default)s)",
    )
    add(
        "--legacy-token",
        action="store_true",
        help='answer the token call with the older {"status": "SUCCESS", "msg": token} shape',
    )
    add(
        "--auth-failure-status",
        type=_http_status,
        metavar="STATUS",
        default=defaults.auth_failure_status,
        help="HTTP status of a bad token or bad credentials (default: %(default)s; 200 mimics "
        "a gateway that says so only in the body)",
    )
    add(
        "--pin-delay",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.pin_delay,
        help="seconds a PIN payment holds its call (default: %(default)s)",
    )
    add(
        "--pay-delay",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.pay_delay,
        help="seconds until a USERPAYING payment is paid (default: %(default)s)",
    )
    add(
        "--refund-delay",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.refund_delay,
        help="seconds a PROCESSING refund takes (default: %(default)s)",
    )
    add(
        "--slow-delay",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.slow_delay,
        help='seconds a "slow" fault delays an answer (default: %(default)s)',
    )
    add(
        "--latency",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.latency,
        help="seconds added to every gateway answer, like a gateway far away "
        "(default: %(default)s)",
    )
    add(
        "--fault-rate",
        type=_fault_rate,
        metavar="RATE",
        default=defaults.fault_rate,
        help="probability, 0 to 1, of a random fault on each gateway call (default: %(default)s)",
    )
    add(
        "--verbose",
        action="store_true",
        help="log each request line and status (never a header or a body)",
    )


def server_options(values: Mapping[str, Any], **fallback: Any) -> dict[str, Any]:
    """The ``SandboxServer`` options from parsed arguments.

    ``fallback`` may give ``username``, ``password`` and ``store_id`` to use when the command
    line does not; without either, the sandbox's defaults apply.
    """
    options: dict[str, Any] = {name: values[name] for name in (*RUNTIME_OPTIONS, "fault_rate")}
    for name in ("username", "password", "store_id"):
        value = values.get(name) or fallback.get(name)
        if value not in (None, ""):
            options[name] = str(value)
    return options


def serve(server: SandboxServer, echo: Callable[[str], None]) -> None:
    """Announce ``server`` through ``echo`` and serve in the foreground until Ctrl-C."""
    config = server.state.config
    echo(f"MOTP sandbox gateway on {server.url}")
    echo(f"Merchant user {config.username!r}, store {config.store_id}.")
    echo(f"Buyer page (the buyer's phone): {server.url}/")
    echo("Quit with Ctrl-C.")
    server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m django_motp.sandbox``: serve until interrupted; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m django_motp.sandbox",
        description="A fake MOTP payment gateway for development, demos and tests.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        server = SandboxServer(
            args.host, args.port, verbose=args.verbose, **server_options(vars(args))
        )
    except OSError as error:
        parser.error(f"cannot listen on {args.host}:{args.port}: {error.strerror}")
    serve(server, lambda line: print(line, flush=True))
    return 0
