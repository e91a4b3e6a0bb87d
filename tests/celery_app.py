"""The Celery app of the test project: settings from ``CELERY_*``; an in-memory broker by default,
Redis for the tests that start a real worker."""

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.set_default()
