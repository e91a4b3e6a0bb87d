"""Settings of the example shop: SQLite, the sandbox gateway, and a Celery broker in a folder.

Environment variables switch what the demo runs on (the launcher ``demo.py`` passes them on):

- ``DATABASE_URL``: ``postgres://user:password@host:5432/name`` for PostgreSQL (needs
  ``psycopg``), ``sqlite:////absolute/path.sqlite3`` for another SQLite file; default
  ``example_project/db.sqlite3``.
- ``CELERY_BROKER_URL``: ``redis://127.0.0.1:6379/0`` (needs ``redis``) or
  ``amqp://guest:guest@127.0.0.1:5672//`` (RabbitMQ); default a folder under ``SHOP_RUN_DIR``.
- ``SHOP_RUN_DIR``: where the folder broker, the file cache and beat's schedule live (default
  ``example_project/.run``).
- ``MOTP_BASE_URL``: the gateway; default the sandbox on 127.0.0.1:8765.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("SHOP_RUN_DIR") or BASE_DIR / ".run")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-shop-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

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
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the one chosen with the switcher (a cookie), else the browser's.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shopsite.urls"
WSGI_APPLICATION = "shopsite.wsgi.application"

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


def _database(url: str) -> dict:
    """Django's DATABASES entry for ``url`` (postgres:// or sqlite:///); empty: the default."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or "postgres"),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": parts.port or 5432,
        }
    if parts.scheme not in ("", "sqlite"):
        raise ValueError(f"DATABASE_URL: use postgres:// or sqlite:///, not {parts.scheme}://")
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": unquote(parts.path) if url else BASE_DIR / "db.sqlite3",
        # The web server and the worker write at once: wait for the lock, take it up front.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }


DATABASES = {"default": _database(os.environ.get("DATABASE_URL", ""))}
# The web process and the worker share the token through the cache: a file cache needs no server.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(RUN_DIR / "cache"),
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# English, Khmer for the cashiers and shop owners, Chinese for buyers paying with Chinese wallets;
# each named in its own language, as the switcher shows them.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("km", "ខ្មែរ"), ("zh-hans", "简体中文")]
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

MOTP = {
    "BASE_URL": os.environ.get("MOTP_BASE_URL", "http://127.0.0.1:8765"),
    "USERNAME": os.environ.get("MOTP_USERNAME", "sandbox"),
    "PASSWORD": os.environ.get("MOTP_PASSWORD", "sandbox"),
    "STORE_ID": os.environ.get("MOTP_STORE_ID", "10001"),
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(RUN_DIR / "broker"),
        "data_folder_out": str(RUN_DIR / "broker"),
        "processed_folder": str(RUN_DIR / "broker-done"),
        "control_folder": str(RUN_DIR / "control"),
        "store_processed": False,
    }
CELERY_BEAT_SCHEDULE = {
    "motp-sweep": {"task": "django_motp.tasks.sweep", "schedule": 15.0},
    "motp-poll-due": {
        "task": "django_motp.tasks.poll_due",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(RUN_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_motp": {"handlers": ["console"], "level": "INFO"},
        "shop": {"handlers": ["console"], "level": "INFO"},
    },
}
