"""The one place where the services hand work to the Celery tasks, looked up at call time.

Imports flow one way (services -> tasks, never back): the services do not import
``django_motp.tasks``; they call ``enqueue_check``, which finds the task module's
``enqueue_poll`` by its dotted path at each call. A project without Celery workers (or a
test) can point ``ENQUEUE_CHECK`` elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

#: Called with a payment or refund after commit, to send the poll of its next check.
ENQUEUE_CHECK = "django_motp.tasks.enqueue_poll"

_local = threading.local()


def _resolve(path: str) -> Callable[[Any], Any]:
    # Resolved on every call (a dictionary look-up once imported), so that replacing the
    # function on its module, as tests do, takes effect.
    function: Callable[[Any], Any] = import_string(path)
    return function


@contextmanager
def checks_taken_from_database() -> Iterator[None]:
    """Within this block (in this thread), ``enqueue_check`` sends nothing: the caller (the
    batch checker of ``tasks.poll_due``) finds every next check in ``next_check_at`` itself,
    so a message per check would only cost the broker and the worker."""
    before = getattr(_local, "from_database", False)
    _local.from_database = True
    try:
        yield
    finally:
        _local.from_database = before


def enqueue_check(obj: Any) -> None:
    """Send ``obj``'s next check to the workers once the current transaction commits (at once
    in autocommit mode). The schedule itself is in the row: a lost message only delays it."""
    if getattr(_local, "from_database", False):
        return
    enqueue = _resolve(ENQUEUE_CHECK)
    transaction.on_commit(lambda: enqueue(obj))
