"""The admin in a real headless Chromium (Playwright), against the live server and the sandbox.

Nobody polls the gateway here but the test: after the buyer pays, the test calls
``services.sync_payment`` itself, which is exactly what a worker's poll does. That keeps these
tests free of a broker and of its timing, and still proves what matters to the cashier: the page,
left alone, notices the change through its own status polling and turns PAID without a reload.
(The worker's own polling is tested with a real Celery worker in test_worker.py.)

``MOTP_SCREENSHOT_DIR=docs/images`` makes ``test_screenshots`` write the README's screenshots
there; otherwise they go to a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from django_motp import services
from django_motp.models import Payment, Refund
from django_motp.testing import (
    AUTH_CODE_DECLINED,
    AUTH_CODE_PAID,
    AUTH_CODE_REFUND_PROCESSING,
    AUTH_CODE_USERPAYING,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    # The sync API runs an event loop in this thread; the ORM calls of the test are still sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def fast_polling(settings):
    settings.MOTP = {**settings.MOTP, "POLL_INTERVAL": 1}


def user(role: str):
    users = get_user_model().objects
    if role == "owner":
        return users.create_superuser("owner", "owner@example.com", PASSWORD)
    cashier = users.create_user("cashier", password=PASSWORD, is_staff=True)
    cashier.user_permissions.set(
        Permission.objects.filter(codename__in=["view_payment", "add_payment"])
    )
    return cashier


def logged_in(browser, live_server, role: str, viewport=DESKTOP):
    account = user(role)
    page = browser.new_page(viewport=viewport)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", account.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def take(page, live_server, method: str, amount: str, auth_code: str = "") -> Payment:
    """Take a payment with the admin's form the way a cashier does; the new payment."""
    page.goto(f"{live_server.url}/admin/django_motp/payment/add/")
    page.select_option("#id_method", method)
    page.fill("#id_amount", amount)
    if auth_code:
        page.fill("#id_auth_code", auth_code)  # the scanner types the code, then Enter
        page.press("#id_auth_code", "Enter")
    else:
        page.click("input[type=submit]")
    page.wait_for_url("**/change/")
    return Payment.objects.latest("created_at")


def headline(page) -> str:
    return page.inner_text("[data-motp=headline]")


def test_qr_payment_turns_paid_on_the_page_without_a_reload(
    browser, live_server, motp_sandbox, fast_polling
):
    from playwright.sync_api import expect

    page = logged_in(browser, live_server, "cashier")
    payment = take(page, live_server, "native", "12.00")
    assert page.locator(".motp-qr svg").is_visible()
    assert headline(page) == "WAITING FOR THE BUYER TO SCAN"
    page.evaluate("window.motpNoReload = true")

    motp_sandbox.pay(payment.out_trade_no)  # the buyer scans and pays
    services.sync_payment(payment)  # the worker's poll

    expect(page.locator("[data-motp=headline]")).to_have_text("PAID", timeout=10_000)
    expect(page.locator("#motp-panel .motp-badge")).to_have_text("Succeeded")
    assert page.locator(".motp-qr").count() == 0
    assert page.evaluate("window.motpNoReload") is True  # the same page, never reloaded
    page.close()


def test_payment_code_waits_for_the_pin_turns_paid_and_is_refunded_in_part(
    browser, live_server, motp_sandbox, fast_polling
):
    from playwright.sync_api import expect

    motp_sandbox.configure(pay_delay=1)
    page = logged_in(browser, live_server, "owner")
    payment = take(page, live_server, "quick", "10.00", AUTH_CODE_USERPAYING)
    assert headline(page) == "WAITING FOR THE BUYER (PIN)"
    assert page.locator("[data-motp=time-left]").is_visible()
    assert AUTH_CODE_USERPAYING not in page.content()
    page.evaluate("window.motpNoReload = true")

    wait_until(lambda: motp_sandbox.order(payment.out_trade_no)["status"] == "SUCCESS")
    services.sync_payment(payment)
    expect(page.locator("[data-motp=headline]")).to_have_text("PAID", timeout=10_000)
    assert page.evaluate("window.motpNoReload") is True

    page.reload()  # the refund button comes with a settled page
    page.click("text=Refund…")
    expect(page.locator("#id_amount")).to_have_value("10.00")
    page.fill("#id_amount", "4.00")
    page.fill("#id_reason", "one cup returned")
    page.click("#refund_form input[type=submit]")
    page.wait_for_url(f"**/payment/{payment.pk}/change/")
    refund = Refund.objects.get()
    assert refund.amount == 4
    expect(page.locator(".messagelist")).to_contain_text("Refunded 4.00 USD")
    expect(page.locator("#refunds-group")).to_contain_text(refund.out_refund_no)
    expect(page.locator("#refunds-group")).to_contain_text("one cup returned")
    page.close()


def test_a_cashier_without_refund_payment_sees_no_refund_button(browser, live_server, motp_sandbox):
    page = logged_in(browser, live_server, "cashier")
    take(page, live_server, "quick", "8.00", AUTH_CODE_PAID)
    assert headline(page) == "PAID"
    assert page.locator("text=Refund…").count() == 0
    assert page.locator("text=Check status now").count() == 1
    page.close()


def demo_payments(motp_sandbox) -> dict[str, Payment]:
    """A shop's morning: payments in every state, as the screenshots show them."""
    motp_sandbox.configure(pay_delay=3600)
    made = {
        "paid": services.create_quick_payment("18.50", AUTH_CODE_PAID, reference="Table 4"),
        "refunded": services.create_quick_payment(
            "42.00", AUTH_CODE_PAID, reference="Order 1017", fee_rate="2"
        ),
        "declined": services.create_quick_payment(
            "7.20", AUTH_CODE_DECLINED, reference="Takeaway 88"
        ),
        "processing": services.create_quick_payment(
            "25.00", AUTH_CODE_REFUND_PROCESSING, reference="Order 1018"
        ),
        "waiting": services.create_quick_payment("9.90", AUTH_CODE_USERPAYING, reference="Till 2"),
        "qr": services.create_native_payment("36.80", reference="Order 1019", fee_rate="1.5"),
    }
    services.refund_payment(made["refunded"], "12.00", reason="Two drinks returned")
    return made


def test_screenshots(browser, live_server, motp_sandbox, tmp_path):
    """The README's screenshots, at desktop and phone width; each a PNG a person looked at."""
    out = Path(os.environ.get("MOTP_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    made = demo_payments(motp_sandbox)
    admin = f"{live_server.url}/admin/django_motp/payment"
    pages = {
        "changelist": f"{admin}/",
        "take-payment": f"{admin}/add/",
        "qr": f"{admin}/{made['qr'].pk}/change/",
        "cashier-result": f"{admin}/{made['paid'].pk}/change/",
        "refund-form": f"{admin}/{made['refunded'].pk}/refund/",
    }
    page = logged_in(browser, live_server, "owner")
    written = []
    for size_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for name, url in pages.items():
            page.goto(url)
            path = out / f"admin-{name}-{size_name}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
    # The admin's dark theme: the panel and badges stay readable, the QR code black on white.
    page.emulate_media(color_scheme="dark")
    for name in ("qr", "cashier-result"):
        page.goto(pages[name])
        path = out / f"admin-{name}-dark-phone.png"
        page.screenshot(path=str(path), full_page=False)
        written.append(path)
    page.close()
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
