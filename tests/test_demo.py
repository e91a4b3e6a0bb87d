"""The demo launcher (``make demo`` runs ``example_project/demo.py``), run for real: the sandbox,
a Celery worker with beat and the shop's web server as separate processes, on free ports, with a
SQLite file and a folder broker of the test's own.

- The launcher starts the three, says so once all three answer, and on Ctrl-C stops them with
  nothing left behind; when one of them dies, it stops the others.
- End to end: a buyer orders on the shop page (a real HTTP session), pays through the sandbox's
  control call, the worker sees it paid (nothing in the web process asks the gateway), an admin
  refunds half on the admin's refund form, and the buyer sees the order partly refunded.

Processes are found through their session: the launcher is started as a session leader, and
everything it starts stays in that session (each in a process group of its own). Linux only
(reads /proc).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
]

DEMO = Path(__file__).resolve().parent.parent / "example_project" / "demo.py"
START_TIMEOUT = 180.0  # a guard against hanging: a cold start migrates a fresh database
SETTLE_TIMEOUT = 90.0  # polls every 3 s; the sandbox settles refunds after 5 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_of(pid: int) -> tuple[int, str] | None:
    """(session id, state) of a process from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) "
    return int(fields[3]), fields[0]


def live_processes_in_session(sid: int) -> list[int]:
    """Processes of the session that still run (zombies, already dead, are not counted)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = session_of(int(entry.name))
            if found and found[0] == sid and found[1] != "Z":
                pids.append(int(entry.name))
    return pids


class Launcher:
    """``demo.py`` in a session of its own, its output collected line by line."""

    def __init__(self, tmp_path: Path) -> None:
        self.shop_port, self.sandbox_port = free_port(), free_port()
        self.shop = f"http://127.0.0.1:{self.shop_port}"
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "MOTP_BASE_URL")
        }
        env.update(
            DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
            SHOP_RUN_DIR=str(tmp_path / "run"),
            NO_COLOR="1",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(DEMO),
                "--shop-port",
                str(self.shop_port),
                "--sandbox-port",
                str(self.sandbox_port),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first output line matching ``pattern``; fails if the launcher ends without it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                ended = self.process.poll() is not None
                # Waiting releases the lock, so that the collecting thread can add lines.
                if not self._changed.wait(0.5) and ended:
                    pytest.fail(f"the launcher ended without {pattern!r}:\n{self.output}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {pattern!r} after {timeout} s:\n{self.output}")
                self._changed.wait(1)

    def child_pid(self, name: str) -> int:
        return int(self.wait_for(rf"started {name} \(pid (\d+)\)").group(1))

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it to the launcher; its exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)

    def left_behind(self) -> list[int]:
        return live_processes_in_session(self.process.pid)

    def kill_everything(self) -> None:
        for pid in self.left_behind():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def launcher(tmp_path):
    started = Launcher(tmp_path)
    try:
        started.wait_for("Ctrl-C stops all three")  # the last line of the banner
        yield started
    finally:
        started.kill_everything()  # whatever a failed test left running


def answers(url: str) -> int:
    return requests.get(url, timeout=10).status_code


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_launcher_starts_three_processes_and_ctrl_c_stops_them_all(launcher):
    out = launcher.output
    assert f"Shop:    {launcher.shop}/" in out
    assert f"Admin:   {launcher.shop}/admin/  (user admin, password admin)" in out
    assert f"Sandbox: {launcher.sandbox}/" in out
    assert re.search(r"^worker  \| .*celery@\S+ ready\.", out, re.M)
    assert answers(launcher.shop + "/") == 200
    assert answers(launcher.sandbox + "/") == 200
    children = [launcher.child_pid(name) for name in ("sandbox", "worker", "web")]
    # Each in a group of its own: Ctrl-C at a terminal reaches only the launcher.
    assert len({os.getpgid(pid) for pid in children} | {launcher.process.pid}) == 4
    assert set(children) <= set(launcher.left_behind())

    assert launcher.interrupt() == 0

    assert launcher.output.splitlines()[-1].endswith("stopped")
    assert launcher.left_behind() == []
    assert refused(launcher.shop_port)
    assert refused(launcher.sandbox_port)


def test_when_one_process_dies_the_launcher_stops_the_others(launcher):
    os.killpg(launcher.child_pid("sandbox"), signal.SIGKILL)

    assert launcher.process.wait(timeout=60) == 1
    launcher.wait_for(r"sandbox ended with -9: stopping the others")
    assert launcher.left_behind() == []
    assert refused(launcher.shop_port)


def csrf_from(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def wait_for_status(buyer: requests.Session, status_url: str, wanted: str) -> dict:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        status = buyer.get(status_url, timeout=10).json()
        if status["status"] == wanted:
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"the order is still {status['status']}, not {wanted}: {status}")
        time.sleep(0.5)


def test_buy_pay_and_refund_half_through_the_running_demo(launcher):
    shop = launcher.shop
    # The buyer orders on the shop page.
    buyer = requests.Session()
    page = buyer.get(shop + "/", timeout=10)
    page = buyer.post(
        shop + "/",
        data={"csrfmiddlewaretoken": csrf_from(page.text), "qty_pepper": "2", "qty_scarf": "1"},
        timeout=30,
    )
    assert page.status_code == 200
    number = re.fullmatch(rf"{shop}/orders/([\w-]+)/", page.url).group(1)
    assert "<svg" in page.text
    assert "31.00 USD" in page.text
    status_url = f"{shop}/orders/{number}/status/"
    status = buyer.get(status_url, timeout=10).json()
    assert status["status"] == "open"
    (payment,) = status["payments"]
    assert (payment["status"], payment["amount"]) == ("pending", "31.00")

    # The buyer's phone pays the QR code; only the worker's polls can tell the shop.
    paid = requests.post(
        f"{launcher.sandbox}/_sandbox/orders/{payment['out_trade_no']}/pay", timeout=10
    )
    assert paid.json()["data"]["status"] == "SUCCESS"
    status = wait_for_status(buyer, status_url, "paid")
    assert status["payments"][0]["status"] == "succeeded"
    assert re.search(
        r"^worker  \| .*Task django_motp\.tasks\.poll_payment\[\S+\] succeeded",
        launcher.output,
        re.M,
    )
    assert "Thank you! Your payment was received." in buyer.get(page.url, timeout=10).text

    # An admin refunds half from the payment's page, reached from the order's.
    admin = requests.Session()
    login = admin.get(f"{shop}/admin/login/", timeout=10)
    home = admin.post(
        f"{shop}/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": csrf_from(login.text),
            "username": "admin",
            "password": "admin",
            "next": "/admin/",
        },
        timeout=10,
    )
    assert home.url == f"{shop}/admin/"
    orders = admin.get(f"{shop}/admin/shop/order/", params={"q": number}, timeout=10).text
    order_url = re.search(r'href="(/admin/shop/order/\d+/change/[^"]*)"', orders).group(1)
    order_page = admin.get(shop + order_url.replace("&amp;", "&"), timeout=10).text
    payment_pk = re.search(r'href="/admin/django_motp/payment/(\d+)/change/"', order_page).group(1)
    refund_url = f"{shop}/admin/django_motp/payment/{payment_pk}/refund/"
    form = admin.get(refund_url, timeout=10)
    assert form.status_code == 200
    done = admin.post(
        refund_url,
        data={"csrfmiddlewaretoken": csrf_from(form.text), "amount": "15.50", "reason": "scarf"},
        timeout=60,
    )
    assert done.status_code == 200
    assert "errorlist" not in done.text

    # The buyer sees the order partly refunded.
    status = wait_for_status(buyer, status_url, "partly_refunded")
    assert Decimal(status["refunded_amount"]) == Decimal("15.50")
    assert status["payments"][0]["refunds"][0]["status"] == "succeeded"
    receipt = buyer.get(page.url, timeout=10).text
    assert "Partly refunded" in receipt
    assert "\N{MINUS SIGN}15.50" in receipt

    assert launcher.interrupt() == 0
    assert launcher.left_behind() == []
