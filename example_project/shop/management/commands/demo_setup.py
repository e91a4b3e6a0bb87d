"""``manage.py demo_setup``: what the demo needs before it starts (run by ``make demo``)."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo's admin user (admin / admin) and its run folders, if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        for folder in ("broker", "broker-done", "control", "cache"):
            Path(settings.RUN_DIR, folder).mkdir(parents=True, exist_ok=True)
        users = get_user_model()._default_manager
        if not users.filter(username="admin").exists():
            users.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created the superuser admin (password admin).")
