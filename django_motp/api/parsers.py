"""A JSON parser that reads numbers with a fraction as ``Decimal``, never as ``float``."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from decimal import Decimal
from typing import IO, Any, cast

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json


class DecimalJSONParser(JSONParser):
    """DRF's ``JSONParser`` with ``parse_float=Decimal``: ``19.9`` arrives as ``Decimal("19.9")``
    and ``0.125`` keeps its three decimals (to be refused), where a float would round them."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            decoded = cast(IO[str], codecs.getreader(encoding)(stream))
            parse_constant = json.strict_constant if self.strict else None
            data = json.load(decoded, parse_float=Decimal, parse_constant=parse_constant)
            # "\ud800" is valid JSON but no text: refuse it here rather than fail to save it.
            json.dumps(data, default=str, ensure_ascii=False).encode("utf-8")
        except ValueError as exc:  # UnicodeError is a ValueError
            raise ParseError(_("JSON parse error - %s") % exc) from exc
        return data
