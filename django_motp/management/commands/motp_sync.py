"""``manage.py motp_sync``: check payments and refunds at the gateway now.

With order or refund numbers, checks those; with none, every payment and refund still unsettled
(created or pending). Each check goes through the same services as the Celery polls, so running it
beside the workers is safe.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_motp.models import Payment, Refund
from django_motp.services import sync_payment, sync_refund

BAR_WIDTH = 30


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
        for done, obj in enumerate(work, start=1):
            if isinstance(obj, Payment):
                outcomes[f"payments {sync_payment(obj).status}"] += 1
            else:
                outcomes[f"refunds {sync_refund(obj).status}"] += 1
            self._progress(done, len(work))
        summary = ", ".join(f"{count} {what}" for what, count in sorted(outcomes.items()))
        self.stdout.write(self.style.SUCCESS(f"Checked {len(work)}: {summary}."))

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        ending = "\n" if done == total else ""
        if self.stdout.isatty():
            self.stdout.write(f"\r[{bar}] {done}/{total}", ending=ending)
        elif done == total:
            self.stdout.write(f"[{bar}] {done}/{total}")
