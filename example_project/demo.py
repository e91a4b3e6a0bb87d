"""The demo launcher (``make demo`` runs it): the sandbox gateway, a Celery worker with beat and
the shop's web server, each with its own prefix on the log lines, until Ctrl-C stops them all.

    python demo.py [--host 127.0.0.1] [--shop-port 8000] [--sandbox-port 8765]
                   [--sandbox-args "--fault-rate 0.2"] [--no-setup]

It first migrates the database and creates the admin user (``manage.py demo_setup``), then
starts the three, prints their addresses once all three answer, and on Ctrl-C (SIGINT), SIGTERM
or SIGHUP stops them: each runs in a process group of its own, so what they start themselves
(runserver's reloader child, beat) stops with them and nothing is left behind. If one of them
ends by itself, the others are stopped too and the launcher exits with 1.

The environment is passed on: ``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``SHOP_RUN_DIR`` switch
the database, the broker and the run folder (see ``shopsite/settings.py``); ``MOTP_BASE_URL`` is
set to the sandbox started here. POSIX only (process groups).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
STOP_GRACE = 10.0  # seconds a process gets to stop on SIGTERM before it is killed
READY_TIMEOUT = 120.0
WORKER_READY = re.compile(r"celery@\S+ ready\.")
COLOURS = {"sandbox": "\033[35m", "worker": "\033[36m", "web": "\033[32m", "demo": "\033[1m"}

_print_lock = threading.Lock()
_colour = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def say(name: str, line: str) -> None:
    """One log line with the process's prefix; lines of several processes never interleave."""
    prefix = f"{name:<7} |"
    if _colour:
        prefix = f"{COLOURS.get(name, '')}{prefix}\033[0m"
    with _print_lock:
        sys.stdout.write(f"{prefix} {line.rstrip()}\n")
        sys.stdout.flush()


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[str] | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            process_group=0,  # its own group: Ctrl-C reaches only the launcher, which stops it
        )
        threading.Thread(target=self._echo, args=(self.process.stdout,), daemon=True).start()
        say("demo", f"started {self.name} (pid {self.process.pid})")

    def _echo(self, stream: IO[str]) -> None:
        for line in stream:
            say(self.name, line)
            if self.name == "worker" and WORKER_READY.search(line):
                self.ready.set()

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        # ProcessLookupError: the whole group has ended already.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status < 500)
    except (urllib.error.URLError, OSError):
        return False


def _setup(python: str, env: dict[str, str]) -> None:
    for command in (["migrate", "--noinput"], ["demo_setup"]):
        done = subprocess.run(
            [python, "manage.py", *command],
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        for line in (done.stdout + done.stderr).splitlines():
            say("setup", line)
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(command)} failed ({done.returncode})")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--shop-port", type=int, default=8000)
    parser.add_argument("--sandbox-port", type=int, default=8765)
    parser.add_argument("--sandbox-args", default="", help="extra sandbox options, one string")
    parser.add_argument("--no-setup", action="store_true", help="skip migrate and demo_setup")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    python = sys.executable
    sandbox_url = f"http://{args.host}:{args.sandbox_port}"
    shop_url = f"http://{args.host}:{args.shop_port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shopsite.settings",
        "MOTP_BASE_URL": sandbox_url,
        "PYTHONUNBUFFERED": "1",
    }
    if not args.no_setup:
        _setup(python, env)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())

    sandbox_argv = ["--host", args.host, "--port", str(args.sandbox_port)]
    children = [
        Child(
            "sandbox",
            [python, "manage.py", "motp_sandbox", *sandbox_argv, *shlex.split(args.sandbox_args)],
        ),
        Child(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "shopsite",
                "worker",
                "--beat",
                # As README's Operations section runs it: the poll_due loop holds one thread.
                "--pool=threads",
                "--concurrency=4",
                "--loglevel=INFO",
            ],
        ),
        Child("web", [python, "manage.py", "runserver", f"{args.host}:{args.shop_port}"]),
    ]
    code = 0
    try:
        for child in children:
            child.start(env)
        code = _run(children, stop, shop_url, sandbox_url)
    finally:
        _stop_all(children)
    return code


def _run(children: list[Child], stop: threading.Event, shop_url: str, sandbox_url: str) -> int:
    """Wait for Ctrl-C (0) or for a process to end by itself (1); announce readiness once."""
    worker = children[1]
    started = time.monotonic()
    announced = False
    while not stop.wait(0.5):
        for child in children:
            assert child.process is not None
            if child.process.poll() is not None:
                say(
                    "demo",
                    f"{child.name} ended with {child.process.returncode}: stopping the others",
                )
                return 1
        if not announced:
            if worker.ready.is_set() and _answers(sandbox_url + "/") and _answers(shop_url + "/"):
                announced = True
                for line in (
                    "All three are up.",
                    f"  Shop:    {shop_url}/",
                    f"  Admin:   {shop_url}/admin/  (user admin, password admin)",
                    f"  Sandbox: {sandbox_url}/  (the buyer's phone: pay QR codes there)",
                    "Ctrl-C stops all three.",
                ):
                    say("demo", line)
            elif time.monotonic() - started > READY_TIMEOUT:
                say("demo", f"not all three answer after {READY_TIMEOUT:.0f} s; still waiting")
                started = time.monotonic()
    return 0


def _stop_all(children: list[Child]) -> None:
    """SIGTERM every group, wait up to STOP_GRACE for the leaders, then SIGKILL what is left."""
    running = [child for child in children if child.process is not None]
    if running:
        say("demo", "stopping " + ", ".join(child.name for child in running))
    for child in running:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("demo", f"{child.name} did not stop in {STOP_GRACE:.0f} s: killing it")
    for child in running:
        # Also what a leader started and left behind (a reloader's child, beat).
        child.signal_group(signal.SIGKILL)
        assert child.process is not None
        child.process.wait()
    say("demo", "stopped")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while migrating, before any process was started
        sys.exit(130)
