"""Helpers shared by the test modules."""

import time

import pytest


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
