"""Who may call the REST API (permissions, authentication) and its OpenAPI description."""

from __future__ import annotations

import pytest

from django_motp.models import Payment, Refund
from tests.api_helpers import PAYMENTS, REFUNDS, pay, refund_url

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.fixtures_api"]


# Permissions ------------------------------------------------------------------------------------

READS = [PAYMENTS, REFUNDS]


def test_anonymous_callers_get_403_and_nothing_happens(client_for, motp_sandbox):
    anonymous = client_for(None)
    for url in READS:
        assert anonymous.get(url).status_code == 403
    response = pay(anonymous)
    assert response.status_code == 403
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


def test_each_action_needs_its_own_permission(make_user, client_for, motp_sandbox):
    reader = client_for(make_user("view_payment"))
    cashier = client_for(make_user("add_payment"))
    refunder = client_for(make_user("refund_payment"))
    paid = pay(cashier).json()["out_trade_no"]
    assert Payment.objects.count() == 1

    assert pay(reader).status_code == 403
    assert pay(refunder).status_code == 403
    for url in [*READS, f"{PAYMENTS}{paid}/"]:
        assert reader.get(url).status_code == 200
        assert cashier.get(url).status_code == 403
        assert refunder.get(url).status_code == 403
    assert reader.post(f"{PAYMENTS}{paid}/sync/").status_code == 200
    assert cashier.post(f"{PAYMENTS}{paid}/sync/").status_code == 403
    for client in (reader, cashier):
        assert client.post(refund_url(paid), {}, format="json").status_code == 403
    assert Refund.objects.count() == 0
    assert refunder.post(refund_url(paid), {}, format="json").status_code == 201
    assert Payment.objects.count() == 1


def test_the_permission_classes_come_from_the_setting(client_for, motp_sandbox, settings):
    settings.MOTP = {
        **settings.MOTP,
        "API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    }
    assert client_for(None).get(PAYMENTS).status_code == 200


def test_basic_authentication_works_for_a_terminal(make_user, motp_sandbox):
    from rest_framework.test import APIClient

    user = make_user("view_payment")
    terminal = APIClient()
    terminal.credentials(HTTP_AUTHORIZATION=_basic(user.username, "secret"))
    assert terminal.get(PAYMENTS).status_code == 200
    terminal.credentials(HTTP_AUTHORIZATION=_basic(user.username, "wrong"))
    response = terminal.get(PAYMENTS)
    assert response.status_code == 403
    assert response.json()["detail"] == "Invalid username/password."


def _basic(username, password):
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# Schema -----------------------------------------------------------------------------------------


def test_schema_describes_every_operation_answer_and_the_idempotency_key(api, capsys):
    response = api.get("/motp/schema/", {"format": "json"})
    assert response.status_code == 200
    doc = response.json()
    paths = doc["paths"]
    assert set(paths) == {
        "/motp/payments/",
        "/motp/payments/{out_trade_no}/",
        "/motp/payments/{out_trade_no}/sync/",
        "/motp/payments/{out_trade_no}/refunds/",
        "/motp/refunds/",
        "/motp/refunds/{out_refund_no}/",
        "/motp/schema/",
    }
    create = paths["/motp/payments/"]["post"]
    assert set(create["responses"]) == {"201", "202", "400", "402", "403", "409", "422"}
    header = [p for p in create["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in header] == ["Idempotency-Key"]
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PaymentCreate"
    )
    for path, operations in paths.items():
        if "post" in operations:
            names = {p["name"] for p in operations["post"]["parameters"] if p["in"] == "header"}
            assert names == {"Idempotency-Key"}, path
            assert {"409", "422", "403"} <= set(operations["post"]["responses"]), path
    refund = paths["/motp/payments/{out_trade_no}/refunds/"]["post"]
    assert {"201", "202", "400", "402", "404"} <= set(refund["responses"])
    listing = {p["name"] for p in paths["/motp/payments/"]["get"]["parameters"]}
    assert {"status", "method", "reference", "created_after", "created_before", "cursor"} <= listing
    components = doc["components"]["schemas"]
    assert "auth_code" not in components["Payment"]["properties"]
    assert components["Payment"]["properties"]["amount"]["type"] == "string"
    assert {"PaymentStatusEnum", "RefundStatusEnum"} <= set(components)
    assert "Warning" not in capsys.readouterr().err
