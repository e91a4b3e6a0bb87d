"""``manage.py motp_purge_api_calls --days N``: delete API call log rows older than N days."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_motp.models import ApiCall


class Command(BaseCommand):
    help = "Delete rows of the MOTP API call log older than --days days (default 90)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, default=90, help="keep this many days (default 90)")

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        if days < 0:
            raise CommandError("--days must be zero or more.")
        deleted, _ = ApiCall.objects.older_than(days).delete()
        self.stdout.write(f"Deleted {deleted} API call rows older than {days} days.")
