"""``manage.py motp_purge_events --days N``: delete delivered signal events older than N days.

Undelivered events are never deleted: they are what a receiver still has to hear.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from django_motp.conf import motp_settings
from django_motp.models import Event


class Command(BaseCommand):
    help = (
        "Delete delivered MOTP signal events older than --days days "
        "(default: MOTP['EVENT_RETENTION_DAYS'])."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, default=None, help="keep this many days")

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        days = motp_settings.EVENT_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be zero or more.")
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = Event.objects.filter(
            delivered_at__isnull=False, delivered_at__lt=cutoff
        ).delete()
        self.stdout.write(f"Deleted {deleted} delivered events older than {days} days.")
