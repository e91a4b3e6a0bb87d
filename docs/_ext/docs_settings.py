"""Django settings for building the docs: the test suite's, plus drf-spectacular's command."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "drf_spectacular"]  # noqa: F405
