"""The refunds, API call and event admins, and the "needs attention" count on the index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_motp import services
from django_motp.models import ApiCall, Event, Payment, Refund
from django_motp.testing import AUTH_CODE_PAID, AUTH_CODE_REFUND_PROCESSING
from tests.fixtures_admin import changelist, client_for, make_payment, make_refund, page_text

pytestmark = pytest.mark.django_db(transaction=True)

R = Refund.Status


# Refunds --------------------------------------------------------------------------------------


def test_refund_changelist_shows_payment_amount_reason_status_and_who(motp_sandbox):
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    manager = client_for("manager")
    manager.post(
        f"/admin/django_motp/payment/{payment.pk}/refund/", {"amount": "2.50", "reason": "broken"}
    )
    refund = Refund.objects.get()
    response = manager.get(changelist("refund"))
    text = page_text(response)
    for seen in (refund.out_refund_no, payment.out_trade_no, "2.50 USD", "broken", "Pending"):
        assert seen in text
    assert refund.requested_by.username in text
    assert f'href="/admin/django_motp/payment/{payment.pk}/change/"' in response.content.decode()
    succeeded_only = page_text(manager.get(changelist("refund") + "?status__exact=succeeded"))
    assert refund.out_refund_no not in succeeded_only


def test_check_refund_status_action(motp_sandbox):
    payment = services.create_quick_payment("10.00", AUTH_CODE_REFUND_PROCESSING)
    motp_sandbox.configure(refund_delay=0)
    refund = services.refund_payment(payment, "3.00")
    data = {"action": "check_status", "_selected_action": [refund.pk]}
    response = client_for("manager").post(changelist("refund"), data, follow=True)
    assert Refund.objects.get().status == R.SUCCEEDED
    assert f"Checked, now Succeeded (1): {refund.out_refund_no}" in page_text(response)


def test_refund_changelist_queries_do_not_grow_with_rows():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer = client_for("viewer")

    def queries(rows: int) -> int:
        Refund.objects.all().delete()
        Payment.objects.all().delete()
        for _ in range(rows):
            make_refund(make_payment())
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(changelist("refund")).status_code == 200
        return len(captured)

    assert queries(20) == queries(100)


def test_resolve_button_only_for_an_overdue_unsettled_refund_and_refund_payment():
    payment = make_payment()
    overdue = make_refund(payment, deadline_at=timezone.now() - timedelta(hours=1))
    fresh = make_refund(make_payment())

    def page(client, refund):
        return page_text(client.get(f"/admin/django_motp/refund/{refund.pk}/change/"))

    manager, viewer = client_for("manager"), client_for("viewer")
    assert "Resolve\u2026" in page(manager, overdue)
    assert "Resolve\u2026" not in page(manager, fresh)
    assert "Resolve\u2026" not in page(viewer, overdue)
    resolve = f"/admin/django_motp/refund/{overdue.pk}/resolve/"
    assert viewer.get(resolve).status_code == 403
    assert viewer.post(resolve, {"outcome": "succeeded", "note": "x"}).status_code == 403
    assert Refund.objects.get(pk=overdue.pk).status == R.PENDING


def test_the_resolve_form_wants_an_outcome_and_a_note():
    refund = make_refund(make_payment(), deadline_at=timezone.now() - timedelta(hours=1))
    response = client_for("manager").post(
        f"/admin/django_motp/refund/{refund.pk}/resolve/", {"outcome": "succeeded", "note": ""}
    )
    assert response.status_code == 200
    assert "This field is required." in page_text(response)
    assert Refund.objects.get(pk=refund.pk).status == R.PENDING


# API calls ------------------------------------------------------------------------------------


def test_api_calls_are_listed_filtered_and_shown_redacted(motp_sandbox):
    payment = services.create_quick_payment("10.00", AUTH_CODE_PAID)
    viewer = client_for("viewer")
    listed = viewer.get(changelist("apicall") + "?operation=quick_pay").content.decode()
    assert payment.out_trade_no in listed
    assert '<td class="field-operation">quick_pay</td>' in listed
    assert '<td class="field-operation">token</td>' not in listed
    call = ApiCall.objects.get(operation="quick_pay")
    page = viewer.get(f"/admin/django_motp/apicall/{call.pk}/change/").content.decode()
    assert "[redacted]" in page
    assert payment.out_trade_no in page
    for secret in (AUTH_CODE_PAID, motp_sandbox.password):
        assert secret not in page
    token_calls = ApiCall.objects.filter(operation="token")
    for token_call in token_calls:
        token_page = viewer.get(f"/admin/django_motp/apicall/{token_call.pk}/change/")
        assert motp_sandbox.password not in token_page.content.decode()
    assert 'name="_save"' not in page
    assert "Add API call" not in page_text(viewer.get(changelist("apicall")))


# Events ---------------------------------------------------------------------------------------


def event(payment: Payment, **fields) -> Event:
    values = {"signal": "payment_succeeded", "old_status": "pending", "new_status": "succeeded"}
    values.update(fields)
    return Event.objects.create(payment=payment, **values)


def test_events_are_read_only_and_filter_undelivered():
    payment = make_payment(out_trade_no="EVT-1")
    event(payment, delivered_at=timezone.now())
    stuck = event(payment, attempts=2, last_error="ConnectionError: the shop's mailer is down")
    viewer = client_for("viewer")
    text = page_text(viewer.get(changelist("event") + "?delivery=undelivered"))
    assert "the shop's mailer is down" in text
    assert text.count("EVT-1") == 1
    page = viewer.get(f"/admin/django_motp/event/{stuck.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_deliver_again_needs_its_permission():
    event(make_payment(), attempts=1, last_error="boom")
    viewer_page = client_for("viewer").get(changelist("event")).content.decode()
    assert 'value="deliver_again"' not in viewer_page
    assert (
        'value="deliver_again"' in client_for("manager").get(changelist("event")).content.decode()
    )


# Needs attention ------------------------------------------------------------------------------


def test_the_admin_index_counts_what_needs_attention():
    make_payment(attention=Payment.Attention.DOUBLE_CHARGE)
    overdue = make_payment(status=Payment.Status.PENDING)
    Payment.objects.filter(pk=overdue.pk).update(deadline_at=timezone.now() - timedelta(hours=1))
    make_payment()  # fine
    make_refund(make_payment(), attention=Refund.Attention.RESOLVED_BY_HAND, status=R.SUCCEEDED)
    event(make_payment(), attempts=3, last_error="boom")
    response = client_for("manager").get("/admin/")
    text = page_text(response)
    assert "Needs attention" in text
    assert "2 payments" in text
    assert "1 refund" in text
    assert "1 undelivered event" in text
    content = response.content.decode()
    assert 'href="/admin/django_motp/payment/?attention=yes"' in content
    assert 'href="/admin/django_motp/event/?delivery=stuck"' in content
    # the cashier sees only what they may look at
    cashier_text = page_text(client_for("cashier").get("/admin/"))
    assert "2 payments" in cashier_text
    assert "1 refund" not in cashier_text
    assert "undelivered" not in cashier_text


def test_the_index_says_nothing_when_all_is_well():
    make_payment()
    assert "Needs attention" not in page_text(client_for("manager").get("/admin/"))
