"""django-motp's Django admin: payments (taking, checking, refunding), refunds (checking,
resolving by hand), the API call log and the signal outbox, registered on ``admin.site``.

One module per concern: ``payments`` and ``payment_views`` (the payment pages), ``refunds``,
``apicalls``, ``events``, ``filters``, ``attention`` (the index's count), ``display`` (badges
and the cashier's status, computed from the row).
"""

from django.contrib import admin

from .apicalls import ApiCallAdmin
from .events import EventAdmin
from .payments import PaymentAdmin
from .refunds import RefundAdmin

__all__ = ["ApiCallAdmin", "EventAdmin", "PaymentAdmin", "RefundAdmin"]

# The admin index shows what needs attention, unless the project has an index template of its
# own (it can add ``{% load motp_admin %}{% motp_attention %}`` to it).
if admin.site.index_template is None:
    admin.site.index_template = "django_motp/admin/index.html"
