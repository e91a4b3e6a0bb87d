"""When payments and refunds are checked next, with the clock in the test's hands."""

from datetime import UTC, datetime, timedelta

import pytest

from django_motp import schedule

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def gap(method, age, deadline=None):
    deadline = deadline or schedule.payment_deadline(method, T0)
    return (schedule.next_payment_check(method, T0, deadline, at(age)) - at(age)).total_seconds()


def test_deadlines_follow_the_settings(settings):
    assert schedule.payment_deadline("quick", T0) == at(45)
    assert schedule.payment_deadline("jsapi", T0) == at(45)
    assert schedule.payment_deadline("native", T0) == at(7200)
    settings.MOTP = {**settings.MOTP, "QUICK_PAY_DEADLINE": 60, "NATIVE_PAY_DEADLINE": 600}
    assert schedule.payment_deadline("quick", T0) == at(60)
    assert schedule.payment_deadline("native", T0) == at(600)
    assert schedule.refund_deadline(T0) == at(86400)


@pytest.mark.parametrize("age", [0, 3, 20, 41])
def test_quick_pay_is_checked_every_poll_interval(age):
    assert gap("quick", age) == 3


def test_quick_pay_check_never_goes_past_the_deadline():
    assert gap("quick", 44) == 1
    assert gap("quick", 45) == 0
    assert gap("quick", 50) == 0  # overdue: check (and expire) now


def test_poll_interval_setting_is_used(settings):
    settings.MOTP = {**settings.MOTP, "POLL_INTERVAL": 2}
    assert gap("quick", 10) == 2
    assert gap("native", 10) == 2


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0, 3), (59, 3), (60, 3), (120, 12), (300, 30), (600, 60), (3600, 60), (7000, 60)],
)
def test_native_pay_backs_off_after_the_first_minute_to_at_most_60s(age, expected):
    assert gap("native", age) == expected


def test_native_pay_check_lands_on_its_deadline():
    assert gap("native", 7190) == 10


def test_late_checks_at_each_offset_after_settling(settings):
    assert [schedule.late_check(T0, done) for done in range(4)] == [at(60), at(300), at(1800), None]
    settings.MOTP = {**settings.MOTP, "LATE_CHECKS": [600, 30]}
    assert [schedule.late_check(T0, done) for done in range(3)] == [at(30), at(600), None]
    settings.MOTP = {**settings.MOTP, "LATE_CHECKS": []}
    assert schedule.late_check(T0, 0) is None


@pytest.mark.parametrize(
    ("age", "expected"), [(0, 3), (60, 3), (100, 10), (2000, 200), (50000, 300)]
)
def test_refunds_back_off_to_at_most_five_minutes(age, expected):
    deadline = schedule.refund_deadline(T0)
    assert (schedule.next_refund_check(T0, deadline, at(age)) - at(age)).total_seconds() == expected


def test_refund_check_lands_on_its_deadline():
    deadline = schedule.refund_deadline(T0)
    assert schedule.next_refund_check(T0, deadline, at(86300)) == deadline


def test_no_answer_is_retried_on_schedule_then_slowly_past_the_deadline():
    deadline = at(45)
    assert schedule.retry_without_answer(at(13), deadline, at(10)) == at(13)
    assert schedule.retry_without_answer(at(10), deadline, at(10)) == at(13)  # at least 3 s on
    assert schedule.retry_without_answer(at(45), deadline, at(45)) == at(105)
    assert schedule.retry_without_answer(at(500), None, at(500)) == at(560)
