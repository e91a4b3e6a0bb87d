"""``manage.py motp_sync``: check payments and refunds at the gateway now.

With order or refund numbers, checks those; with none, every payment and refund still unsettled
(created or pending). Each check takes the same claim as the Celery polls: one a worker is
making right now is waited for briefly, then skipped and reported, never run twice at once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_motp.exceptions import CheckInProgress
from django_motp.management.progress import show_progress
from django_motp.models import Payment, Refund
from django_motp.services import sync_payment, sync_refund


class Command(BaseCommand):
    help = "Check payments and refunds at the MOTP gateway now and apply what it says."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "numbers",
            nargs="*",
            metavar="NUMBER",
            help="out_trade_no or out_refund_no to check; none: everything unsettled",
        )

    def handle(self, *args: Any, numbers: list[str], **options: Any) -> None:
        work: list[Payment | Refund] = []
        unsettled = ("created", "pending")
        if numbers:
            payments = {p.out_trade_no: p for p in Payment.objects.filter(out_trade_no__in=numbers)}
            refunds = {
                r.out_refund_no: r
                for r in Refund.objects.select_related("payment").filter(out_refund_no__in=numbers)
            }
            unknown = [n for n in numbers if n not in payments and n not in refunds]
            if unknown:
                raise CommandError(f"No payment or refund numbered {', '.join(unknown)}.")
            work = [payments.get(n) or refunds[n] for n in numbers]
        else:
            work.extend(Payment.objects.filter(status__in=unsettled).order_by("created_at"))
            work.extend(
                Refund.objects.select_related("payment")
                .filter(status__in=unsettled)
                .order_by("created_at")
            )
        if not work:
            self.stdout.write("Nothing to check: no payment or refund is unsettled.")
            return
        outcomes: Counter[str] = Counter()
        busy: list[str] = []
        for done, obj in enumerate(work, start=1):
            try:
                if isinstance(obj, Payment):
                    outcomes[f"payments {sync_payment(obj).status}"] += 1
                else:
                    outcomes[f"refunds {sync_refund(obj).status}"] += 1
            except CheckInProgress:
                busy.append(obj.out_trade_no if isinstance(obj, Payment) else obj.out_refund_no)
            show_progress(self.stdout, done, len(work))
        checked = sum(outcomes.values())
        summary = ", ".join(f"{count} {what}" for what, count in sorted(outcomes.items()))
        self.stdout.write(self.style.SUCCESS(f"Checked {checked}: {summary or 'none'}."))
        if busy:
            self.stdout.write(
                self.style.WARNING(
                    f"Skipped {len(busy)} being checked by a worker right now: {', '.join(busy)}."
                )
            )
