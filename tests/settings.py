"""Settings for django-motp's own test suite.

SQLite in a file by default (so a Celery worker thread shares the test database). Set
``DATABASE_URL=postgres://user@host:port/name`` to run on PostgreSQL instead; ``make test`` does so
for a second pass of the whole suite.
"""

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent
# The example shop's app is tested here too (tests/test_shop*.py): it lives in example_project/.
sys.path.append(str(BASE_DIR.parent / "example_project"))

SECRET_KEY = "django-motp-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_motp",
    "shop",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Each request in its browser's language (tests/test_i18n.py); English when it names none.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"

# drf-spectacular describes the REST API (the api-docs extra, part of the test extra).
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "django_motp.models.Payment.Status",
        "RefundStatusEnum": "django_motp.models.Refund.Status",
    }
}


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/") or "postgres",
            "USER": parts.username or "postgres",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": parts.port or 5432,
            # One test database per run, so that runs sharing a server do not collide.
            "TEST": {"NAME": f"test_motp_{os.getpid()}"},
        }
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "motp-tests.sqlite3",
        # A file, not memory: threads (Celery worker, concurrent syncs) open their own connections.
        "TEST": {"NAME": str(BASE_DIR / f"motp-test-{os.getpid()}.sqlite3")},
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }


DATABASES = {"default": _database()}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

MOTP = {
    "BASE_URL": "https://motp-gateway.invalid",
    "USERNAME": "tests",
    "PASSWORD": "tests-password",
    "STORE_ID": "10001",
}

# Polls enqueued by the services go to an in-memory broker that nothing consumes, unless a test
# starts a real worker on Redis (tests/test_worker.py).
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "WARNING"},
}
