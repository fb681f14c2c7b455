"""OAuth 2.0 style requests: form-encoded parameters (JSON accepted too), and their
errors as RFC 6749 §5.2 codes in the error envelope."""

from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from core import APIError


class InvalidRequest(APIError):
    """RFC 6749 §5.2 `invalid_request`: a parameter is missing or malformed."""

    status_code = 400
    error = "invalid_request"


def form_parameters(schema: Schema) -> dict[str, Any]:
    """The request's parameters, loaded by `schema`: from the form body
    (application/x-www-form-urlencoded, RFC 6749 §3.2), or from a JSON object."""
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        data = body if isinstance(body, dict) else None
    else:
        data = request.form.to_dict()
    if data is None:
        raise InvalidRequest(
            "The body must be form-encoded parameters or a JSON object."
        )
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields = ", ".join(sorted(exc.messages))
        raise InvalidRequest(
            f"Missing or malformed parameters: {fields}.", errors={"form": exc.messages}
        ) from exc


def form_body_doc(schema: type[Schema]) -> dict[str, Any]:
    """The OpenAPI request body of an operation that reads `form_parameters`."""
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": schema},
            "application/json": {"schema": schema},
        },
    }
