"""The fault campaign's processes: a private ``redis-server`` as its broker, Celery workers and
beat, each in a session of its own and logging every record to a file; and this process's log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def log_everything(path: Path) -> Iterator[None]:
    """Every log record of this process, at DEBUG, goes to ``path`` meanwhile."""
    import logging

    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        handler.close()


class PrivateRedis:
    """A ``redis-server`` of the campaign's own on a free loopback port, without persistence:
    its broker, which it restarts (everything queued is lost, as on a real crash). The
    machine's shared Redis is never touched."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the campaign's redis-server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def queued(self) -> int:
        """Messages waiting in the broker: its queue, and the countdowns and unacknowledged
        deliveries kombu keeps aside."""
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        return int(client.llen("celery")) + int(client.zcard("unacked_index"))

    def restart(self) -> None:
        self.stop()
        self.start()


class CeleryProcess:
    """``celery -A tests.celery_app <command>`` in a session of its own (so that a SIGKILL reaches
    its pool's children too), logging every record at DEBUG to ``<name>.log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.args, self.env, self.workdir = name, args, env, workdir
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", *self.args]
        command += ["--loglevel", "DEBUG", "-f", str(self.log)]
        self.process = subprocess.Popen(
            command,
            env=self.env,
            cwd=str(Path(__file__).resolve().parent.parent),
            stdout=(self.workdir / f"{self.name}.out").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the worker says it is ready (consuming), or fail."""
        deadline = time.monotonic() + timeout
        while not (self.log.exists() and " ready." in self.log.read_text(errors="replace")):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: see {self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the process and its pool: no shutdown, no acknowledgement, nothing."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
