"""``manage.py motp_purge_idempotency_keys``: delete the REST API's expired Idempotency-Keys."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_motp.conf import motp_settings
from django_motp.models import IdempotencyKey


class Command(BaseCommand):
    help = (
        "Delete the REST API's Idempotency-Keys older than MOTP['IDEMPOTENCY_KEY_TTL'] seconds "
        "(expired keys are already free to use again; this keeps the table small)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ttl = motp_settings.IDEMPOTENCY_KEY_TTL
        deleted, _ = IdempotencyKey.objects.expired().delete()
        self.stdout.write(f"Deleted {deleted} idempotency keys older than {ttl} seconds.")
