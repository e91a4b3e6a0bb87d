"""django-motp in Khmer and Simplified Chinese: every admin page a cashier or a manager sees is
translated, the catalogs hold a translation for every marked string, and the compiled ``.mo``
files say what the ``.po`` files say."""

from __future__ import annotations

import ast
import gettext
import html
import os
import re
import shutil
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import django
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone, translation
from django.utils.dates import MONTHS, MONTHS_3, MONTHS_AP

from django_motp import services, signals
from django_motp.conf import DEFAULT_ENDPOINTS
from django_motp.models import ApiCall, Event, Payment, Refund
from django_motp.testing import AUTH_CODE_PAID
from tests.conftest import service_missing
from tests.fixtures_admin import client_for, make_payment, make_refund

# The browser tests' fixtures: one Chromium for the module, the payment page polling each second.
from tests.test_browser import DESKTOP, PASSWORD, PHONE, browser, fast_polling  # noqa: F401

PACKAGE = Path(services.__file__).resolve().parent.parent
SHOP = PACKAGE.parent / "example_project" / "shop"
#: Each catalog's app folder and what makemessages leaves out there (the sandbox runs without
#: Django's translation machinery).
APPS = {"django_motp": (PACKAGE, ["sandbox/*"]), "shop": (SHOP, [])}
LANGUAGES = ("km", "zh-hans")
CATALOGS = ("km", "zh_Hans")
#: Words that stay as they are in every language: brands, codes, units.
KEEP = ("WeChat Pay", "Alipay", "MOTP", "JSAPI", "USD", "QR", "PIN", "API", "HTTP")
#: Code values shown as they are (the events' signals and statuses, the API call operations).
CODES = (
    *signals.NAMES,
    *DEFAULT_ENDPOINTS,
    *Payment.Status.values,
)


@pytest.fixture(autouse=True)
def _english_afterwards():
    """LocaleMiddleware leaves the last request's language active in this thread: the tests
    that follow (and the services they call) must not run in Chinese."""
    yield
    translation.deactivate()


# Reading catalogs and pages -------------------------------------------------------------------


def read_po(path: Path) -> list[dict]:
    """The entries of a ``.po`` file: ``msgid``, ``msgid_plural``, ``msgstr`` (or ``msgstr[N]``),
    ``fuzzy`` and ``obsolete``, the header included (its ``msgid`` is empty)."""
    entries: list[dict] = []
    entry: dict = {}
    key = None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        obsolete = line.startswith("#~")
        body = line[2:].strip() if obsolete else line
        if body.startswith(("msgid ", "msgctxt ")) and "msgstr" in entry:
            entries.append(entry)
            entry = {}
        if not body.strip():
            if "msgid" in entry:
                entries.append(entry)
            entry, key = {}, None
        elif body.startswith("#,"):
            entry["fuzzy"] = "fuzzy" in body
        elif body.startswith("#"):
            continue
        elif body.startswith('"') and key:
            entry[key] += ast.literal_eval(body)
        else:
            key, _, text = body.partition(" ")
            entry[key] = ast.literal_eval(text)
            entry["obsolete"] = obsolete
    return entries


def msgstrs(entry: dict) -> list[str]:
    return [value for key, value in entry.items() if key.startswith("msgstr")]


class TextNodes(HTMLParser):
    """What a person reads on a page: its text nodes, titles and button labels."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        self._add(values.get("title"))
        self._add(values.get("placeholder"))
        if tag == "input" and values.get("type") in ("submit", "button"):
            self._add(values.get("value"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._add(data)

    def _add(self, text: str | None) -> None:
        text = " ".join((text or "").split())
        if text:
            self.nodes.append(text)


def text_nodes(html: str) -> list[str]:
    parser = TextNodes()
    parser.feed(html)
    return parser.nodes


def _django_patterns() -> re.Pattern:
    """Django's own English strings (its catalogs' msgids), placeholders as wildcards: what
    Django's admin shows is Django's to translate, not django-motp's."""
    root = Path(django.__file__).parent
    msgids = set()
    for po in [
        root / "conf/locale/en/LC_MESSAGES/django.po",
        *sorted(root.glob("contrib/*/locale/en/LC_MESSAGES/django*.po")),
    ]:
        for entry in read_po(po):
            msgids.update(html.unescape(entry.get(k, "")) for k in ("msgid", "msgid_plural"))
    # A placeholder takes the spaces around it: "Filter by %(field_name)s" shows as "Filter by"
    # when the name is in an element of its own.
    placeholder = re.compile(r"\s*%(?:\(\w+\))?[sd]\s*")
    alternatives = []
    for msgid in sorted(msgids):
        parts = placeholder.split(msgid)
        letters = len(re.findall("[A-Za-z]", "".join(parts)))
        # A string with placeholders needs words of its own ("%(a)s %(b)s" would match any
        # two words); one without is Django's however short ("Run").
        if letters >= 4 or (len(parts) == 1 and letters):
            alternatives.append(r"\s*.*?\s*".join(re.escape(part) for part in parts))
    return re.compile("(?:" + "|".join(alternatives) + ")")


DJANGO_STRINGS = _django_patterns()
#: Django's month names, which its date formats put into pages.
DATE_WORDS = [str(m) for names in (MONTHS, MONTHS_3, MONTHS_AP) for m in names.values()]


def shown_data() -> list[str]:
    """What the pages show from the database rather than from django-motp's catalog: numbers,
    references, the gateway's messages, user names, recorded errors."""
    values = [
        *Payment.objects.values_list(
            "out_trade_no", "reference", "message", "transaction_id", "attention_note"
        ),
        *Refund.objects.values_list("out_refund_no", "reason", "message", "resolution_note"),
        *Event.objects.values_list("last_error"),
        *ApiCall.objects.values_list("operation", "url", "error"),
    ]
    names = list(get_user_model().objects.values_list("username", flat=True))
    words = {str(v) for row in values for v in row if v} | set(names)
    for text in list(words):  # a recorded traceback shows its last line
        words.update(line.strip() for line in text.splitlines() if line.strip())
    return sorted(words | set(KEEP) | set(CODES) | set(DATE_WORDS), key=len, reverse=True)


def neutral(text: str, data: list[str]) -> str:
    """``text`` without the data and numbers it shows: what is left is django-motp's (or
    Django's) words."""
    for value in data:
        text = text.replace(value, "\u00a7")
    return re.sub(r"\d[\d.,\u00a0]*", "#", text)  # 12.50 in English is 12,50 in Khmer


def untranslated(english: str, translated: str, data: list[str]) -> list[str]:
    """The text nodes of ``translated`` that are the English page's words: same text, once the
    shown data is set aside, with letters in it, and not one of Django's own strings."""
    seen = {neutral(node, data) for node in text_nodes(english)}
    found = []
    for node in text_nodes(translated):
        words = neutral(node, data)
        if (
            words in seen
            and re.search("[A-Za-z]", words)
            # Django's own, also when a template writes it next to a sign: "2 results ("
            and not any(DJANGO_STRINGS.fullmatch(text) for text in (node, node.strip(" (\u2716")))
        ):
            found.append(node)
    return found


def test_the_comparison_finds_an_english_sentence_and_passes_data():
    english = "<p>Refunded</p><p>T0001</p><p>Paid 10.00 USD</p><script>x = 'Hi'</script>"
    translated = "<p>Refunded</p><p>T0002</p><p>បានបង់ 10,00 USD</p><script>x = 'Hi'</script>"
    assert untranslated(english, translated, ["T0001", "T0002", "USD"]) == ["Refunded"]
    assert untranslated("<p>Select %s</p>", "<p>Change password</p>", []) == []


# The admin's pages ----------------------------------------------------------------------------


@pytest.fixture
def shop(motp_sandbox):
    """Rows of every kind the admin shows, and a manager's browser that asks for a language
    (tests/settings.py has LocaleMiddleware, as a project that turns translations on)."""
    native = services.create_native_payment("7.00", fee_rate=Decimal("2"), reference="table-4")
    paid = services.create_quick_payment("10.00", AUTH_CODE_PAID, reference="receipt-88")
    make_refund(paid, amount=Decimal("1.00"), reason="broken cup")
    overdue = make_refund(
        paid, amount=Decimal("2.00"), deadline_at=timezone.now() - timedelta(hours=1)
    )
    flagged = make_payment(attention=Payment.Attention.DOUBLE_CHARGE, attention_note="twice")
    Event.objects.create(
        signal="payment_succeeded",
        payment=flagged,
        old_status="pending",
        new_status="succeeded",
        attempts=2,
        last_error="Traceback (most recent call last):\nValueError: the shop's receiver failed",
    )
    return {"native": native, "paid": paid, "overdue": overdue, "client": client_for("manager")}


def pages(shop: dict) -> dict[str, tuple[str, str, dict | None]]:
    """``name: (method, url, data)`` of every admin page django-motp adds or shapes."""
    payments = "/admin/django_motp/payment/"
    native, paid, overdue = shop["native"], shop["paid"], shop["overdue"]
    return {
        "index": ("get", "/admin/", None),
        "app index": ("get", "/admin/django_motp/", None),
        "payments": ("get", payments, None),
        "payments needing attention": ("get", payments + "?attention=yes", None),
        "payment page with QR code": ("get", f"{payments}{native.pk}/change/", None),
        "paid payment page": ("get", f"{payments}{paid.pk}/change/", None),
        "take a payment": ("get", payments + "add/", None),
        "take a payment, errors": ("post", payments + "add/", {"method": "quick", "amount": "0"}),
        "cashier's result": (
            "post",
            payments + "add/",
            {"method": "quick", "amount": "12.50", "auth_code": AUTH_CODE_PAID},
        ),
        "check now": ("post", f"{payments}{native.pk}/check/", {}),
        "refund form": ("get", f"{payments}{paid.pk}/refund/", None),
        "refund refused": ("post", f"{payments}{paid.pk}/refund/", {"amount": "99.00"}),
        "refund done": ("post", f"{payments}{paid.pk}/refund/", {"amount": "0.10", "reason": "x"}),
        "refund in full": ("get", f"{payments}refund-in-full/?ids={paid.pk},{native.pk}", None),
        "refunds": ("get", "/admin/django_motp/refund/", None),
        "refund page": ("get", f"/admin/django_motp/refund/{overdue.pk}/change/", None),
        "resolve a refund": ("get", f"/admin/django_motp/refund/{overdue.pk}/resolve/", None),
        "resolve, errors": ("post", f"/admin/django_motp/refund/{overdue.pk}/resolve/", {}),
        "events": ("get", "/admin/django_motp/event/", None),
        "API calls": ("get", "/admin/django_motp/apicall/", None),
    }


def fetch(client: Client, language: str, method: str, url: str, data: dict | None) -> str:
    call = client.post if method == "post" else client.get
    response = call(url, data or {}, follow=True, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200, url
    return response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_admin_page_is_translated(shop, language):
    client = shop["client"]
    problems = {}
    for name, (method, url, data) in pages(shop).items():
        english = fetch(client, "en", method, url, data)
        translated = fetch(client, language, method, url, data)
        assert f'lang="{language}"' in translated
        found = untranslated(english, translated, shown_data())
        if found:
            problems[name] = found
    assert problems == {}


@pytest.mark.django_db(transaction=True)
def test_amounts_and_dates_follow_the_language(shop):
    """Khmer writes 7,00 where English writes 7.00, and dates its own way; the "max" button still
    fills in a number the amount field takes."""
    client, paid = shop["client"], shop["paid"]
    page = fetch(
        client, "km", "get", f"/admin/django_motp/payment/{shop['native'].pk}/change/", None
    )
    assert "7,00 USD" in page
    assert "7,14 USD" in page  # the buyer's total at 2 %
    assert "ឆ្នាំ" in page  # Django's Khmer date format, "j ខែ F ឆ្នាំ Y"
    form = fetch(client, "km", "get", f"/admin/django_motp/payment/{paid.pk}/refund/", None)
    assert 'data-value="10.00"' in form
    assert "10,00 USD" in form
    chinese = fetch(client, "zh-hans", "get", "/admin/django_motp/payment/", None)
    assert "10.00 USD" in chinese
    assert f"{timezone.now().year}年" in chinese  # the date drill-down: Django's Chinese format
    assert "扫码" in fetch(
        client, "zh-hans", "get", f"/admin/django_motp/payment/{shop['native'].pk}/change/", None
    )


# The example shop ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.urls("shopsite.urls")
def test_the_shop_speaks_the_buyers_language(settings):
    """The browser's language first; the switcher's choice (a cookie) wins over it."""
    from shopsite import settings as shop_settings

    settings.LANGUAGES = shop_settings.LANGUAGES
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    page = client.get("/").content.decode()
    assert '<html lang="zh-hans">' in page
    assert "使用微信支付 / 支付宝付款" in page
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert untranslated(english, page, list(KEEP)) == []
    for code, name in (("en", "English"), ("km", "ខ្មែរ"), ("zh-hans", "简体中文")):
        assert f'value="{code}" lang="{code}"' in page
        assert f">{name}</button>" in page
    switched = client.post("/i18n/setlang/", {"language": "km", "next": "/"}, follow=True)
    assert "បង់ប្រាក់ដោយ WeChat Pay / Alipay" in switched.content.decode()
    assert '<html lang="km">' in switched.content.decode()


# The catalogs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("catalog", CATALOGS)
def test_every_string_is_translated_and_compiled(app, catalog):
    folder = APPS[app][0] / "locale" / catalog / "LC_MESSAGES"
    entries = [e for e in read_po(folder / "django.po") if e["msgid"] and not e["obsolete"]]
    assert len(entries) > 50
    assert [e["msgid"] for e in entries if e.get("fuzzy")] == []
    assert [e["msgid"] for e in entries if not all(msgstrs(e))] == []
    with open(folder / "django.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    for entry in entries:
        if "msgid_plural" in entry:
            assert compiled.ngettext(entry["msgid"], entry["msgid_plural"], 1) == entry["msgstr[0]"]
        else:
            assert compiled.gettext(entry["msgid"]) == entry["msgstr"], "run compilemessages"


@pytest.mark.parametrize("app", APPS)
def test_makemessages_finds_nothing_new(app, tmp_path, monkeypatch):
    """A string marked for translation and not in the catalogs fails here, and so does one the
    catalogs still hold that nothing uses (``make messages``, translate, ``make
    compilemessages``: docs/howto/languages.rst)."""
    if shutil.which("xgettext") is None or shutil.which("msgmerge") is None:
        service_missing("needs GNU gettext (Debian package 'gettext') for makemessages")
    folder, ignore = APPS[app]
    copy = tmp_path / app
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    monkeypatch.chdir(copy)
    call_command(
        "makemessages",
        locale=list(CATALOGS),
        add_location="file",
        no_obsolete=True,
        ignore_patterns=ignore,
        verbosity=0,
    )
    for catalog in CATALOGS:
        po = f"locale/{catalog}/LC_MESSAGES/django.po"
        before = {e["msgid"] for e in read_po(folder / po) if e["msgid"] and not e["obsolete"]}
        after = [e for e in read_po(copy / po) if e["msgid"] and not e["obsolete"]]
        now = {e["msgid"] for e in after}
        assert sorted(now - before) == [], "new strings: make messages, translate them"
        assert sorted(before - now) == [], "strings no longer used: make messages"
        assert [e["msgid"] for e in after if e.get("fuzzy") or not all(msgstrs(e))] == []


# In a real browser ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_polling")
@pytest.mark.parametrize(
    ("locale", "waiting", "paid"),
    [("km", "កំពុងរង់ចាំអ្នកទិញស្កេន", "បានបង់ប្រាក់"), ("zh-CN", "等待买家扫码", "已支付")],
)
def test_the_cashiers_panel_follows_the_payment_in_the_browsers_language(
    request, live_server, motp_sandbox, tmp_path, locale, waiting, paid
):
    """A browser set to Khmer or Chinese gets the admin in that language, and the payment page's
    live status (fetched by its script) turns PAID in it too. Screenshots at desktop and phone
    width go to ``MOTP_SCREENSHOT_DIR`` (docs/images) or a temporary folder."""
    from playwright.sync_api import expect

    chromium = request.getfixturevalue("browser")  # test_browser's: one Chromium per module
    out = Path(os.environ.get("MOTP_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    name = locale.split("-")[0].lower()
    get_user_model().objects.create_superuser("owner", "owner@example.com", PASSWORD)
    paid_before = services.create_quick_payment("18.50", AUTH_CODE_PAID, reference="Table 4")
    services.refund_payment(paid_before, "2.50", reason="-")
    qr = services.create_native_payment("36.80", reference="Order 1019", fee_rate=Decimal("1.5"))
    admin = f"{live_server.url}/admin/django_motp/payment"
    page = chromium.new_page(viewport=DESKTOP, locale=locale)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    shots = [
        ("changelist", f"{admin}/", "desktop"),
        ("take-payment", f"{admin}/add/", "phone"),
        ("refund-form", f"{admin}/{paid_before.pk}/refund/", "phone"),
        ("qr", f"{admin}/{qr.pk}/change/", "desktop"),
        ("qr", f"{admin}/{qr.pk}/change/", "phone"),
    ]
    for shot, url, size in shots:
        page.set_viewport_size(DESKTOP if size == "desktop" else PHONE)
        page.goto(url)
        page.screenshot(path=str(out / f"admin-{name}-{shot}-{size}.png"), full_page=True)
    expect(page.locator("[data-motp=headline]")).to_have_text(waiting)
    motp_sandbox.pay(qr.out_trade_no)  # the buyer scans and pays
    services.sync_payment(qr)  # the worker's poll
    expect(page.locator("[data-motp=headline]")).to_have_text(paid, timeout=10_000)
    page.screenshot(path=str(out / f"admin-{name}-cashier-result-phone.png"), full_page=False)
    page.close()
