"""The sandbox HTTP server: the gateway, the control API and the buyer page on one port.

``SandboxServer`` runs a ``ThreadingHTTPServer`` (one daemon thread per connection, HTTP/1.1
keep-alive, ``Content-Length`` on every answer, TCP_NODELAY so a loopback round trip costs ~2 ms
rather than ~40 ms of Nagle and delayed-ACK wait). Routes:

- the gateway operations, ``POST`` at the paths of ``endpoints.ENDPOINTS``, where faults apply;
- the control API under ``/_sandbox/`` and the buyer page ``GET /``, to loopback clients only,
  at a loopback ``Host`` (``localhost``, ``127.x.x.x``, ``[::1]``: no DNS rebinding), and no
  cross-site browser post (``Sec-Fetch-Site`` or ``Origin`` must be the sandbox's own).

``stop()`` sets the ``stopping`` event: a PIN hold or a ``slow`` fault waiting on it ends at once,
its request dropped without an answer and without touching the state.

Quiet by default; ``verbose=True`` logs one line per request (its request line and status, never
a header or a body, so never a password, token or auth code). A bug in the sandbox is always
printed with its traceback and answered HTTP 500.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import socketserver
import struct
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from .. import __version__
from . import jsonio
from .buyer import render
from .control import PREFIX, Control
from .endpoints import OPERATION_AT
from .errors import Stopped
from .faults import CUTOFF_PLACEHOLDER, NODATA_ANSWER, PAGES, Fault, FaultKind, When
from .gateway import Answer, Gateway, failure
from .state import Config, SandboxState
from .validation import media_type

#: The largest request body read; a bigger one is answered 413 and the connection closed.
MAX_BODY = 1024 * 1024

#: A ``Host`` header: a name or an IPv4 address, or an IPv6 address in brackets; a port maybe.
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\[\]:]+))(?::\d*)?", re.ASCII)


def is_loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost``, ``127.x.x.x`` or ``[::1]``,
    with or without a port. A DNS-rebinding page's requests carry its own (public) host name.
    """
    match = _HOST.fullmatch((host or "").strip())
    if match is None:
        return False
    if match["name"] and match["name"].lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(match["ipv6"] or match["name"])
    except ValueError:
        return False
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


class SandboxServer:
    """The sandbox gateway, served from a thread or the foreground.

    ``options`` are the fields of ``state.Config`` (``username``, ``password``, ``store_id``,
    ``token_ttl``, ``legacy_token``, ``auth_failure_status``, ``pin_delay``, ``pay_delay``,
    ``refund_delay``, ``slow_delay``, ``fault_rate``). The socket is bound on construction, so
    ``url`` is known at once (``port=0`` picks a free port)::

        with SandboxServer(port=0, pin_delay=0.5) as sandbox:
            requests.post(sandbox.url + "/api/v1/token", json={...})
            sandbox.state.pay("ORDER-1")
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **options: Any
    ) -> None:
        self.state = SandboxState(Config(**options))
        #: Set by ``stop()``: PIN holds and slow faults wait on it, so they end with the server.
        self.stopping = threading.Event()
        self.gateway = Gateway(self.state, self.stopping)
        self.control = Control(self.state)
        self.verbose = verbose
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None
        # The thread in the serving loop, ``start()``'s or ``serve_forever()``'s caller.
        self._serving: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765`` (the value of ``MOTP["BASE_URL"]``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Serve in a daemon thread; returns the server. Call ``stop()`` when done."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve,
                args=(0.1,),
                name=f"motp-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``KeyboardInterrupt`` or ``stop()`` (called from
        another thread), then stop.
        """
        try:
            self._serve(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _serve(self, poll_interval: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._serving = threading.current_thread()
        try:
            self._httpd.serve_forever(poll_interval=poll_interval)
        finally:
            with self._lock:
                self._serving = None

    def stop(self) -> None:
        """Stop serving, end the requests that wait (PIN holds, slow faults) unanswered, drop open
        keep-alive connections, release the port. Idempotent; callable from any thread.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            serving = self._serving
        self.stopping.set()
        current = threading.current_thread()
        # shutdown() waits for the serving loop to end: never from the loop's own thread.
        if serving is not None and serving is not current:
            self._httpd.shutdown()
        if self._thread is not None and self._thread is not current:
            self._thread.join()
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], app: SandboxServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self._connections: set[socket.socket] = set()
        # Connections to end with a TCP RST (fault "reset") instead of an orderly FIN.
        self._resets: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def reset_on_close(self, connection: socket.socket) -> None:
        """Close ``connection`` with an RST (SO_LINGER 0) once its handler is done."""
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._connections_lock:
            self._resets.add(connection)

    def close_connections(self) -> None:
        """Shut every open connection down, so idle keep-alive threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Only transport errors get here (a client gone mid-answer, a connection dropped at
        # stop): the handler reports its own bugs.
        if self.app.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"motp-sandbox/{__version__}"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        # The ``Server`` header: no Python version (the default appends it after a space).
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            sys.stderr.write(f"{self.address_string()} [{self.log_date_time_string()}] ")
            sys.stderr.write((format % args) + "\n")

    @property
    def _app(self) -> SandboxServer:
        return self.server.app

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        try:
            if path in OPERATION_AT:
                self._gateway(OPERATION_AT[path], body)
            elif path == "/" or path.startswith(PREFIX):
                self._local(path, body)
            else:
                self._send_json(failure(f"Nothing at {path}", 404))
        except Stopped:
            self.close_connection = True  # the server stops: no answer
        except OSError:
            raise  # the client went away: nothing to answer
        except Exception:
            traceback.print_exc()
            self._send_json(failure("Sandbox internal error (see the sandbox's output)", 500))

    def _read_body(self) -> bytes | None:
        """The request body, or None when the request was refused for its framing."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_json(failure("Send the body with a Content-Length", 411))
            return None
        text = (self.headers.get("Content-Length") or "0").strip()
        if not (text.isascii() and text.isdigit()):
            self.close_connection = True
            self._send_json(failure("Content-Length must be a number of bytes", 400))
            return None
        if int(text) > MAX_BODY:
            self.close_connection = True
            self._send_json(failure(f"Content-Length must be 0 to {MAX_BODY}", 413))
            return None
        return self.rfile.read(int(text))

    # The gateway

    def _gateway(self, operation: str, body: bytes) -> None:
        if self.command != "POST":
            self._send_json(failure(f"{self.path} takes POST, not {self.command}", 405))
            return
        state = self._app.state
        state.count(operation)
        if state.config.latency:
            self._wait(state.config.latency)
        fault = state.take_fault(operation)
        if fault is None:
            self._send_json(self._apply(operation, body))
        elif fault.kind is FaultKind.SLOW:
            self._send_json(self._slow(fault, operation, body))
        elif fault.when is When.BEFORE:
            self._spoil(fault, None)
        else:
            self._spoil(fault, self._apply(operation, body))

    def _apply(self, operation: str, body: bytes) -> Answer:
        return self._app.gateway.handle(
            operation,
            authorization=self.headers.get("Authorization"),
            content_type=self.headers.get("Content-Type"),
            body=body,
        )

    def _slow(self, fault: Fault, operation: str, body: bytes) -> Answer:
        state = self._app.state
        delay = state.config.slow_delay
        if fault.when is When.BEFORE:
            generation = state.generation
            self._wait(delay)
            if state.generation != generation:
                # Reset meanwhile: the request belongs to a test that is over.
                return failure("The sandbox was reset while the request waited: not applied")
            return self._apply(operation, body)
        answer = self._apply(operation, body)
        self._wait(delay)
        return answer

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``; raise ``Stopped`` at once if the server stops meanwhile."""
        if self._app.stopping.wait(seconds):
            raise Stopped

    def _spoil(self, fault: Fault, answer: Answer | None) -> None:
        """Answer ``fault`` in place of ``answer`` (None: the operation was not applied)."""
        if fault.kind in PAGES:
            status, page = PAGES[fault.kind]
            self._send(status, page.encode(), "text/html")
        elif fault.kind is FaultKind.NODATA:
            self._send_json(Answer(200, NODATA_ANSWER))
        elif fault.kind is FaultKind.CUTOFF:
            payload = answer.payload if answer else CUTOFF_PLACEHOLDER
            data = jsonio.dumps(payload).encode()
            self._send(200, data, "application/json", cut=len(data) // 2)
            self.close_connection = True
        else:  # FaultKind.RESET
            self.close_connection = True
            self.server.reset_on_close(self.connection)

    # The control API and the buyer page

    def _local(self, path: str, body: bytes) -> None:
        host = self.client_address[0]
        address = ipaddress.ip_address(host.split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_loopback:
            self._send_json(failure("The sandbox serves this to loopback clients only", 403))
            return
        host_header = self.headers.get("Host")
        if not is_loopback_host(host_header):
            message = (
                "The sandbox serves this at localhost, 127.0.0.1 or [::1] only, "
                f"not at {host_header or 'a missing Host'}"
            )
            self._send_json(failure(message, 421))
            return
        if self.command == "POST" and self._cross_site(host_header or ""):
            self._send_json(failure("Cross-site requests are refused", 403))
            return
        if path == "/":
            if self.command != "GET":
                self._send_json(failure(f"/ takes GET, not {self.command}", 405))
                return
            page = render(self._app.state.orders(), self._app.state.config)
            self._send(200, page.encode(), "text/html; charset=utf-8")
            return
        content_type = self.headers.get("Content-Type")
        answer = self._app.control.handle(self.command, path, content_type, body)
        if media_type(content_type) == "application/x-www-form-urlencoded":
            # The buyer page's Pay and Decline buttons: back to the page, whatever happened
            # (it shows the order's state).
            self._send(303, b"", "text/plain", headers={"Location": "/"})
            return
        self._send_json(answer)

    def _cross_site(self, host: str) -> bool:
        """Whether a browser sends this from another site's page (a CSRF form or fetch).

        Browsers say where a request comes from with ``Sec-Fetch-Site`` (else ``Origin``); the
        buyer page's own buttons are ``same-origin``, a typed URL ``none``. A client that sends
        neither (curl, requests, a test) is no browser page, and is served.
        """
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None:
            return site.strip().lower() not in ("same-origin", "none")
        origin = self.headers.get("Origin")
        if origin is not None:
            own = f"http://{host.strip().lower()}".removesuffix(":80")
            return origin.strip().lower() != own
        return False

    # Writing

    def _send_json(self, answer: Answer) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if answer.status == 401 else {}
        data = jsonio.dumps(answer.payload).encode()
        self._send(answer.status, data, "application/json", headers=headers)

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        cut: int | None = None,
    ) -> None:
        """Write a whole answer; with ``cut``, only the first ``cut`` bytes of the body."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data if cut is None else data[:cut])
