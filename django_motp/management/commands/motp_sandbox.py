"""``manage.py motp_sandbox``: run the sandbox gateway with the project's credentials.

The same server and options as ``python -m django_motp.sandbox``, but ``--username``,
``--password`` and ``--store-id`` default to ``settings.MOTP``'s ``USERNAME``, ``PASSWORD`` and
``STORE_ID`` (when set), so the project's settings fit the sandbox as they are.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_motp.conf import user_settings
from django_motp.sandbox.cli import add_arguments, serve, server_options
from django_motp.sandbox.server import SandboxServer


class Command(BaseCommand):
    help = "Run the MOTP sandbox gateway (a fake gateway for development and demos)."
    # The sandbox needs neither the database nor a complete MOTP setting.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        configured = user_settings()
        sandbox_options = server_options(
            options,
            username=configured.get("USERNAME"),
            password=configured.get("PASSWORD"),
            store_id=configured.get("STORE_ID"),
        )
        try:
            server = SandboxServer(
                options["host"], options["port"], verbose=options["verbose"], **sandbox_options
            )
        except OSError as error:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {error.strerror}"
            ) from error
        base_url = str(configured.get("BASE_URL") or "").rstrip("/")
        if base_url != server.url:
            self.stderr.write(
                f"settings.MOTP['BASE_URL'] is {base_url or 'not set'}: set it to {server.url} "
                "for the project to use this sandbox."
            )
        serve(server, self._echo)

    def _echo(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
