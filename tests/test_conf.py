import warnings
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_motp.conf import DEFAULT_ENDPOINTS, motp_settings
from django_motp.exceptions import MOTPConfigurationError


def test_defaults_apply_to_keys_not_set(settings):
    settings.MOTP = {"BASE_URL": "https://gw.example.com", "USERNAME": "u", "PASSWORD": "p"}
    assert motp_settings.SERVICE_ID == 30
    assert motp_settings.CURRENCY == "USD"
    assert motp_settings.TIMEOUT == 10
    assert motp_settings.QUICK_PAY_TIMEOUT == 45
    assert motp_settings.POLL_INTERVAL == 3
    assert motp_settings.QUICK_PAY_DEADLINE == 45
    assert motp_settings.NATIVE_PAY_DEADLINE == 7200
    assert motp_settings.REFUND_DEADLINE == 86400
    assert motp_settings.TOKEN_TTL == 50
    assert motp_settings.LOG_API_CALLS is True
    assert Decimal("0") == motp_settings.FEE_RATE
    assert "USERPAYING" in motp_settings.PENDING_MESSAGES


@pytest.mark.parametrize("key", ["BASE_URL", "USERNAME", "PASSWORD"])
def test_missing_required_key_names_it(settings, key):
    settings.MOTP = {"BASE_URL": "https://gw.example.com", "USERNAME": "u", "PASSWORD": "p"}
    del settings.MOTP[key]
    with pytest.raises(MOTPConfigurationError, match=key):
        getattr(motp_settings, key)


def test_configuration_error_is_improperly_configured(settings):
    settings.MOTP = {}
    with pytest.raises(ImproperlyConfigured):
        _ = motp_settings.PASSWORD


def test_no_motp_dict_at_all(settings):
    del settings.MOTP
    assert motp_settings.TIMEOUT == 10
    with pytest.raises(MOTPConfigurationError, match="BASE_URL"):
        _ = motp_settings.BASE_URL


def test_override_settings_takes_effect_at_once(settings):
    settings.MOTP = {**settings.MOTP, "TIMEOUT": 3}
    assert motp_settings.TIMEOUT == 3
    settings.MOTP = {**settings.MOTP, "TIMEOUT": 7}
    assert motp_settings.TIMEOUT == 7


def test_endpoints_merge_over_the_defaults(settings):
    settings.MOTP = {**settings.MOTP, "ENDPOINTS": {"refund": "/v2/refund"}}
    endpoints = motp_settings.ENDPOINTS
    assert endpoints["refund"] == "/v2/refund"
    assert endpoints["token"] == DEFAULT_ENDPOINTS["token"]


def test_fee_rate_is_decimal(settings):
    settings.MOTP = {**settings.MOTP, "FEE_RATE": "2.5"}
    assert Decimal("2.5") == motp_settings.FEE_RATE


def test_unknown_setting_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOPE"):
        _ = motp_settings.NOPE


def test_deprecations_of_our_code_and_djangos_removals_are_errors_in_the_suite():
    # tox.ini's filterwarnings, so that the next Django is no surprise.
    from django.utils.deprecation import RemovedInNextVersionWarning

    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old", DeprecationWarning, "conf.py", 1, module="django_motp.conf")
    with pytest.raises(RemovedInNextVersionWarning):
        warnings.warn_explicit(
            "old", RemovedInNextVersionWarning, "query.py", 1, module="django.db.models.query"
        )
