"""Sphinx configuration for django-motp's documentation (``make docs``).

Django is set up with the test suite's settings so that autodoc can import the models and the
REST API's OpenAPI schema can be generated from the code at build time (``_ext/motp_docs.py``).
The code examples run with ``sphinx-build -b doctest`` against a sandbox gateway and a
throw-away database, as the test suite does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docs_settings")
django.setup()

import django_motp  # noqa: E402 - after django.setup()

project = "django-motp"
author = "django-motp maintainers"
copyright = "django-motp maintainers"
release = django_motp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinxcontrib.openapi",
    "motp_docs",
]

exclude_patterns = ["_build", "_generated/README.rst"]
templates_path: list[str] = []
# The docs are read offline (a till, a laptop on a train): no intersphinx inventories to fetch.

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# Models show no (*args, **kwargs) signature (_ext/motp_docs.py); their fields are listed by the
# motp-model-fields directive.

html_theme = "furo"
html_title = f"django-motp {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# The doctest builder's setup: a sandbox gateway on a free loopback port, settings.MOTP pointed at
# it and a fresh test database (see _ext/motp_docs.py); torn down when the build finishes.
doctest_global_setup = (
    "from motp_docs import examples_environment\nmotp_sandbox = examples_environment()"
)
doctest_test_doctest_blocks = ""
