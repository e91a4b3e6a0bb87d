"""Settings of the polling benchmark's worker: the test settings, pointed by environment
variables at the benchmark's database, sandbox and broker."""

import json
import os

from tests.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["BENCH_DATABASE_NAME"]  # noqa: F405
MOTP = json.loads(os.environ["BENCH_MOTP"])
CELERY_BROKER_URL = os.environ["BENCH_BROKER_URL"]
CELERY_TASK_DEFAULT_QUEUE = os.environ["BENCH_QUEUE"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {"motp-sweep": {"task": "django_motp.tasks.sweep", "schedule": 15.0}}
if os.environ.get("BENCH_POLL_DUE"):  # the documented set-up; without it, the baseline
    CELERY_BEAT_SCHEDULE["motp-poll-due"] = {
        "task": "django_motp.tasks.poll_due",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    }
# Processes share the token through Redis, as a production deployment would.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["BENCH_CACHE_URL"],
    }
}
