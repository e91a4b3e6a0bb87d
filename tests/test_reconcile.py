"""Operations: motp_reconcile, motp_sync beside the workers, the sweep's inline path, purging
delivered events, the claim lease, and the client's token lock and token-answer log."""

import json
import logging
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from django_motp import schedule, services, tasks
from django_motp.client import MOTPClient
from django_motp.exceptions import MOTPTransportError
from django_motp.models import ApiCall, Event, Payment, Refund
from django_motp.services import claims
from django_motp.testing import (
    AUTH_CODE_NEVER_PAID,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_REFUND_REFUSED,
)
from tests.fixtures_money import *  # noqa: F403  (the fixtures)
from tests.fixtures_money import make_due, move_past_deadline, settled_ago

pytestmark = pytest.mark.django_db(transaction=True)

S = Payment.Status
R = Refund.Status


# motp_reconcile ---------------------------------------------------------------------------------


def test_reconcile_finds_what_was_settled_after_the_late_checks(
    motp_sandbox, paid_payment, motp_settings, capsys, signal_log
):
    motp_settings(LATE_CHECKS=[60])
    late = services.create_quick_payment("4.00", AUTH_CODE_NEVER_PAID)
    move_past_deadline(late)
    assert services.sync_payment(late).status == S.EXPIRED
    settled_ago(late, 61)
    services.sync_payment(late)  # its last late check: still unpaid
    assert Payment.objects.get(pk=late.pk).next_check_at is None
    motp_sandbox.pay(late.out_trade_no)  # a slow wallet, an hour later
    assert services.sync_payment(late).status == S.EXPIRED  # nobody asks any more

    old = services.create_quick_payment("2.00", AUTH_CODE_NEVER_PAID)
    Payment.objects.filter(pk=old.pk).update(
        status=S.EXPIRED, created_at=timezone.now() - timedelta(days=9)
    )
    motp_sandbox.configure(refund_delay=600)
    refund = services.refund_payment(paid_payment("5.00", AUTH_CODE_REFUND_PROCESSING), "1.00")
    motp_sandbox.configure(refund_delay=0)
    capsys.readouterr()

    call_command("motp_reconcile", "--days", "7")
    out = capsys.readouterr().out
    assert Payment.objects.get(pk=late.pk).status == S.SUCCEEDED
    assert Refund.objects.get(pk=refund.pk).status == R.SUCCEEDED
    assert Payment.objects.get(pk=old.pk).status == S.EXPIRED  # older than 7 days
    assert "Re-checked 2 from the last 7 days" in out
    assert "1 payments expired -> succeeded" in out
    assert "1 refunds pending -> succeeded" in out
    assert "[" + "#" * 30 + "] 2/2" in out
    assert ("payment_succeeded", late.pk) in signal_log


def test_reconcile_refunds_a_double_charge_whose_refund_was_not_made(
    motp_sandbox, paid_payment, capsys
):
    other = paid_payment("3.00", reference="R-9")
    payment = paid_payment("3.00", reference="R-9")
    Payment.objects.filter(pk=payment.pk).update(
        attention=Payment.Attention.DOUBLE_CHARGE, duplicate_of=other
    )  # flagged, then the process died before the refund
    call_command("motp_reconcile")
    assert "Refunded 1 double charges" in capsys.readouterr().out
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("3.00")
    assert Payment.objects.get(pk=other.pk).refunded_amount == 0


def test_reconcile_with_nothing_to_do(motp_sandbox, capsys):
    call_command("motp_reconcile", "--days", "1")
    assert "nothing changed" in capsys.readouterr().out


# motp_sync beside the workers -------------------------------------------------------------------


def test_motp_sync_skips_and_names_what_a_worker_is_checking(motp_sandbox, monkeypatch, capsys):
    monkeypatch.setattr(claims, "HAND_WAIT", 0.2)
    busy = services.create_native_payment("3.00")
    free = services.create_native_payment("4.00")
    assert services.claim_check(Payment, busy.pk, make_due(busy)) is not None
    call_command("motp_sync")
    out = capsys.readouterr().out
    assert "Checked 1: 1 payments pending." in out
    assert f"Skipped 1 being checked by a worker right now: {busy.out_trade_no}." in out
    assert motp_sandbox.calls("check_payment") == 1
    assert Payment.objects.get(pk=free.pk).status == S.PENDING


# The sweep --------------------------------------------------------------------------------------


def test_the_inline_sweep_isolates_a_row_that_raises_and_backs_it_off(
    motp_sandbox, monkeypatch, caplog
):
    broken = services.create_native_payment("3.00")
    fine = services.create_native_payment("4.00")
    motp_sandbox.pay(fine.out_trade_no)
    make_due(broken)
    make_due(fine)
    real = services.check_claimed

    def check(obj):
        if obj.pk == broken.pk:
            raise RuntimeError("a bug in this row's check")
        return real(obj)

    monkeypatch.setattr(services, "check_claimed", check)
    assert tasks.sweep(inline=True) == 2
    assert Payment.objects.get(pk=fine.pk).status == S.SUCCEEDED  # the rest went on
    broken.refresh_from_db()
    assert broken.checking_until is None
    assert broken.next_check_at >= timezone.now() + timedelta(seconds=55)  # not full speed
    assert tasks.sweep(inline=True) == 0
    assert "a bug in this row's check" in caplog.text
    assert any(r.levelname == "ERROR" for r in caplog.records if "failed" in r.message)


def test_the_claim_lease_covers_every_call_a_check_makes(motp_sandbox, paid_payment):
    payment = paid_payment("10.00", AUTH_CODE_REFUND_REFUSED)
    motp_sandbox.fault("502", operation="refund", when="before")
    refund = services.refund_payment(payment, "4.00")
    before = ApiCall.objects.order_by("-pk").values_list("pk", flat=True).first()
    assert services.sync_refund(refund).status == R.FAILED  # check, resend, check again
    made = ApiCall.objects.filter(pk__gt=before).exclude(operation="token")
    assert list(made.order_by("pk").values_list("operation", flat=True)) == [
        "check_refund",
        "refund",
        "check_refund",
    ]
    calls = made.count()
    assert calls == 3
    window = schedule.call_window(services.get_client().timeout)
    assert services.claim_lease() >= calls * window


# Purging delivered events -----------------------------------------------------------------------


def test_purge_events_deletes_old_delivered_events_only(motp_sandbox, capsys, monkeypatch):
    from django_motp.services import events

    services.create_native_payment("1.00")  # one event, delivered
    monkeypatch.setattr(events, "deliver_soon", lambda event: None)
    services.create_native_payment("2.00")  # one event, undelivered
    long_ago = timezone.now() - timedelta(days=40)
    Event.objects.update(created_at=long_ago)
    Event.objects.filter(delivered_at__isnull=False).update(delivered_at=long_ago)
    services.create_native_payment("3.00")  # recent: kept (delivery is blocked above)
    Event.objects.filter(created_at__gt=long_ago).update(delivered_at=timezone.now())
    call_command("motp_purge_events")  # EVENT_RETENTION_DAYS: 30
    assert "Deleted 1 delivered events older than 30 days." in capsys.readouterr().out
    assert Event.objects.count() == 2
    assert Event.objects.undelivered().count() == 1


# The client's token lock and token answers ------------------------------------------------------


def test_the_token_lock_is_released_only_by_its_owner(motp_sandbox, monkeypatch):
    client = MOTPClient(motp_sandbox.url, motp_sandbox.username, motp_sandbox.password, cache=cache)
    lock_key = f"{client._token_key}:lock"
    real_fetch = client._fetch_token

    def slow_fetch():
        # Our lock ran out during a slow fetch and another process took it.
        cache.set(lock_key, "another process", 30)
        return real_fetch()

    monkeypatch.setattr(client, "_fetch_token", slow_fetch)
    client.forget_token()
    try:
        assert client.get_token()
        assert cache.get(lock_key) == "another process"
    finally:
        cache.delete(lock_key)  # the other process is done: later tests fetch freely
        client.close()


class _OddTokenGateway(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"success": True, "data": {"access_token": "SECRET-TOKEN-123"}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_a_token_under_an_unexpected_key_is_never_logged_in_clear(caplog):
    caplog.set_level(logging.DEBUG)
    server = HTTPServer(("127.0.0.1", 0), _OddTokenGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    records = []
    client = MOTPClient(
        f"http://127.0.0.1:{server.server_port}", "u", "p", cache=cache, on_call=records.append
    )
    try:
        with pytest.raises(MOTPTransportError):
            client.get_token()
    finally:
        client.close()
        server.shutdown()
    assert records
    assert "SECRET-TOKEN-123" not in repr(records) + caplog.text


def test_a_dead_token_lock_holder_delays_but_never_blocks_a_fetch(motp_sandbox):
    client = MOTPClient(
        motp_sandbox.url, motp_sandbox.username, motp_sandbox.password, cache=cache, timeout=0.5
    )
    client.forget_token()
    lock_key = f"{client._token_key}:lock"
    cache.set(lock_key, "a process that died", 30)  # never released
    try:
        assert client.get_token()  # waited for the holder's token, then fetched one itself
    finally:
        cache.delete(lock_key)  # as its expiry would, for the tests that follow
        client.close()
    assert motp_sandbox.calls("token") == 1
