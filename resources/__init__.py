"""One MethodView blueprint per resource; the URL converter and links they share."""

from collections.abc import Callable

from werkzeug.routing import IntegerConverter

from core import Blueprint
from schemas import MAX_ID

DATABASE_UNAVAILABLE = "The database is unavailable; retry later."


class IdConverter(IntegerConverter):
    """`<id:name>`: a database id; anything out of range is simply not found (404)."""

    def __init__(self, url_map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def id_parameter_schema(_converter: IdConverter) -> dict:
    """How `<id:...>` path parameters look in the OpenAPI document."""
    return {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def link(
    method: str,
    path: str,
    description: str,
    *,
    parameters: dict[str, str] | None = None,
    request_body: dict[str, str] | None = None,
) -> dict:
    """An OpenAPI link to the operation `method path`, fed from a response.

    `parameters` and `request_body` map names to runtime expressions such as
    `$response.body#/id`; they tell clients (and schemathesis's stateful tests)
    which value of one answer goes where in the next request.
    """
    pointer = path.replace("~", "~0").replace("/", "~1")
    definition: dict = {
        "operationRef": f"#/paths/{pointer}/{method.lower()}",
        "description": description,
    }
    if parameters:
        definition["parameters"] = parameters
    if request_body:
        definition["requestBody"] = request_body
    return definition


def links(status: int, **named_links: dict) -> Callable:
    """Document the links of an operation's `status` response."""
    # The key is the int that blp.response documents under: a "201" beside 201
    # would replace the generated response (its schema) instead of adding to it.
    return Blueprint.doc(responses={status: {"links": named_links}})
