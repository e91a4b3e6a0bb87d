"""Idempotency-Key on the API's POSTs: replay, conflicting bodies, requests still running,
validation errors, expiry and purge, and concurrent requests with one key."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from django_motp.models import IdempotencyKey, Payment, Refund
from django_motp.testing import AUTH_CODE_DECLINED, AUTH_CODE_PAID, AUTH_CODE_PIN
from tests.api_helpers import PAYMENTS
from tests.helpers import at_once, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.fixtures_api"]

ALL_PERMISSIONS = ("view_payment", "add_payment", "refund_payment")
QUICK = {"method": "quick", "amount": "10.00", "auth_code": AUTH_CODE_PAID}


def post(client, body, key, path=PAYMENTS):
    extra = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, body, format="json", **extra)


def test_a_retry_replays_the_first_answer_without_a_second_payment(api, motp_sandbox):
    first = post(api, QUICK, "till-1-0001")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    again = post(api, QUICK, "till-1-0001")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Payment.objects.count() == 1
    assert motp_sandbox.calls("quick_pay") == 1


def test_the_stored_answer_is_replayed_even_after_the_payment_changed(api, motp_sandbox):
    native = {"method": "native", "amount": "4.00"}
    first = post(api, native, "qr-1").json()
    motp_sandbox.pay(first["out_trade_no"])
    assert api.post(f"{PAYMENTS}{first['out_trade_no']}/sync/").json()["status"] == "succeeded"
    again = post(api, native, "qr-1")
    assert again.status_code == 201
    assert again.json() == first  # the first answer, as Stripe does: poll GET for the news
    assert again.json()["status"] == "pending"


def test_a_decline_is_replayed_as_a_402(api, motp_sandbox):
    body = {**QUICK, "auth_code": AUTH_CODE_DECLINED}
    first = post(api, body, "k-declined")
    assert first.status_code == 402
    again = post(api, body, "k-declined")
    assert again.status_code == 402
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert motp_sandbox.calls("quick_pay") == 1


def test_the_order_of_a_json_objects_members_does_not_matter(api, motp_sandbox):
    post(api, QUICK, "k-order")
    text = f'{{"auth_code": "{AUTH_CODE_PAID}", "amount": "10.00", "method": "quick"}}'
    again = api.post(
        PAYMENTS, text, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-order"
    )
    assert again["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1


def test_the_same_key_with_another_body_or_path_is_a_422(api, motp_sandbox):
    paid = post(api, QUICK, "k-1").json()
    response = post(api, {**QUICK, "amount": "10.01"}, "k-1")
    assert response.status_code == 422
    assert "different request" in response.json()["detail"]
    refund = post(api, {}, "k-1", path=f"{PAYMENTS}{paid['out_trade_no']}/refunds/")
    assert refund.status_code == 422
    assert Payment.objects.count() == 1
    assert Refund.objects.count() == 0
    assert motp_sandbox.calls("quick_pay") == 1
    assert motp_sandbox.calls("refund") == 0


def test_a_400_stores_nothing_so_the_corrected_request_can_use_the_key(api, motp_sandbox):
    bad = post(api, {**QUICK, "amount": "10.001"}, "k-fix")
    assert bad.status_code == 400
    assert IdempotencyKey.objects.count() == 0
    assert Payment.objects.count() == 0
    refused_by_the_service = post(api, {**QUICK, "auth_code": "12345"}, "k-fix")
    assert refused_by_the_service.status_code == 400
    assert IdempotencyKey.objects.count() == 0
    fixed = post(api, QUICK, "k-fix")
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed
    assert Payment.objects.count() == 1


def test_a_key_still_running_is_a_409_then_replayed(api, motp_sandbox):
    motp_sandbox.configure(pin_delay=2)  # the buyer takes 2 s to type the PIN
    body = {**QUICK, "auth_code": AUTH_CODE_PIN}
    first: list = []

    def till():
        try:
            first.append(post(api, body, "k-pin"))
        finally:
            connection.close()

    thread = threading.Thread(target=till)
    thread.start()
    try:
        wait_until(lambda: IdempotencyKey.objects.filter(key="k-pin", status_code=None).exists())
        retry = post(api, body, "k-pin")
        assert retry.status_code == 409
        assert "still being processed" in retry.json()["detail"]
    finally:
        thread.join()
    assert first[0].status_code == 201
    replay = post(api, body, "k-pin")
    assert replay.status_code == 201
    assert replay.json() == first[0].json()
    assert Payment.objects.count() == 1
    assert motp_sandbox.calls("quick_pay") == 1


def test_keys_belong_to_their_user(make_user, motp_sandbox):
    tills = []
    for _ in range(2):
        client = APIClient()
        client.force_authenticate(make_user(*ALL_PERMISSIONS))
        tills.append(client)
    answers = [post(till, QUICK, "shared-key") for till in tills]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json()["out_trade_no"] != answers[1].json()["out_trade_no"]
    assert Payment.objects.count() == 2


def test_a_project_can_share_keys_between_tills(make_user, motp_sandbox):
    from django.db.transaction import non_atomic_requests
    from rest_framework.test import APIRequestFactory, force_authenticate

    from django_motp.api.views import PaymentViewSet

    class StoreWide(PaymentViewSet):
        def get_idempotency_scope(self):
            return "store:10001"

    view = non_atomic_requests(StoreWide.as_view({"post": "create"}))
    answers = []
    for _ in range(2):
        request = APIRequestFactory().post(
            PAYMENTS, QUICK, format="json", HTTP_IDEMPOTENCY_KEY="receipt-000481"
        )
        force_authenticate(request, make_user(*ALL_PERMISSIONS))
        answers.append(view(request))
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[1]["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
    assert IdempotencyKey.objects.get().scope == "store:10001"


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_empty_or_too_long_key_is_a_400(api, motp_sandbox, key):
    response = post(api, QUICK, key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert Payment.objects.count() == 0
    assert motp_sandbox.calls() == 0


def test_a_key_of_255_characters_is_fine(api, motp_sandbox):
    assert post(api, QUICK, "k" * 255).status_code == 201
    assert post(api, QUICK, "k" * 255)["Idempotent-Replayed"] == "true"


def test_without_a_key_each_post_is_a_new_payment(api, motp_sandbox):
    assert post(api, QUICK, None).status_code == 201
    assert post(api, QUICK, None).status_code == 201
    assert Payment.objects.count() == 2
    assert IdempotencyKey.objects.count() == 0


def test_refund_and_sync_are_replayed_too(api, motp_sandbox):
    paid = post(api, QUICK, None).json()["out_trade_no"]
    refunds = f"{PAYMENTS}{paid}/refunds/"
    first = post(api, {"amount": "2.00"}, "r-1", path=refunds)
    assert first.status_code == 201
    again = post(api, {"amount": "2.00"}, "r-1", path=refunds)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Refund.objects.count() == 1
    assert motp_sandbox.calls("refund") == 1
    checks = motp_sandbox.calls("check_payment")
    sync = f"{PAYMENTS}{paid}/sync/"
    assert post(api, None, "s-1", path=sync).status_code == 200
    assert post(api, None, "s-1", path=sync)["Idempotent-Replayed"] == "true"
    assert motp_sandbox.calls("check_payment") == checks


def test_a_404_is_stored_and_replayed(api, motp_sandbox):
    url = f"{PAYMENTS}NOSUCH/refunds/"
    assert post(api, {}, "k-404", path=url).status_code == 404
    again = post(api, {}, "k-404", path=url)
    assert again.status_code == 404
    assert again["Idempotent-Replayed"] == "true"


def test_an_expired_key_is_free_again_and_purged(api, motp_sandbox, settings):
    settings.MOTP = {**settings.MOTP, "IDEMPOTENCY_KEY_TTL": 3600}
    post(api, QUICK, "old")
    post(api, QUICK, "fresh")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(seconds=3601)
    )
    again = post(api, QUICK, "old")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert Payment.objects.count() == 3

    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(seconds=3601)
    )
    out = StringIO()
    call_command("motp_purge_idempotency_keys", stdout=out)
    assert "Deleted 1 idempotency keys" in out.getvalue()
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert post(api, QUICK, "fresh")["Idempotent-Replayed"] == "true"


def test_a_server_error_is_stored_so_a_retry_does_not_run_twice(api, motp_sandbox, settings):
    post(api, QUICK, None)  # the client exists; then the configuration breaks
    api.raise_request_exception = False
    settings.MOTP = {**settings.MOTP, "PASSWORD": ""}
    first = post(api, QUICK, "k-500")
    assert first.status_code == 500
    again = post(api, QUICK, "k-500")
    assert again.status_code == 500
    assert again["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1


def test_the_views_take_money_even_with_atomic_requests(api, motp_sandbox, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    paid = post(api, QUICK, "atomic-1")
    assert paid.status_code == 201
    refunds = f"{PAYMENTS}{paid.json()['out_trade_no']}/refunds/"
    assert post(api, {}, "atomic-2", path=refunds).status_code == 201
    assert post(api, QUICK, "atomic-1")["Idempotent-Replayed"] == "true"


@pytest.mark.postgres
def test_concurrent_refunds_with_one_key_make_one_refund(api, make_user, motp_sandbox):
    paid = post(api, QUICK, None).json()["out_trade_no"]
    user = make_user(*ALL_PERMISSIONS)

    def till():
        client = APIClient()
        client.force_authenticate(user)
        return post(client, {"amount": "1.00"}, "refund-key", path=f"{PAYMENTS}{paid}/refunds/")

    answers = at_once(till, times=6)
    assert sorted({a.status_code for a in answers}) in ([201], [201, 409])
    assert Refund.objects.count() == 1
    assert motp_sandbox.calls("refund") == 1


@pytest.mark.postgres
def test_concurrent_requests_with_one_key_make_one_payment(make_user, motp_sandbox):
    user = make_user(*ALL_PERMISSIONS)

    def till():
        client = APIClient()
        client.force_authenticate(user)
        return post(client, {**QUICK, "auth_code": AUTH_CODE_PIN}, "one-key")

    answers = at_once(till, times=6)
    first = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a]
    assert len(first) == 1
    for answer in answers:
        assert answer.status_code in (201, 409)
        if answer.status_code == 201:
            assert answer.json() == first[0].json()
    assert Payment.objects.count() == 1
    assert motp_sandbox.calls("quick_pay") == 1
    assert IdempotencyKey.objects.get().status_code == 201
