"""Helpers of the admin tests: staff users with exactly the permissions of a role, logged-in
clients, and payments written straight to the database for list pages."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from django_motp.models import Payment, Refund

_numbers = itertools.count(1)

#: What each role may do, as permission codenames of django_motp.
ROLES = {
    "nobody": [],
    "viewer": ["view_payment", "view_refund", "view_apicall", "view_event"],
    "cashier": ["view_payment", "add_payment"],
    "manager": [
        "view_payment",
        "add_payment",
        "refund_payment",
        "view_refund",
        "view_apicall",
        "view_event",
        "change_event",
    ],
}


def staff(role: str):
    """A staff user (not a superuser) with exactly the role's permissions."""
    user = get_user_model().objects.create_user(f"{role}-{next(_numbers)}", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_motp", codename__in=ROLES[role])
    )
    return user


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(staff(role))
    return client


def make_payment(**fields) -> Payment:
    """A payment row as the services leave one (no gateway involved), for list pages."""
    n = next(_numbers)
    values = {
        "out_trade_no": f"T{n:08d}",
        "method": Payment.Method.NATIVE,
        "status": Payment.Status.SUCCEEDED,
        "amount": Decimal("10.00"),
        "service_id": 30,
        "store_id": "10001",
        "reference": f"order-{n}",
        "created_at": timezone.now() - timedelta(minutes=n),
        "deadline_at": timezone.now() + timedelta(hours=2),
    }
    values.update(fields)
    values.setdefault("reserved_amount", values.get("refunded_amount", Decimal("0")))
    return Payment.objects.create(**values)


def make_refund(payment: Payment, **fields) -> Refund:
    n = next(_numbers)
    values = {
        "out_refund_no": f"RF{n:08d}",
        "amount": Decimal("1.00"),
        "status": Refund.Status.PENDING,
        "deadline_at": timezone.now() + timedelta(days=1),
    }
    values.update(fields)
    return Refund.objects.create(payment=payment, **values)


def changelist(model: str) -> str:
    return f"/admin/django_motp/{model}/"


def page_text(response) -> str:
    """The words a person reads on the page: tags stripped, entities decoded, spaces collapsed."""
    import html
    import re

    content = response.content.decode()
    content = re.sub(r"<(script|style)\b.*?</\1>", " ", content, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())
