"""Helpers of the reliability tests (concurrent refunds, fault campaign, secrets).

Functions that run in processes of their own (``multiprocessing`` with the ``spawn`` start
method, Celery workers) import Django lazily: they set it up themselves from the values the
test hands them, since a spawned process inherits nothing of the test's settings.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any


def error_codes(err: Any) -> set[str | None]:
    """The codes of every error in a ``ValidationError``, field errors included."""
    if hasattr(err, "error_dict"):
        return {e.code for errors in err.error_dict.values() for e in errors}
    return {e.code for e in err.error_list}


def refund_until_exhausted(
    payment_pk: int, part: Decimal, enough: set[str], busy: set[str]
) -> list[str | None]:
    """Refund ``part`` of the payment again and again until the service refuses with one of the
    codes ``enough``; returns the codes of every refusal seen. A refusal whose codes are not all
    in ``busy`` ("another refund is on its way") fails the caller."""
    from django.core.exceptions import ValidationError

    from django_motp import services
    from django_motp.models import Payment

    payment = Payment.objects.get(pk=payment_pk)
    seen: list[str | None] = []
    while True:
        try:
            services.refund_payment(payment, part, reason="concurrent")
        except ValidationError as err:
            codes = error_codes(err)
            seen.extend(sorted(codes, key=str))
            if codes & enough:
                return seen
            if not codes <= busy:
                raise AssertionError(f"unexpected refusal {codes}: {err.messages}") from err


def django_in_child(database_name: str, motp: dict[str, Any]) -> None:
    """Set up Django in a spawned process: the test's settings, its test database (by name)
    and its ``MOTP`` dict (the sandbox's address)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = database_name
    settings.MOTP = motp


def refund_in_child(
    database_name: str, motp: dict[str, Any], payment_pk: int, args: tuple, barrier, results
) -> None:
    """``refund_until_exhausted`` in a spawned process, released with the others by
    ``barrier``; puts ``("ok", codes)`` or ``("error", repr)`` on ``results``."""
    try:
        django_in_child(database_name, motp)
        barrier.wait()
        results.put(("ok", refund_until_exhausted(payment_pk, *args)))
    except BaseException as err:  # reported to the test, which fails
        results.put(("error", repr(err)))
