"""The REST API's ``Idempotency-Key`` rows: the first answer given for each key."""

from __future__ import annotations

from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import motp_settings


class IdempotencyKeyQuerySet(models.QuerySet["IdempotencyKey"]):
    def expired(self, ttl: float | None = None) -> IdempotencyKeyQuerySet:
        """Keys older than ``ttl`` seconds (default ``MOTP["IDEMPOTENCY_KEY_TTL"]``)."""
        seconds = motp_settings.IDEMPOTENCY_KEY_TTL if ttl is None else ttl
        return self.filter(created_at__lt=timezone.now() - timedelta(seconds=seconds))


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` sent to the REST API, and the first answer given for it.

    The row is written (``status_code`` NULL: still running) before the request's work starts, so
    the unique constraint lets exactly one of several concurrent requests with one key do it.
    The answer is stored when the work ends and replayed for a retry with the same request.
    """

    scope = models.CharField(_("scope"), max_length=255, help_text=_("Whose key it is."))
    key = models.CharField(_("key"), max_length=255)
    fingerprint = models.CharField(
        _("request fingerprint"),
        max_length=64,
        help_text=_("HMAC-SHA-256 of the request's method, path and body."),
    )
    method = models.CharField(_("method"), max_length=8)
    path = models.CharField(_("path"), max_length=512)
    status_code = models.PositiveSmallIntegerField(
        _("answer status"), null=True, blank=True, help_text=_("Empty while the request runs.")
    )
    response = models.JSONField(_("answer body"), null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="motp_idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} ({self.status_code or 'running'})"

    @property
    def is_running(self) -> bool:
        return self.status_code is None
