"""Helpers shared by the test modules."""

import threading
import time

import pytest
from django.db import connection


def wait_until(condition, timeout: float = 10.0, step: float = 0.05):
    """Call ``condition`` until it returns something truthy or ``timeout`` passes (then fail).

    For waiting on the sandbox's clock (a PIN typed after N seconds), never to paper over a race.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)


def at_once(work, times: int = 2) -> list:
    """Run ``work()`` in ``times`` threads released together; returns what each returned or
    raised. Each thread closes its own database connection."""
    barrier = threading.Barrier(times)
    outcomes: list = []

    def run():
        try:
            barrier.wait()
            outcomes.append(work())
        except Exception as err:
            outcomes.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
