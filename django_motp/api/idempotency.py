"""``Idempotency-Key`` for the API's POSTs, with Stripe's semantics.

- The first request with a key claims it by inserting an ``IdempotencyKey`` row (answer empty:
  running), committed BEFORE the work starts: the unique constraint on (scope, key) lets one of
  several concurrent requests through; the others get 409 and retry later.
- Its answer is stored whatever it is (201, 202, 402, 404, even a 500) and replayed for the same
  key and the same request (method, path and body), with ``Idempotent-Replayed: true``: no
  second payment, no gateway call.
- The same key with another request: 422. An answer that says nothing was done and the client
  may try again (400: refused by validation; 409: a status check is already running) is not
  stored: the claim is deleted, so the corrected request can be sent with the same key.
- Keys expire ``MOTP["IDEMPOTENCY_KEY_TTL"]`` seconds after their first use; an expired key is
  free again, and ``manage.py motp_purge_idempotency_keys`` deletes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import json

from ..models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: Answers that mean "nothing was done, correct it or try again": not stored.
NOT_STORED = frozenset({status.HTTP_400_BAD_REQUEST, status.HTTP_409_CONFLICT})
SERVER_ERROR_BODY = {"detail": "A server error occurred."}


class KeyInUse(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _(
        "A request with this Idempotency-Key is still being processed; send it again in a moment."
    )
    default_code = "idempotency_key_in_use"


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = _(
        "This Idempotency-Key was used for a different request; use a new key for a new request."
    )
    default_code = "idempotency_key_reused"


def fingerprint(request: Request) -> str:
    """An HMAC-SHA-256 (keyed with ``SECRET_KEY``, as the body holds buyers' payment codes) of
    the request's method, path and parsed body, keys sorted so that the order of a JSON
    object's members does not matter. Reading the body may raise ``ParseError``."""
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict from a form
        data = dict(data.lists())
    body = json.dumps(data, sort_keys=True, cls=DjangoJSONEncoder, separators=(",", ":"))
    message = f"{request.method}\n{request.path}\n{body}"
    return salted_hmac(__name__, message, algorithm="sha256").hexdigest()


def claim(scope: str, key: str, request: Request) -> tuple[IdempotencyKey, bool]:
    """Claim ``key`` for ``request``: ``(row, False)`` when this request now owns it and must do
    the work, ``(row, True)`` when the row holds an earlier answer to replay.

    Raises ``KeyReused`` (422) if the key was used for another request, ``KeyInUse`` (409) if
    the request that claimed it is still running. Must run outside ``transaction.atomic``:
    the claim is committed before the work starts.
    """
    fields = {
        "fingerprint": fingerprint(request),
        "method": request.method or "",
        "path": request.path[:512],
    }
    for _attempt in range(3):
        try:
            with transaction.atomic(durable=True):
                return IdempotencyKey.objects.create(scope=scope, key=key, **fields), False
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(scope=scope, key=key).first()
        if existing is None:  # released or purged since: claim it again
            continue
        if IdempotencyKey.objects.expired().filter(pk=existing.pk).exists():
            IdempotencyKey.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.fingerprint != fields["fingerprint"]:
            raise KeyReused()
        if existing.is_running:
            raise KeyInUse()
        return existing, True
    raise KeyInUse()


def complete(row: IdempotencyKey, status_code: int, data: Any) -> None:
    """Store the answer given for a claimed key."""
    IdempotencyKey.objects.filter(pk=row.pk).update(
        status_code=status_code, response=data, completed_at=timezone.now()
    )


def release(row: IdempotencyKey) -> None:
    """Free a claimed key: nothing was done, the request may be sent again."""
    IdempotencyKey.objects.filter(pk=row.pk).delete()


class IdempotentMixin:
    """For DRF views: ``self.idempotent(work)`` runs ``work`` (returning a ``Response``) at most
    once per ``Idempotency-Key`` and scope; without the header it simply runs it.

    Views using it must not run inside ``transaction.atomic`` (``ATOMIC_REQUESTS``): mark them
    ``non_atomic_requests``, as ``django_motp.api.urls`` does.
    """

    request: Any  # the view's DRF Request
    handle_exception: Callable[[Exception], Response]

    def get_idempotency_scope(self) -> str:
        """Whose keys these are: by default the authenticated user's, so two users' keys never
        meet. Override it to share keys, e.g. between the terminals of one store."""
        user = self.request.user
        return f"user:{user.pk}" if user and user.is_authenticated else "anonymous"

    def get_idempotency_key(self) -> str | None:
        """The request's ``Idempotency-Key`` (None without one); 400 if it is empty or longer
        than 255 characters."""
        key = self.request.headers.get(HEADER)
        if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise ValidationError(
                {HEADER: [_("An Idempotency-Key has 1 to 255 characters.")]},
                code="invalid_idempotency_key",
            )
        return key

    def idempotent(self, work: Callable[[], Response]) -> Response:
        key = self.get_idempotency_key()
        if key is None:
            return work()
        row, replay = claim(self.get_idempotency_scope(), key, self.request)
        if replay:
            assert row.status_code is not None
            return Response(row.response, status=row.status_code, headers={REPLAYED_HEADER: "true"})
        try:
            try:
                response = work()
            except Exception as exc:
                response = self.handle_exception(exc)  # re-raises what is not an API error
        except BaseException:
            complete(row, status.HTTP_500_INTERNAL_SERVER_ERROR, SERVER_ERROR_BODY)
            raise
        if response.status_code in NOT_STORED:
            release(row)
        else:
            complete(row, response.status_code, response.data)
        return response
