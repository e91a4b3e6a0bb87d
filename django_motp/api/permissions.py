"""Who may call the API: ``MOTPModelPermissions``, the default of
``MOTP["API_PERMISSION_CLASSES"]``."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..conf import motp_settings

VIEW = "django_motp.view_payment"
ADD = "django_motp.add_payment"
REFUND = "django_motp.refund_payment"


class MOTPModelPermissions(BasePermission):
    """An authenticated user with the Django permission the view's action needs.

    Views name it in ``required_permissions`` (action name -> permission); an action they do not
    name needs ``view_payment``: ``add_payment`` to create a payment, ``refund_payment`` to
    refund one, ``view_payment`` to read payments and refunds and to ask for a status check.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        needed = getattr(view, "required_permissions", {}).get(getattr(view, "action", None), VIEW)
        return bool(user.has_perm(needed))


def api_permission_classes() -> list[type[BasePermission]]:
    """The classes ``MOTP["API_PERMISSION_CLASSES"]`` names (dotted paths, or classes)."""
    return [
        import_string(name) if isinstance(name, str) else name
        for name in motp_settings.API_PERMISSION_CLASSES
    ]
