"""A progress bar for the management commands: redrawn in place on a terminal, written once
when it is full otherwise (logs and CI)."""

from __future__ import annotations

from typing import Any

BAR_WIDTH = 30


def show_progress(stdout: Any, done: int, total: int) -> None:
    """Draw ``done`` of ``total`` on ``stdout`` (a Django ``OutputWrapper``)."""
    filled = BAR_WIDTH * done // total
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    ending = "\n" if done == total else ""
    if stdout.isatty():
        stdout.write(f"\r[{bar}] {done}/{total}", ending=ending)
    elif done == total:
        stdout.write(f"[{bar}] {done}/{total}")
