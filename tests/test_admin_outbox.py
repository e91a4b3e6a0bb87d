"""The admin's parts built on the signal outbox and manual resolution: "Deliver again",
"Resolve..." and a hand check while a worker holds the payment's check.

They use ``services.deliver_events``, ``services.resolve_refund`` and
``exceptions.CheckInProgress``, which come with the money-correctness work.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from django_motp import exceptions, services, signals
from django_motp.models import Event, Payment, Refund
from django_motp.testing import AUTH_CODE_REFUND_PROCESSING
from tests.fixtures_admin import changelist, client_for, make_payment, page_text

pytestmark = pytest.mark.django_db(transaction=True)

R = Refund.Status


@pytest.fixture
def received():
    """The ``event_id`` of every ``payment_succeeded`` delivered, and the receiver (set its
    ``fail`` to make it raise)."""
    log: list = []

    def receiver(sender, **kwargs):
        if getattr(receiver, "fail", None):
            raise RuntimeError(receiver.fail)
        log.append(kwargs.get("event_id"))

    signals.payment_succeeded.connect(receiver, weak=False)
    yield log, receiver
    signals.payment_succeeded.disconnect(receiver)


def stuck_event(payment: Payment) -> Event:
    return Event.objects.create(
        payment=payment,
        signal="payment_succeeded",
        old_status="pending",
        new_status="succeeded",
        attempts=1,
        last_error="RuntimeError: the mailer was down",
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )


def deliver_again(event: Event):
    data = {"action": "deliver_again", "_selected_action": [event.pk]}
    return client_for("manager").post(changelist("event"), data, follow=True)


def test_deliver_again_delivers_a_stuck_event(received):
    log, _receiver = received
    event = stuck_event(make_payment())
    response = deliver_again(event)
    assert "Delivered 1 event(s)." in page_text(response)
    assert log == [event.pk]
    assert Event.objects.get(pk=event.pk).delivered_at is not None


def test_deliver_again_reports_a_receiver_that_still_fails(received):
    _log, receiver = received
    receiver.fail = "the mailer is still down"
    event = stuck_event(make_payment())
    response = deliver_again(event)
    assert f"Event {event.pk} was not delivered" in page_text(response)
    assert "the mailer is still down" in page_text(response)
    event.refresh_from_db()
    assert event.delivered_at is None
    assert event.attempts == 2


def overdue_refund(motp_sandbox) -> Refund:
    motp_sandbox.configure(refund_delay=3600)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "4.00")
    assert refund.status == R.PENDING
    Refund.objects.filter(pk=refund.pk).update(deadline_at=timezone.now() - timedelta(hours=1))
    return refund


def test_resolve_records_what_the_gateways_support_confirmed(motp_sandbox):
    refund = overdue_refund(motp_sandbox)
    manager = client_for("manager")
    response = manager.post(
        f"/admin/django_motp/refund/{refund.pk}/resolve/",
        {"outcome": "succeeded", "note": "Support ticket 4711 confirms the refund."},
        follow=True,
    )
    refund.refresh_from_db()
    assert refund.status == R.SUCCEEDED
    assert refund.resolution_note == "Support ticket 4711 confirms the refund."
    assert refund.resolved_by is not None
    assert f"Refund {refund.out_refund_no} recorded as succeeded by hand." in page_text(response)
    assert Payment.objects.get(pk=refund.payment_id).refunded_amount == Decimal("4.00")


def test_resolve_failed_releases_the_amount(motp_sandbox):
    refund = overdue_refund(motp_sandbox)
    client_for("manager").post(
        f"/admin/django_motp/refund/{refund.pk}/resolve/",
        {"outcome": "failed", "note": "Support: the wallet never got it."},
    )
    refund.refresh_from_db()
    assert refund.status == R.FAILED
    assert Payment.objects.get(pk=refund.payment_id).refundable_amount == Decimal("10.00")


def test_resolve_refuses_a_refund_not_past_its_deadline(motp_sandbox):
    motp_sandbox.configure(refund_delay=3600)
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    refund = services.refund_payment(payment, "4.00")
    response = client_for("manager").post(
        f"/admin/django_motp/refund/{refund.pk}/resolve/",
        {"outcome": "succeeded", "note": "too early"},
    )
    assert response.status_code == 200
    assert Refund.objects.get(pk=refund.pk).status == R.PENDING


def test_check_now_while_a_worker_checks_says_try_again(motp_sandbox, monkeypatch):
    payment = services.create_native_payment("7.00")

    def busy(payment):
        raise exceptions.CheckInProgress(
            f"{payment.out_trade_no} is being checked right now, try again in a moment."
        )

    monkeypatch.setattr(services, "sync_payment", busy)
    response = client_for("viewer").post(
        f"/admin/django_motp/payment/{payment.pk}/check/", follow=True
    )
    assert "is being checked right now, try again in a moment" in page_text(response)
