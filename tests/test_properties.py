"""Property-based tests (hypothesis): whatever bad input the services get (amounts, numbers,
codes, unicode, huge strings, wrong types), the answer is a ``ValidationError`` naming the
field, before anything is saved or sent: no row, no request at the gateway.

Each example breaks one argument and keeps the others valid, so the error must name that
argument; the sandbox's request count and the table sizes are compared before and after.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_motp import services
from django_motp.models import MAX_AMOUNT, Payment, Refund
from django_motp.testing import AUTH_CODE_PAID

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = settings(
    max_examples=int(os.environ.get("MOTP_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Text of any kind: unicode (every category but surrogates), control characters, huge.
any_text = st.one_of(
    st.text(max_size=40),
    st.text(min_size=300, max_size=5000),
    st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=30),
)
#: Values of the wrong type altogether (``wrong_types`` with None, ``not_none`` without).
not_none = st.one_of(
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=20),
)
wrong_types = st.one_of(st.none(), not_none)


def _not_an_amount(text: str) -> bool:
    try:
        value = Decimal(text.strip())
        return not (0 < value <= MAX_AMOUNT and value == value.quantize(Decimal("0.01")))
    except ArithmeticError:  # not a number, or too many digits to quantize
        return True


def _more_than_cents(value: Decimal) -> bool:
    try:
        return value != value.quantize(Decimal("0.01"))
    except ArithmeticError:  # too many digits to quantize: far above any amount
        return True


def _not_a_fee_rate(text: str) -> bool:
    try:
        value = Decimal(text.strip())
        return not (0 <= value <= 100 and value == value.quantize(Decimal("0.01")))
    except ArithmeticError:
        return True


bad_amounts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # never a float, even 19.9
    st.decimals(max_value=0, allow_nan=False),
    st.decimals(min_value=MAX_AMOUNT + Decimal("0.01"), allow_nan=False, allow_infinity=False),
    st.decimals(places=3, allow_nan=False, allow_infinity=False).filter(_more_than_cents),
    st.sampled_from([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-0")]),
    st.integers(max_value=0),
    st.integers(min_value=10**10),
    any_text.filter(_not_an_amount),
    st.sampled_from(["", " ", "1e3x", "1,00", "0x10", "12.345", "-1", "+0", "1e-5"]),
    not_none,
)


def _not_an_auth_code(value) -> bool:
    text = value.strip() if isinstance(value, str) else None
    return not (text and text.isascii() and text.isdigit() and 10 <= len(text) <= 24)


bad_auth_codes = st.one_of(
    any_text.filter(_not_an_auth_code),
    st.from_regex(r"\A[0-9]{1,9}\Z").filter(_not_an_auth_code),
    st.from_regex(r"\A[0-9]{25,60}\Z"),
    # Digits of other scripts (Arabic-Indic, Devanagari, full-width): no wallet's code.
    st.text(alphabet="٠١٢٣٤٥٦٧٨٩०१२३४५६७८९０１２３４５６７８９", min_size=10, max_size=24),
    # The spec's examples send the code as a JSON number: an int of 10 to 24 digits is a code.
    st.integers(max_value=10**9 - 1),
    st.integers(min_value=10**24),
    wrong_types,
)


def _not_an_out_no(value) -> bool:
    import re

    return not (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value))


bad_numbers = st.one_of(
    any_text.filter(_not_an_out_no),
    st.from_regex(r"\A[A-Za-z0-9_-]{33,80}\Z"),
    st.from_regex(r"\A[A-Za-z0-9]{1,20}\n\Z"),
    st.integers(),
    not_none,
)

#: Short text holding a NUL character, which PostgreSQL cannot store in a text column.
with_nul = st.tuples(st.text(max_size=10), st.text(max_size=10)).map(lambda p: f"{p[0]}\x00{p[1]}")

#: Any of the other arguments of a payment, broken: (argument, bad value).
bad_payment_options = st.one_of(
    st.tuples(st.sampled_from(["reference", "sub_store_name", "sub_store_id"]), with_nul),
    st.tuples(st.just("metadata"), st.builds(lambda text: {"note": text}, with_nul)),
    st.tuples(st.just("out_trade_no"), bad_numbers),
    st.tuples(st.just("store_id"), st.text(min_size=33, max_size=2000)),
    st.tuples(st.just("sub_store_id"), st.text(min_size=65, max_size=2000)),
    st.tuples(st.just("sub_store_name"), st.text(min_size=65, max_size=5000)),
    st.tuples(st.just("reference"), st.text(min_size=256, max_size=5000)),
    st.tuples(
        st.just("service_id"),
        st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), any_text, not_none),
    ),
    st.tuples(
        st.just("fee_rate"),
        st.one_of(
            st.floats(),
            st.decimals(min_value=Decimal("100.01"), allow_nan=False, allow_infinity=False),
            st.decimals(max_value=Decimal("-0.01"), allow_nan=False),
            st.decimals(places=3, min_value=0, max_value=100).filter(_more_than_cents),
            any_text.filter(_not_a_fee_rate),
            st.booleans(),
        ),
    ),
    st.tuples(
        st.just("metadata"),
        st.one_of(
            st.builds(lambda: {"when": object()}),
            st.builds(lambda n: {"ids": {n}}, st.integers()),
            st.just([1, 2, 3]),
            st.just("not a dict"),
        ),
    ),
)


def refused(call, sandbox, field: str | None) -> ValidationError:
    """Run ``call``; it must raise a ValidationError naming ``field`` (or a non-field one when
    None), with nothing saved and nothing sent."""
    before = (sandbox.calls(), Payment.objects.count(), Refund.objects.count())
    with pytest.raises(ValidationError) as caught:
        call()
    err = caught.value
    assert (sandbox.calls(), Payment.objects.count(), Refund.objects.count()) == before
    assert all(isinstance(m, str) and m.strip() for m in err.messages)
    if field is not None:
        assert field in err.message_dict, err.messages
    return err


@pytest.fixture
def valid_code() -> str:
    return AUTH_CODE_PAID


@EXAMPLES
@given(amount=bad_amounts, method=st.sampled_from(["native", "quick", "jsapi"]))
def test_a_bad_amount_is_refused_before_anything(motp_sandbox, valid_code, amount, method):
    if method == "native":
        call = lambda: services.create_native_payment(amount)  # noqa: E731
    else:
        create = getattr(services, f"create_{method}_payment")
        call = lambda: create(amount, valid_code)  # noqa: E731
    refused(call, motp_sandbox, "amount")


@EXAMPLES
@given(code=bad_auth_codes, method=st.sampled_from(["quick", "jsapi"]))
def test_a_bad_auth_code_is_refused_before_anything(motp_sandbox, code, method):
    create = getattr(services, f"create_{method}_payment")
    refused(lambda: create(Decimal("10.00"), code), motp_sandbox, "auth_code")


@EXAMPLES
@given(option=bad_payment_options, method=st.sampled_from(["native", "quick", "jsapi"]))
def test_any_bad_payment_option_is_refused_before_anything(
    motp_sandbox, valid_code, option, method
):
    name, value = option
    if method == "native":
        call = lambda: services.create_native_payment("10.00", **{name: value})  # noqa: E731
    else:
        create = getattr(services, f"create_{method}_payment")
        call = lambda: create("10.00", valid_code, **{name: value})  # noqa: E731
    refused(call, motp_sandbox, name)


@pytest.fixture
def paid(motp_sandbox) -> Payment:
    payment = services.create_quick_payment(Decimal("50.00"), AUTH_CODE_PAID)
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


@EXAMPLES
@given(
    option=st.one_of(
        st.tuples(st.just("amount"), bad_amounts),
        st.tuples(st.just("amount"), st.sampled_from(["50.01", "1000000", Decimal("99.99")])),
        st.tuples(st.just("out_refund_no"), bad_numbers),
        st.tuples(st.just("reason"), st.text(min_size=256, max_size=5000)),
        st.tuples(st.just("reason"), with_nul),
        st.tuples(
            st.just("reason"),
            st.one_of(st.integers(min_value=1), st.lists(st.integers(), min_size=1), st.just(True)),
        ),
    )
)
def test_a_bad_refund_is_refused_before_anything(motp_sandbox, paid, option):
    name, value = option
    amount = value if name == "amount" else Decimal("1.00")
    extra = {} if name == "amount" else {name: value}
    refused(lambda: services.refund_payment(paid, amount, **extra), motp_sandbox, name)
    paid.refresh_from_db()
    assert (paid.reserved_amount, paid.refunded_amount) == (0, 0)
