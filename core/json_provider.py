"""JSON through orjson, for answers and request bodies alike.

Answers: the same output as Flask's provider, several times faster. Request
bodies: every one is parsed by `ORJSONProvider.loads`, whether a view reads it
through `@blp.arguments` (webargs, by way of core/blueprint.py's parser) or
through `request.get_json`. webargs alone would parse with the standard library,
whose recursive parser turns a body nested about a thousand levels deep into a
RecursionError, so a 500; here such a body is not valid JSON (400), like any
other that cannot be parsed.
"""

import json
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

# Deeper than any body the API accepts (its schemas nest two or three levels), and
# far below orjson's own limit (1,024) and the interpreter's recursion limit, which
# a deep body would otherwise reach in whatever walks it next.
MAX_JSON_DEPTH = 64


class ORJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson underneath (keys keep their order)."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse a document; one nested deeper than MAX_JSON_DEPTH is invalid."""
        value = orjson.loads(s)
        # Each level opens a bracket: a document with few brackets needs no walk
        # (brackets inside strings only make the walk happen for nothing).
        if isinstance(s, str):
            brackets = s.count("[") + s.count("{")
        else:
            brackets = s.count(b"[") + s.count(b"{")
        if brackets > MAX_JSON_DEPTH and _nests_deeper(value, MAX_JSON_DEPTH):
            raise json.JSONDecodeError(
                f"Nested deeper than {MAX_JSON_DEPTH} levels", "", 0
            )
        return value


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` (a loop, not recursion)."""
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        node, depth = pending.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                if depth == limit:
                    return True
                pending.append((child, depth + 1))
    return False
