"""The API's JSON body parser: DRF's, with a bound on nesting.

json.load recurses once per level: a body nested 100,000 deep raises
RecursionError, which DRF does not catch (it is not a ValueError), so it
became a 500. A body nested deeper than any request of this API could be is
refused as a parse error (400) instead, before a view, a serializer or an
error message walks it recursively again."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32  # the deepest request body of this API has 3 levels


def _too_deep(data: Any, limit: int) -> bool:
    """Whether DATA nests lists/objects more than LIMIT levels (iteratively:
    checking must not recurse either)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        message = f"JSON parse error - nested more than {MAX_DEPTH} levels deep"
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(message) from None
        if _too_deep(data, MAX_DEPTH):
            raise ParseError(message)
        return data
