"""The polling benchmark's Celery app (``celery -A bench.celery_app worker``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("motp-bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_motp"])
