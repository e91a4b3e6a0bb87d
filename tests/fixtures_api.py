"""Fixtures for the REST API tests: users with chosen permissions and clients logged in as them."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

ALL_PERMISSIONS = ("view_payment", "add_payment", "refund_payment")
_names = itertools.count()


@pytest.fixture
def make_user(transactional_db) -> Callable[..., User]:
    """``make_user("view_payment", ...)``: a new user holding exactly those django_motp
    permissions."""

    def make(*codenames: str) -> User:
        user = User.objects.create_user(f"till{next(_names)}", password="secret")
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="django_motp", codename__in=codenames)
        )
        return User.objects.get(pk=user.pk)  # drop the permission cache

    return make


@pytest.fixture
def client_for() -> Callable[[User | None], APIClient]:
    """``client_for(user)``: an ``APIClient`` authenticated as ``user`` (None: anonymous)."""

    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def api(make_user, client_for, motp_sandbox) -> APIClient:
    """A client for a user holding every API permission, the sandbox behind it."""
    return client_for(make_user(*ALL_PERMISSIONS))
