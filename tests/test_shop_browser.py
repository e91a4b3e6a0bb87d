"""The shop's order page in a real headless Chromium (Playwright), against the live server and
the sandbox: left alone, the page follows the order through its status endpoint and turns into
the receipt by itself.

The test plays the worker: after the buyer pays, it calls ``services.sync_payment`` (what a
poll does); the real worker is in tests/test_demo.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connection

from django_motp import services
from django_motp.models import Payment
from shop.models import Order
from tests.test_browser import CHROMIUM, HEADLESS_FLAGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("shopsite.urls"),
]


@pytest.fixture
def page(live_server) -> Iterator:
    # The sync API runs an event loop in this thread; the ORM calls of the test are still sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_FLAGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.errors = errors
        yield page
        browser.close()
    _end_live_server_sessions()


def _end_live_server_sessions() -> None:
    """On PostgreSQL, end the test database's other sessions: a request thread of the live server
    can stay blocked on a kept-alive socket with its database connection open, and the test
    database could then not be dropped at the end of the run."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_the_order_page_turns_into_the_receipt_by_itself(page, live_server, motp_sandbox):
    page.goto(live_server.url + "/")
    page.fill("#id_qty_tea", "2")
    page.click("text=Pay with WeChat Pay / Alipay")
    page.wait_for_selector(".qr svg")
    assert page.inner_text(".amount") == "8.50 USD"
    assert page.inner_text("#order-status") == "Awaiting payment"

    payment = Payment.objects.get()
    motp_sandbox.pay(payment.out_trade_no)
    services.sync_payment(payment)  # the worker's poll
    assert Order.objects.get().status == Order.Status.PAID

    page.wait_for_selector("text=Thank you! Your payment was received.", timeout=30_000)
    assert page.inner_text("#order-status") == "Paid"
    assert page.locator(".qr").count() == 0
    assert page.errors == []
