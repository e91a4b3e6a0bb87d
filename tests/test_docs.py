"""README's quickstart runs as written, against the sandbox (the docs' own examples run in
``make docs``: sphinx doctest and docs/examples)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.core import publish_doctree

from django_motp.models import Payment

README = Path(__file__).resolve().parent.parent / "README.rst"


def _python_blocks(section_title: str) -> list[str]:
    tree = publish_doctree(README.read_text(), settings_overrides={"report_level": 5})
    for section in tree.findall(nodes.section):
        if section[0].astext() == section_title:
            return [
                block.astext()
                for block in section.findall(nodes.literal_block)
                if "python" in block["classes"]
            ]
    raise AssertionError(f"README.rst has no section {section_title!r}")


def test_readme_quickstart_takes_and_refunds_payments(motp_sandbox: Any, db: Any) -> None:
    code = [block for block in _python_blocks("Quickstart") if "services." in block]
    assert len(code) == 1, "the quickstart's code block that calls the services"
    namespace: dict[str, Any] = {}
    exec(compile(code[0], "README.rst (Quickstart)", "exec"), namespace)

    qr = Payment.objects.get(reference="order 1042")
    assert qr.status == Payment.Status.PENDING
    assert qr.qr_code
    paid = namespace["payment"]
    paid.refresh_from_db()
    assert paid.status == Payment.Status.SUCCEEDED
    assert paid.refunded_amount == Decimal("19.90")
    assert [refund.amount for refund in paid.refunds.order_by("created_at")] == [
        Decimal("5.00"),
        Decimal("14.90"),
    ]
