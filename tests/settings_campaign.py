"""Settings of the fault campaign's worker and beat processes (``tests/test_campaign.py``).

The test's own settings, plus what the campaign hands over in ``MOTP_CAMPAIGN_CONFIG`` (JSON):
the test database's name, the ``MOTP`` dict pointing at the campaign's sandbox, the private
Redis broker, whether beat also starts the ``poll_due`` loop, and the key prefix of the cache
(tokens, the loop's "alive" key) that every process shares (the machine's Redis, which the
campaign never restarts). Every log record at DEBUG goes to the process's log file
(``celery ... -f``), where the secrets test reads it.
"""

import json
import os

from tests.settings import *  # noqa: F403

_config = json.loads(os.environ["MOTP_CAMPAIGN_CONFIG"])

DATABASES["default"]["NAME"] = _config["database"]  # noqa: F405
MOTP = _config["motp"]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _config["cache_url"],
        "KEY_PREFIX": _config["cache_prefix"],
    }
}
CELERY_BROKER_URL = _config["broker_url"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_IMPORTS = ["django_motp.tasks", "tests.campaign_worker"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "motp-sweep": {"task": "django_motp.tasks.sweep", "schedule": _config["sweep_every"]},
}
if _config.get("poll_due"):
    # The documented set-up (README, "Run the workers in production").
    CELERY_BEAT_SCHEDULE["motp-poll-due"] = {
        "task": "django_motp.tasks.poll_due",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    }
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "DEBUG"},
}
