"""``manage.py motp_reconcile --days 7``: ask the gateway again about what it may have settled
after we stopped asking.

Re-checks every expired and failed payment created in the last N days (even after its
late-success checks are over: a QR code or a slow wallet can be paid later still) and every
unsettled refund of those days, through the same claims as the workers, and refunds (with
``REFUND_DUPLICATES``) the double charges whose refund could not be made. Prints a progress
bar and a summary of what changed.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from django_motp.conf import motp_settings
from django_motp.exceptions import CheckInProgress
from django_motp.management.progress import show_progress
from django_motp.models import Payment, Refund
from django_motp.services import reconcile_payment, refund_double_charge, sync_refund


class Command(BaseCommand):
    help = (
        "Re-check expired and failed payments and unsettled refunds of the last --days days "
        "at the MOTP gateway, and refund double charges left unrefunded."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, default=7, help="look back this many days (7)")

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        if days < 1:
            raise CommandError("--days must be 1 or more.")
        since = timezone.now() - timedelta(days=days)
        work: list[Payment | Refund] = [
            *Payment.objects.filter(
                status__in=(Payment.Status.EXPIRED, Payment.Status.FAILED), created_at__gte=since
            ).order_by("created_at"),
            *Refund.objects.select_related("payment")
            .filter(
                status__in=(Refund.Status.CREATED, Refund.Status.PENDING), created_at__gte=since
            )
            .order_by("created_at"),
        ]
        changed: Counter[str] = Counter()
        busy: list[str] = []
        for done, obj in enumerate(work, start=1):
            before = obj.status
            try:
                after = (
                    reconcile_payment(obj) if isinstance(obj, Payment) else sync_refund(obj)
                ).status
            except CheckInProgress:
                busy.append(obj.out_trade_no if isinstance(obj, Payment) else obj.out_refund_no)
                after = before
            if after != before:
                kind = "payments" if isinstance(obj, Payment) else "refunds"
                changed[f"{kind} {before} -> {after}"] += 1
            show_progress(self.stdout, done, len(work))
        refunded = self._refund_double_charges(since)
        summary = ", ".join(f"{count} {what}" for what, count in sorted(changed.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-checked {len(work)} from the last {days} days: {summary or 'nothing changed'}."
            )
        )
        if refunded:
            self.stdout.write(f"Refunded {refunded} double charges left unrefunded.")
        if busy:
            self.stdout.write(
                self.style.WARNING(
                    f"Skipped {len(busy)} being checked by a worker right now: {', '.join(busy)}."
                )
            )

    def _refund_double_charges(self, since: Any) -> int:
        if not motp_settings.REFUND_DUPLICATES:
            return 0
        unrefunded = Payment.objects.filter(
            attention=Payment.Attention.DOUBLE_CHARGE,
            status=Payment.Status.SUCCEEDED,
            reserved_amount=0,
            created_at__gte=since,
        ).select_related("duplicate_of")
        count = 0
        for payment in unrefunded:
            refund_double_charge(payment)
            payment.refresh_from_db()
            count += payment.reserved_amount > 0
        return count
