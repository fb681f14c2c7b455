"""One MethodView blueprint per resource, and the URL converter they share."""

from werkzeug.routing import IntegerConverter

from schemas import MAX_ID


class IdConverter(IntegerConverter):
    """`<id:name>`: a database id; anything out of range is simply not found (404)."""

    def __init__(self, url_map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def id_parameter_schema(_converter: IdConverter) -> dict:
    """How `<id:...>` path parameters look in the OpenAPI document."""
    return {"type": "integer", "minimum": 1, "maximum": MAX_ID}
