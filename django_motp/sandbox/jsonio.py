"""JSON in and out with exact decimal amounts.

Amounts are read as ``Decimal`` (never binary floats) and written back as JSON numbers spelled
exactly like the ``Decimal``: ``Decimal("19.90")`` is written ``19.90``, which the standard
``json`` module cannot do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(text: bytes | str) -> Any:
    """Parse JSON with fractional numbers as ``Decimal``.

    Raises ``ValueError`` (including ``json.JSONDecodeError`` and ``UnicodeDecodeError``) for
    anything that is not valid JSON; ``NaN`` and ``Infinity`` are refused too.
    """
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


def dumps(value: Any) -> str:
    """Serialize ``value`` to compact JSON, writing each finite ``Decimal`` as a plain number.

    Accepts mappings (with string keys), lists, tuples, strings, ints, floats, bools, ``None`` and
    ``Decimal``; raises ``TypeError`` for anything else (``bytes`` included: not a list of
    numbers) and ``ValueError`` for a non-finite number.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as a JSON number")
        return format(value, "f")
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(key))}:{dumps(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
