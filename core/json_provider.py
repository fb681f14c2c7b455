"""JSON through orjson: the same output as Flask's provider, several times faster."""

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider


class ORJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson underneath (keys keep their order)."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)
