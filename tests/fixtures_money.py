"""Fixtures and helpers of the money tests (payments, refunds, events, answers, reconcile).

The shared payment and refund fixtures assert what the sandbox gateway received against the
rows (amount, fee rate, store, numbers, reason), so every test that uses them would catch a
wrong amount sent to the gateway.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from django_motp import services
from django_motp.exceptions import MOTPAPIError
from django_motp.models import Event, Payment, Refund
from django_motp.testing import AUTH_CODE_PAID
from tests.test_worker import worker  # noqa: F401  (a real Celery worker on Redis)


def assert_gateway_has_payment(sandbox, payment: Payment) -> dict:
    """The sandbox's order of ``payment``, after checking it is what the row says was sent."""
    order = sandbox.order(payment.out_trade_no)
    assert order["out_trade_no"] == payment.out_trade_no
    assert order["amount"] == payment.amount  # never the amount plus the fee
    assert Decimal(order["fee_rate"]) == payment.fee_rate
    assert order["buyer_total"] == payment.buyer_total
    assert order["service_id"] == payment.service_id
    assert str(order["store_id"]) == payment.store_id
    assert order["method"] == payment.method
    assert (order["sub_store_name"] or "") == payment.sub_store_name
    return order


def assert_gateway_has_refund(sandbox, refund: Refund) -> dict:
    """The sandbox's copy of ``refund`` (its only one of that number), checked against the row."""
    sent = [
        r
        for r in sandbox.refunds(refund.payment.out_trade_no)
        if r["out_refund_no"] == refund.out_refund_no
    ]
    assert len(sent) == 1
    [gateway_refund] = sent
    assert gateway_refund["amount"] == refund.amount
    assert gateway_refund["out_trade_no"] == refund.payment.out_trade_no
    assert gateway_refund["reason"] == refund.reason
    return gateway_refund


@pytest.fixture
def paid_payment(motp_sandbox):
    """``paid_payment(amount="10.00", auth_code=AUTH_CODE_PAID, **options)``: a quick payment
    paid at once, checked against what the gateway received."""

    def pay(amount="10.00", auth_code=AUTH_CODE_PAID, **options):
        payment = services.create_quick_payment(Decimal(amount), auth_code, **options)
        assert payment.status == Payment.Status.SUCCEEDED
        assert_gateway_has_payment(motp_sandbox, payment)
        return payment

    return pay


@pytest.fixture
def refund_of(motp_sandbox):
    """``refund_of(payment, amount=None, **options)``: ``services.refund_payment``, checked
    against what the gateway received when the gateway has it."""

    def refund(payment, amount=None, **options):
        made = services.refund_payment(payment, amount, **options)
        if made.status != Refund.Status.CREATED:  # created: the gateway may not have it
            assert_gateway_has_refund(motp_sandbox, made)
        if amount is not None:
            assert made.amount == Decimal(str(amount))
        return made

    return refund


@pytest.fixture
def motp_settings(settings):
    """``motp_settings(**changes)``: change keys of ``settings.MOTP`` for the test."""

    def change(**changes):
        settings.MOTP = {**settings.MOTP, **changes}

    return change


@pytest.fixture
def gateway_says(monkeypatch):
    """``gateway_says("check_payment", answer)``: this thread's client answers the next status
    checks with ``answer`` (a data dict, or an exception such as ``MOTPAPIError("SYSTEMERROR")``)
    instead of asking; a callable gets the real answer and returns the one to use. For answers
    the sandbox cannot script (SYSTEMERROR, another order's data, a wrong amount)."""

    def say(operation, answer):
        client = services.get_client()
        real = getattr(client, operation)

        def fake(*args, **kwargs):
            if isinstance(answer, Exception):
                raise answer
            if callable(answer):
                return answer(real(*args, **kwargs))
            return dict(answer)

        monkeypatch.setattr(client, operation, fake)

    return say


def system_error() -> MOTPAPIError:
    return MOTPAPIError("SYSTEMERROR: system busy, try again", operation="check")


def move_past_deadline(obj) -> None:
    """Move the row's deadline into the past: the clock, as far as the services can tell."""
    type(obj).objects.filter(pk=obj.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))


def settled_ago(payment, seconds):
    """Move the payment's settling time ``seconds`` into the past."""
    at = timezone.now() - timedelta(seconds=seconds)
    Payment.objects.filter(pk=payment.pk).update(settled_at=at)
    return at


def make_due(obj):
    """Bring the row's next check to now, as if its time had come."""
    type(obj).objects.filter(pk=obj.pk).update(next_check_at=timezone.now())
    obj.refresh_from_db()
    return obj.next_check_at


def make_events_due() -> None:
    """Every undelivered event's next attempt is now, as if its back-off had passed."""
    Event.objects.undelivered().update(next_attempt_at=timezone.now())
