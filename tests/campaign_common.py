"""What every process of the fault campaign shares: its settings and fast clock, and the receipt
receiver (connected in the test process and in every worker) with its table."""

from __future__ import annotations

import os
from typing import Any

#: Module constants of the schedule the campaign shortens, in every process, as it shortens the
#: settings' delays: a row past its deadline without an answer is retried every 3 s, not 60 s.
FAST_CLOCK = {"OUTAGE_INTERVAL": 3, "EVENT_GRACE": 2, "EVENT_RETRY_BASE": 1}

#: The campaign's ``MOTP`` timing: the spec's clock run about ten times faster.
CAMPAIGN_MOTP = {
    "TIMEOUT": 1,
    "QUICK_PAY_TIMEOUT": 2,
    "POLL_INTERVAL": 1,
    "QUICK_PAY_DEADLINE": 6,
    "NATIVE_PAY_DEADLINE": 8,
    "REFUND_DEADLINE": 60,
    # Wide enough that a late buyer, who pays within seconds of the expiry here, always pays
    # before the last late check: a check delayed past several offsets counts them all.
    "LATE_CHECKS": [2, 10, 20],
    "TOKEN_TTL": 50,
    "LOG_API_CALLS": True,
}

#: The sandbox's delays: a slow answer comes after the client has given up (TIMEOUT 1 s).
CAMPAIGN_SANDBOX = {
    "pin_delay": 0.5,
    "pay_delay": 1,
    "refund_delay": 1,
    "slow_delay": 2.5,
}

RECEIPTS = "campaign_receipt"


def speed_up_clock() -> None:
    from django_motp import schedule

    for name, value in FAST_CLOCK.items():
        setattr(schedule, name, value)


def _receipt(sender: Any, event_id: Any = None, **kwargs: Any) -> None:
    """Write one row per delivered event; the primary key makes a second delivery of the same
    event fail (its delivery is then rolled back and recorded, which the campaign looks for)."""
    from django.db import connection

    obj = kwargs.get("payment") or kwargs.get("refund")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RECEIPTS} (event_id, model, object_id, new_status, pid) "
            "VALUES (%s, %s, %s, %s, %s)",
            [event_id, type(obj).__name__, obj.pk, kwargs["new_status"], os.getpid()],
        )


def connect_receipts() -> None:
    from django_motp import signals

    signals.payment_status_changed.connect(_receipt, weak=False, dispatch_uid="campaign")
    signals.refund_status_changed.connect(_receipt, weak=False, dispatch_uid="campaign")


def disconnect_receipts() -> None:
    from django_motp import signals

    signals.payment_status_changed.disconnect(dispatch_uid="campaign")
    signals.refund_status_changed.disconnect(dispatch_uid="campaign")


def create_receipts_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RECEIPTS}")
        cursor.execute(
            f"CREATE TABLE {RECEIPTS} (event_id uuid PRIMARY KEY, model varchar(16) NOT NULL, "
            "object_id bigint NOT NULL, new_status varchar(16) NOT NULL, pid integer NOT NULL)"
        )


def drop_receipts_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RECEIPTS}")


def receipts() -> list[tuple[str, str, int, str, int]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id::text, model, object_id, new_status, pid FROM {RECEIPTS}")
        return list(cursor.fetchall())


def error_codes(err: Any) -> set[str | None]:
    """The codes of every error in a ``ValidationError``, field errors included."""
    if hasattr(err, "error_dict"):
        return {e.code for errors in err.error_dict.values() for e in errors}
    return {e.code for e in err.error_list}
