"""Helpers shared by the test modules."""

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connection

#: The Redis of the tests that need one (real worker, cross-process token cache).
REDIS_URL = os.environ.get("MOTP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def signal_names(signal_log) -> list[str]:
    """The names of the signals in ``signal_log`` (the fixture), in the order they were sent."""
    return [entry[0] for entry in signal_log]


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


@contextmanager
def database_fails(when: Callable[[str], bool]) -> Iterator[list[str]]:
    """Every query of this thread's connection for which ``when(sql)`` is true fails, as on a
    dropped connection (``OperationalError``), without reaching the database; yields the list
    of the queries that failed."""
    failed: list[str] = []

    def wrapper(execute, sql, params, many, context):
        if when(sql):
            failed.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield failed


def fetch_token_in_process(config: dict[str, Any], barrier: Any, tokens: Any) -> None:
    """Run in a process of its own: a client on the Redis cache ``config`` names waits at
    ``barrier`` (if any), fetches a token and puts it on ``tokens`` (a multiprocessing queue)."""
    from django.core.cache.backends.redis import RedisCache

    from django_motp.client import MOTPClient

    cache = RedisCache(config["redis_url"], {"KEY_PREFIX": config["key_prefix"]})
    client = MOTPClient(
        config["base_url"],
        config["username"],
        config["password"],
        timeout=config["timeout"],
        cache=cache,
    )
    if barrier is not None:
        barrier.wait()
    tokens.put(client.get_token())


@contextmanager
def redis_worker(pool: str = "solo") -> Iterator[Any]:
    """Celery's default app on Redis, with a worker consuming its queue, run by a thread of this
    process. With the ``solo`` pool the tasks run in that thread (signals reach the test's
    receivers, settings changes reach the worker); ``prefork`` forks one process for them, which
    keeps the settings of the moment it is forked (and is the pool that enforces time limits)."""
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from tests.celery_app import app as default_app

    app = Celery("django-motp-worker-tests", broker=REDIS_URL)
    app.conf.update(
        task_default_queue=f"django-motp-tests-{os.getpid()}",  # runs sharing Redis stay apart
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=False,
    )
    app.set_default()
    app.set_current()
    app.finalize()
    app.control.purge()
    try:
        with start_worker(
            app, pool=pool, concurrency=1, perform_ping_check=False, shutdown_timeout=10
        ):
            yield app
    finally:
        default_app.set_default()
        default_app.set_current()
