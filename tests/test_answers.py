"""The table of what each gateway answer means (``django_motp.services.answers``), and the shape
of the services package (no import of tasks, small modules)."""

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from django_motp.exceptions import MOTPAPIError, MOTPAuthError, MOTPTransportError
from django_motp.services import answers
from django_motp.services.answers import Meaning

OURS = {"out_trade_no": "P-1", "amount": Decimal("4.00"), "currency": "USD"}
PAID = {"is_success": True, "out_trade_no": "P-1", "amount": Decimal("4.00"), "currency": "USD"}
REFUND = {
    "out_trade_no": "P-1",
    "out_refund_no": "R-1",
    "amount": Decimal("1.00"),
    "currency": "USD",
}
REFUNDED = {**REFUND, "is_success": True}


@pytest.mark.parametrize(
    ("answer", "meaning"),
    [
        (PAID, Meaning.PAID),
        ({**PAID, "amount": Decimal("4.0")}, Meaning.PAID),  # the same amount
        ({**PAID, "currency": "usd"}, Meaning.PAID),
        ({k: v for k, v in PAID.items() if k not in ("amount", "currency")}, Meaning.PAID),
        ({**PAID, "out_trade_no": "P-2"}, Meaning.MISMATCH),
        ({**PAID, "out_trade_no": None}, Meaning.MISMATCH),
        ({**PAID, "amount": Decimal("4.08")}, Meaning.MISMATCH),  # the buyer's total
        ({**PAID, "currency": "CNY"}, Meaning.MISMATCH),
        ({**PAID, "is_success": False, "message": "NOTPAY"}, Meaning.NOT_YET),
        ({**PAID, "is_success": False, "message": "PAYERROR: declined"}, Meaning.NOT_YET),
        ({**PAID, "is_success": False, "out_trade_no": "P-2"}, Meaning.NO_ANSWER),
        ({**PAID, "is_success": "yes"}, Meaning.NO_ANSWER),
        (MOTPAPIError("Order P-1 not found"), Meaning.NOT_FOUND),
        (MOTPAPIError("SYSTEMERROR"), Meaning.NO_ANSWER),
        (MOTPAPIError("Too many requests"), Meaning.NO_ANSWER),
        (MOTPAPIError("IP not whitelisted"), Meaning.NO_ANSWER),
        (MOTPAuthError("token invalid"), Meaning.NO_ANSWER),
        (MOTPTransportError("reset"), Meaning.NO_ANSWER),
    ],
)
def test_payment_status_answers(answer, meaning):
    assert answers.payment_status(answer, **OURS)[0] is meaning


@pytest.mark.parametrize(
    ("answer", "only_refund", "meaning"),
    [
        (REFUNDED, False, Meaning.REFUNDED),
        ({**REFUNDED, "out_refund_no": None}, True, Meaning.REFUNDED),
        ({**REFUNDED, "out_refund_no": None}, False, Meaning.MISMATCH),
        ({**REFUNDED, "out_refund_no": "R-2"}, True, Meaning.MISMATCH),
        ({**REFUNDED, "out_trade_no": "P-2"}, True, Meaning.MISMATCH),
        ({**REFUNDED, "amount": Decimal("10.00")}, True, Meaning.MISMATCH),
        ({**REFUNDED, "currency": "CNY"}, True, Meaning.MISMATCH),
        ({**REFUND, "is_success": False, "message": "PROCESSING"}, False, Meaning.NOT_YET),
        ({**REFUND, "is_success": False, "message": "Refund processing"}, False, Meaning.NOT_YET),
        ({**REFUND, "is_success": False, "message": "REFUNDNOTALLOWED"}, False, Meaning.REFUSED),
        ({**REFUND, "is_success": False, "out_refund_no": "R-2"}, False, Meaning.NO_ANSWER),
        (MOTPAPIError("Refund R-1 of order P-1 not found"), False, Meaning.NOT_FOUND),
        (MOTPAPIError("SYSTEMERROR"), False, Meaning.NO_ANSWER),
        (MOTPAPIError("Refund processing"), False, Meaning.NO_ANSWER),
        (MOTPTransportError("502"), False, Meaning.NO_ANSWER),
    ],
)
def test_refund_status_answers(answer, only_refund, meaning):
    found = answers.refund_status(
        answer,
        out_trade_no="P-1",
        out_refund_no="R-1",
        amount=Decimal("1.00"),
        currency="USD",
        only_refund=only_refund,
    )
    assert found[0] is meaning


@pytest.mark.parametrize(
    ("answer", "meaning"),
    [
        ({"result_code": "SUCCESS"}, Meaning.ACCEPTED),
        ({}, Meaning.ACCEPTED),
        ({"result_code": "USERPAYING"}, Meaning.IN_PROGRESS),
        (MOTPAPIError("USERPAYING: waiting for the PIN"), Meaning.IN_PROGRESS),
        (MOTPAPIError("PAYERROR: insufficient balance"), Meaning.DECLINED),
        (MOTPAPIError("Unauthorized payment method for this wallet"), Meaning.DECLINED),
        (MOTPAuthError("token expired"), Meaning.AUTH_FAILED),
        (MOTPTransportError("timeout"), Meaning.NO_ANSWER),
    ],
)
def test_creation_answers(answer, meaning):
    assert answers.creation(answer)[0] is meaning


@pytest.mark.parametrize(
    ("message", "in_progress"),
    [
        ("USERPAYING: waiting for the buyer to enter the payment PIN", True),
        ("SYSTEMERROR", True),
        ("PROCESSING: refund in progress", True),
        ("Refund processing", True),
        ("refund PENDING at the bank", True),
        ("Payment pending.", True),
        ("Error processing refund", False),
        ("PAYERROR: insufficient balance", False),
        ("NOTUSERPAYING", False),
        ("", False),
    ],
)
def test_in_progress_codes_and_words(message, in_progress):
    assert answers.is_in_progress(message) is in_progress


def test_pending_messages_setting_is_used(settings):
    settings.MOTP = {**settings.MOTP, "PENDING_MESSAGES": ["WAITING"]}
    assert answers.is_in_progress("WAITING: bank")
    assert not answers.is_in_progress("SYSTEMERROR")


SERVICES = Path(answers.__file__).parent


def test_the_services_never_import_the_tasks():
    for module in SERVICES.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        assert not [name for name in imported if "tasks" in name], module.name


def test_no_services_module_is_over_400_lines():
    sizes = {m.name: len(m.read_text().splitlines()) for m in SERVICES.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes
