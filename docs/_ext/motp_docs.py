"""Sphinx helpers for django-motp's docs: the REST API's schema, and the examples' environment.

- ``builder-inited``: writes the OpenAPI schema of ``django_motp.api`` with drf-spectacular's
  ``spectacular`` command to ``_generated/openapi.yaml``, so the REST API reference
  (``.. openapi::``) is always the code's own, and the schema is offered for download.
- ``examples_environment()``: called by the doctest builder before each document's examples.
  The first call starts a sandbox gateway on a free loopback port (short delays, as the
  ``motp_sandbox_server`` fixture), points ``settings.MOTP`` at it and creates a throw-away
  test database; later calls reset the sandbox. ``build-finished`` tears it all down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

GENERATED = Path(__file__).resolve().parent.parent / "_generated"

_environment: dict[str, Any] = {}


def write_openapi_schema(app: Sphinx) -> None:
    from django.core.management import call_command

    GENERATED.mkdir(exist_ok=True)
    call_command(
        "spectacular",
        file=str(GENERATED / "openapi.yaml"),
        urlconf="tests.urls",  # the API mounted at motp/, as the docs tell
        fail_on_warn=True,
        validate=True,
    )


def examples_environment() -> Any:
    """Make the examples' world: a sandbox gateway, settings pointed at it, an empty database.

    Returns a ``django_motp.testing.SandboxHandle``, which the examples know as ``motp_sandbox``
    (the pytest fixture's name). Each document starts from a reset sandbox (no orders, scripts
    or faults) but keeps the database, like a project's tests within one session.
    """
    from django_motp.client import MOTPClient
    from django_motp.testing import SandboxHandle

    if _environment:
        _environment["sandbox"].state.reset()
        client = MOTPClient.from_settings()
        client.forget_token()  # void after the reset
        client.close()
        return SandboxHandle(_environment["sandbox"])
    from django.db import connection
    from django.test.utils import override_settings, setup_test_environment

    from django_motp.sandbox import SandboxServer
    from django_motp.testing import FIXTURE_DELAYS

    sandbox = SandboxServer(port=0, **FIXTURE_DELAYS).start()
    settings = override_settings(
        MOTP={
            "BASE_URL": sandbox.url,
            "USERNAME": "sandbox",
            "PASSWORD": "sandbox",
            "STORE_ID": "10001",
        }
    )
    settings.enable()
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    _environment.update(sandbox=sandbox, settings=settings, old_name=old_name)
    return SandboxHandle(sandbox)


class ModelFields(Directive):
    """``.. motp-model-fields:: django_motp.models.Payment``: a table of the model's fields (name,
    kind, what it holds), read from the model itself, so the reference never misses a column."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from django.utils.module_loading import import_string

        model = import_string(self.arguments[0])
        rows = []
        for field in model._meta.get_fields():
            if field.auto_created and not field.concrete:
                continue  # reverse relations: documented on the other model
            kind = type(field).__name__
            if field.is_relation and field.related_model is not None:
                kind += f" to {field.related_model.__name__}"
            what = str(field.verbose_name)
            if getattr(field, "choices", None):
                what += ": " + ", ".join(f"``{value}``" for value, _label in field.choices)
            if field.help_text:
                what += f" ({field.help_text})"
            rows.append((field.name, kind, what))
        table = nodes.table(classes=["motp-fields"])
        group = nodes.tgroup(cols=3)
        table += group
        for width in (20, 25, 55):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        body = nodes.tbody()
        group += head
        group += body
        head += self._row(("field", "kind", "what it holds"), literal_first=False)
        for row in rows:
            body += self._row(row, literal_first=True)
        return [table]

    def _row(self, cells: tuple[str, str, str], *, literal_first: bool) -> nodes.row:
        row = nodes.row()
        for index, text in enumerate(cells):
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            if index == 0 and literal_first:
                paragraph += nodes.literal(text=text)
            else:
                for i, part in enumerate(text.split("``")):
                    paragraph += nodes.literal(text=part) if i % 2 else nodes.Text(part)
            entry += paragraph
            row += entry
        return row


def model_signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str, annotation: str
) -> tuple[str, str] | None:
    """A model's class line without Django's ``(*args, **kwargs)``: nobody constructs one."""
    from django.db import models

    if what == "class" and isinstance(obj, type) and issubclass(obj, models.Model):
        return "", annotation
    return None


def tear_down(app: Sphinx, exception: BaseException | None) -> None:
    if not _environment:
        return
    from django.db import connection
    from django.test.utils import teardown_test_environment

    connection.creation.destroy_test_db(_environment["old_name"], verbosity=0)
    teardown_test_environment()
    _environment["settings"].disable()
    _environment["sandbox"].stop()
    _environment.clear()


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("motp-model-fields", ModelFields)
    app.connect("builder-inited", write_openapi_schema)
    app.connect("autodoc-process-signature", model_signature)
    app.connect("build-finished", tear_down)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
