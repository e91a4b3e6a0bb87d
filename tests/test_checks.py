import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_motp.checks import check_motp_settings

GOOD = {
    "BASE_URL": "https://gateway.example.com",
    "USERNAME": "merchant",
    "PASSWORD": "secret",
    "STORE_ID": "10001",
}


def ids(settings, motp, debug=False):
    settings.MOTP = motp
    settings.DEBUG = debug
    return [m.id for m in check_motp_settings()]


def test_good_configuration_is_silent(settings):
    assert ids(settings, GOOD) == []
    assert ids(settings, {**GOOD, "TOKEN_TTL": 0, "LATE_CHECKS": [60], "FEE_RATE": 2}) == []


@pytest.mark.parametrize("key", ["BASE_URL", "USERNAME", "PASSWORD"])
def test_e001_missing_required_key(settings, key):
    motp = {k: v for k, v in GOOD.items() if k != key}
    settings.MOTP = motp
    [message] = check_motp_settings()
    assert message.id == "django_motp.E001"
    assert key in message.msg


def test_e001_empty_value_and_no_dict(settings):
    assert ids(settings, {**GOOD, "PASSWORD": ""}) == ["django_motp.E001"]
    del settings.MOTP
    [message] = check_motp_settings()
    assert message.id == "django_motp.E001"
    assert "BASE_URL, USERNAME, PASSWORD" in message.msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BASE_URL", "ftp://gateway.example.com"),
        ("BASE_URL", "gateway.example.com"),
        ("TIMEOUT", -1),
        ("TIMEOUT", 0),
        ("POLL_INTERVAL", "3"),
        ("QUICK_PAY_DEADLINE", -45),
        ("NATIVE_PAY_DEADLINE", True),
        ("TOKEN_TTL", -5),
        ("LATE_CHECKS", [60, -1]),
        ("LATE_CHECKS", 60),
        ("ENDPOINTS", {"pay": "/x"}),
        ("ENDPOINTS", {"refund": ""}),
        ("ENDPOINTS", ["/x"]),
        ("FEE_RATE", -2),
        ("FEE_RATE", "abc"),
        ("SERVICE_ID", "30"),
        ("CURRENCY", "dollars"),
        ("PENDING_MESSAGES", "USERPAYING"),
        ("REFUND_DUPLICATES", "yes"),
        ("EVENT_RETENTION_DAYS", -1),
        ("EVENT_RETENTION_DAYS", 7.5),
    ],
)
def test_e002_malformed_values(settings, key, value):
    settings.MOTP = {**GOOD, key: value}
    messages = check_motp_settings()
    assert [m.id for m in messages] == ["django_motp.E002"]
    assert key in messages[0].msg


def test_w001_sandbox_url_with_debug_off(settings):
    sandbox = {**GOOD, "BASE_URL": "http://127.0.0.1:8765"}
    assert ids(settings, sandbox, debug=False) == ["django_motp.W001"]
    assert ids(settings, {**GOOD, "BASE_URL": "http://localhost:8765"}) == ["django_motp.W001"]
    assert ids(settings, sandbox, debug=True) == []
    assert ids(settings, GOOD, debug=False) == []


def test_w002_unknown_key(settings):
    settings.MOTP = {**GOOD, "TIMEOUTS": 5}
    [message] = check_motp_settings()
    assert message.id == "django_motp.W002"
    assert "TIMEOUTS" in message.msg


def test_checks_run_through_manage_py_check(settings):
    settings.MOTP = {**GOOD, "BASE_URL": "nope"}
    with pytest.raises(SystemCheckError, match=r"django_motp\.E002"):
        call_command("check")
    settings.MOTP = GOOD
    call_command("check")
