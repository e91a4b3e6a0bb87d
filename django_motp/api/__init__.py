"""The REST API (Django REST framework) for shop front ends and POS terminals.

Mount it with ``path("motp/", include("django_motp.api.urls"))``. Every POST takes an
``Idempotency-Key`` header that makes it safe to send again (``django_motp.api.idempotency``).
"""
