"""The example shop's pages against the real sandbox: a buyer checks out, is shown a QR code,
and the order page and its status endpoint follow the payment and the refunds.

The worker's part (polling) is played here by ``sync_payment``/``sync_refund``; the end-to-end
test (tests/test_demo.py) runs the real worker.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from django_motp import services
from django_motp.models import Payment, Refund
from shop.models import Order
from tests.helpers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("shopsite.urls")]


def checkout(client, **quantities):
    data = {f"qty_{sku}": str(quantity) for sku, quantity in quantities.items()}
    return client.post("/", data, follow=True)


def only_order():
    return Order.objects.get()


def test_the_checkout_page_lists_the_products(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("Kampot pepper, 100 g", "Palm sugar, 500 g", "Jasmine tea, 250 g", "Silk scarf"):
        assert name in html
    assert "Pay with WeChat Pay / Alipay" in html


def test_checkout_creates_the_order_and_its_qr_payment(client, motp_sandbox):
    page = checkout(client, pepper=2, scarf=1)

    order = only_order()
    assert page.redirect_chain == [(f"/orders/{order.number}/", 302)]
    assert order.total == Decimal("31.00")  # 2 x 6.50 + 18.00, priced by the shop
    assert order.description == "2 x Kampot pepper, 100 g, 1 x Silk scarf"
    assert order.status == Order.Status.OPEN
    payment = Payment.objects.get()
    assert (payment.reference, payment.amount, payment.status) == (
        order.number,
        Decimal("31.00"),
        Payment.Status.PENDING,
    )
    assert motp_sandbox.order(payment.out_trade_no)["amount"] == Decimal("31.00")
    html = page.content.decode()
    assert "<svg" in html  # the QR code, drawn by the server
    assert "31.00 USD" in html
    assert "Waiting for your payment" in html
    assert f"/orders/{order.number}/status/" in html  # what the page's script follows


def test_the_order_turns_paid_then_partly_refunded(client, motp_sandbox):
    checkout(client, tea=2)
    order = only_order()
    payment = Payment.objects.get()
    status_url = f"/orders/{order.number}/status/"
    assert client.get(status_url).json()["settled"] is False

    motp_sandbox.pay(payment.out_trade_no)
    services.sync_payment(payment)  # what the worker's poll does

    status = client.get(status_url).json()
    assert (status["status"], status["payments"][0]["status"]) == ("paid", "succeeded")
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert "Thank you! Your payment was received." in page
    assert "<svg" not in page

    refund = services.refund_payment(Payment.objects.get(), Decimal("4.25"), reason="one tin")
    wait_until(lambda: services.sync_refund(Refund.objects.get(pk=refund.pk)).is_final)

    status = client.get(status_url).json()
    assert status["status"] == "partly_refunded"
    assert status["refunded_amount"] == "4.25"
    assert status["settled"] is True
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert "Partly refunded" in page
    assert "\N{MINUS SIGN}4.25" in page


def test_an_expired_qr_code_leaves_the_order_open_with_a_new_one_on_request(client, motp_sandbox):
    checkout(client, sugar=1)
    order = only_order()
    first = Payment.objects.get()
    # The buyer declined; the gateway keeps answering "not paid" until the deadline passes.
    motp_sandbox.decline(first.out_trade_no)
    Payment.objects.filter(pk=first.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert services.sync_payment(Payment.objects.get(pk=first.pk)).status == "expired"

    page = client.get(f"/orders/{order.number}/").content.decode()
    assert "This payment did not go through. You have not been charged." in page
    assert client.get(f"/orders/{order.number}/status/").json()["settled"] is True

    client.post(f"/orders/{order.number}/pay/")
    client.post(f"/orders/{order.number}/pay/")  # a second click while one is pending: no more

    assert Payment.objects.filter(reference=order.number).count() == 2
    assert only_order().status == Order.Status.OPEN
    assert "<svg" in client.get(f"/orders/{order.number}/").content.decode()


def test_a_checkout_without_items_is_refused_before_any_gateway_call(client, motp_sandbox):
    page = checkout(client, pepper=0, tea=-1)
    assert "Ensure this value is greater than or equal to 0." in page.content.decode()
    page = checkout(client, pepper=0)
    assert "Choose at least one item." in page.content.decode()
    assert not Order.objects.exists()
    assert motp_sandbox.calls() == 0


def test_only_the_buyer_and_staff_see_an_order(client, motp_sandbox):
    checkout(client, tea=1)
    number = only_order().number

    stranger = Client()
    assert stranger.get(f"/orders/{number}/").status_code == 404
    assert stranger.get(f"/orders/{number}/status/").status_code == 404
    assert stranger.post(f"/orders/{number}/pay/").status_code == 404

    clerk = User.objects.create_user("clerk", password="x", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    staff = Client()
    staff.force_login(clerk)
    assert staff.get(f"/orders/{number}/status/").json()["number"] == number


def test_the_page_keeps_following_while_anything_is_under_way(client, motp_sandbox):
    checkout(client, tea=1)
    order = only_order()
    status_url = f"/orders/{order.number}/status/"
    payment = Payment.objects.get()
    # Paid, but the order's receiver has not run yet (its event is on the way).
    Payment.objects.filter(pk=payment.pk).update(status=Payment.Status.SUCCEEDED)
    assert client.get(status_url).json()["settled"] is False

    Order.objects.filter(pk=order.pk).update(status=Order.Status.PAID, payment=payment)
    assert client.get(status_url).json()["settled"] is True

    Refund.objects.create(
        payment=payment, out_refund_no="R-UNDER-WAY", amount=Decimal("1.00"), status="pending"
    )
    status = client.get(status_url).json()
    assert status["settled"] is False
    assert status["payments"][0]["refunds"] == [
        {"out_refund_no": "R-UNDER-WAY", "status": "pending", "amount": "1.00"}
    ]


def test_the_order_admin_shows_history_and_payments_read_only(client, motp_sandbox):
    checkout(client, pepper=1)
    order = only_order()
    payment = Payment.objects.get()
    motp_sandbox.pay(payment.out_trade_no)
    services.sync_payment(payment)
    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.com", "x"))

    listing = admin.get("/admin/shop/order/", {"q": order.number}).content.decode()
    assert f"/admin/shop/order/{order.pk}/change/" in listing
    assert "/admin/shop/order/add/" not in listing

    page = admin.get(f"/admin/shop/order/{order.pk}/change/").content.decode()
    assert "View order" in page  # a record: nobody edits it by hand
    assert (
        f'<a class="payment-link" href="/admin/django_motp/payment/{payment.pk}/change/">'
        f"{payment.out_trade_no}</a> 6.50 (Succeeded)"
    ) in page
    assert f"Paid by {payment.out_trade_no} (6.50 USD)." in page
    assert admin.post(f"/admin/shop/order/{order.pk}/delete/").status_code == 403


def test_the_rest_api_stays_for_staff(client, motp_sandbox):
    checkout(client, sugar=1)
    payment = Payment.objects.get()
    url = f"/motp/payments/{payment.out_trade_no}/"
    assert client.get(url).status_code == 403  # the buyer's session is not enough

    staff = Client()
    staff.force_login(User.objects.create_superuser("boss", "boss@example.com", "x"))
    answer = staff.get(url).json()
    assert (answer["status"], answer["amount"]) == ("pending", "3.80")
