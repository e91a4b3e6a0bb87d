"""The example shop: django-motp wired into a plain Django project."""

from .celery import app as celery_app

__all__ = ["celery_app"]
