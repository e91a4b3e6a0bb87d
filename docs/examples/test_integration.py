"""The examples of docs/howto/testing.rst: a shop's own tests against the sandbox gateway.

``make docs`` runs them (``pytest -p django_motp.testing docs/examples``), so they stay true.
A project loads the plugin from its ``conftest.py``:
``pytest_plugins = ["django_motp.testing"]``.
"""

from decimal import Decimal

import pytest

from django_motp import services
from django_motp.models import Payment, Refund
from django_motp.signals import payment_succeeded
from django_motp.testing import AUTH_CODE_DECLINED, AUTH_CODE_PAID, AUTH_CODE_REFUND_REFUSED


def test_paid_at_the_till(motp_sandbox, db):
    payment = services.create_quick_payment(Decimal("12.50"), AUTH_CODE_PAID)
    assert payment.status == Payment.Status.SUCCEEDED


def test_declined_card(motp_sandbox, db):
    payment = services.create_quick_payment(Decimal("12.50"), AUTH_CODE_DECLINED)
    assert payment.status == Payment.Status.FAILED
    assert "insufficient balance" in payment.message


def test_qr_code_paid_by_the_buyer(motp_sandbox, db):
    payment = services.create_native_payment(Decimal("3.00"))
    motp_sandbox.pay(payment.out_trade_no)
    assert services.sync_payment(payment).status == Payment.Status.SUCCEEDED


def test_lost_answer_is_not_paid_twice(motp_sandbox, db):
    motp_sandbox.fault("reset", operation="quick_pay", when="after")
    payment = services.create_quick_payment(Decimal("5.00"), AUTH_CODE_PAID)
    assert payment.status == Payment.Status.PENDING  # the outcome is unknown
    assert services.sync_payment(payment).status == Payment.Status.SUCCEEDED
    assert motp_sandbox.calls("quick_pay") == 1


def test_refund_refused_by_the_wallet(motp_sandbox, db):
    payment = services.create_quick_payment(Decimal("7.00"), AUTH_CODE_REFUND_REFUSED)
    refund = services.refund_payment(payment, reason="changed their mind")
    assert refund.status == Refund.Status.FAILED
    payment.refresh_from_db()
    assert payment.refundable_amount == Decimal("7.00")


@pytest.mark.django_db(transaction=True)  # signals are sent after commit
def test_receiver_hears_of_the_payment(motp_sandbox):
    heard = []

    def receiver(sender, payment, late, **kwargs):
        heard.append((payment.reference, late))

    payment_succeeded.connect(receiver)
    try:
        services.create_quick_payment(Decimal("9.00"), AUTH_CODE_PAID, reference="order 1")
    finally:
        payment_succeeded.disconnect(receiver)
    assert heard == [("order 1", False)]
