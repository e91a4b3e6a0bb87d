"""Orders of the example shop and the log of what happened to each.

An order is paid by one or more django-motp payments whose ``reference`` is the order's
``number``. Only the receivers in ``shop.receivers`` change an order's status, from the
payments' and refunds' signals.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_motp.models import Payment


def new_order_number() -> str:
    """A number a buyer can read out (``SO-261126-7F3A9C``), and that nobody can guess: it is
    what lets a buyer's browser follow the order."""
    return f"SO-{timezone.now():%y%m%d}-{secrets.token_hex(3).upper()}"


class Order(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Awaiting payment")
        PAID = "paid", _("Paid")
        PARTLY_REFUNDED = "partly_refunded", _("Partly refunded")
        REFUNDED = "refunded", _("Refunded")

    number = models.CharField(_("number"), max_length=32, unique=True, default=new_order_number)
    items = models.JSONField(
        _("items"),
        default=list,
        help_text=_("As bought: sku, name, quantity, unit price, line total."),
    )
    description = models.CharField(_("description"), max_length=255)
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    payment = models.ForeignKey(
        Payment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("paid by"),
        help_text=_("The payment that paid the order; its refunds refund the order."),
    )
    refunded_amount = models.DecimalField(
        _("refunded"), max_digits=12, decimal_places=2, default=Decimal("0")
    )
    attention = models.CharField(
        _("needs attention"),
        max_length=255,
        blank=True,
        help_text=_("Why a person should look at it, e.g. a double charge."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    paid_at = models.DateTimeField(_("paid"), null=True, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["attention"], condition=~Q(attention=""), name="shop_order_attention"
            )
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="shop_order_total_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=models.F("total")),
                name="shop_order_refunds_within_total",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_settled(self) -> bool:
        """Whether nothing more is expected to happen by itself (the page stops following it)."""
        return self.status == self.Status.REFUNDED

    def payments(self) -> models.QuerySet[Payment]:
        """Every payment made for this order, newest first, with their refunds."""
        return Payment.objects.filter(reference=self.number).prefetch_related("refunds")


class OrderNote(models.Model):
    """One line of an order's history, written by a receiver of django-motp's signals.

    ``event_id`` is the delivered event's id: unique, so that an event delivered twice (a retry
    after a crash, two workers) is recorded, and acted upon, once.
    """

    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, related_name="notes", verbose_name=_("order")
    )
    event_id = models.UUIDField(_("event"), null=True, blank=True, unique=True)
    text = models.CharField(_("note"), max_length=255)
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("order note")
        verbose_name_plural = _("order notes")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return self.text
