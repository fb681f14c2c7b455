"""The app's flask-smorest `Api`: every HTTP error in the envelope, and an OpenAPI
document that lists the errors every request can meet."""

import flask_smorest
from apispec import APISpec, BasePlugin
from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as BaseResponse

from core.errors import ErrorSchema, error_response, error_response_doc
from core.openapi import DPOP_PARAMETER


class RequestErrorsPlugin(BasePlugin):
    """Document, on every operation, the errors that come from the request's shape,
    and the DPoP proof header (RFC 9449) where a token is taken or issued.

    Every request with a body over MAX_CONTENT_LENGTH is refused (413) before any
    view runs, and an operation that reads a JSON body answers 400 to one that is
    not JSON. Errors that depend on what an operation does (401, 403, 404, 409,
    422, 429, 503) are documented by its decorators.
    """

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        spec.components.parameter("DPoP", "header", DPOP_PARAMETER)

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            # Keep an operation's own answer; its decorators key them by int.
            if "requestBody" in operation and not _documents(responses, 400):
                responses["400"] = error_response_doc(
                    "The request body is not valid JSON."
                )
            if not _documents(responses, 413):
                responses["413"] = error_response_doc(
                    "The request body is over the size limit (1 MiB)."
                )
            if operation.get("security") != [] or path in DPOP_ISSUERS:
                # Every operation that takes a token (or issues one) reads it.
                operation.setdefault("parameters", []).append(DPOP_REFERENCE)


# The public operations that bind the tokens they issue, or revoke, to a proof's key.
DPOP_ISSUERS = frozenset(
    {"/login", "/login/mfa", "/login/passkey", "/token", "/revoke"}
)
DPOP_REFERENCE = "DPoP"  # the component (apispec writes the $ref)


def _documents(responses: dict, status: int) -> bool:
    return status in responses or str(status) in responses


class EnvelopeApi(flask_smorest.Api):
    """flask-smorest's Api, answering every HTTP error in the envelope."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app: Flask, *, spec_kwargs: dict | None = None) -> None:
        """Bind to the app; the OpenAPI document also lists the request errors."""
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [
            *spec_kwargs.get("extra_plugins", ()),
            RequestErrorsPlugin(),
        ]
        super().init_app(app, spec_kwargs=spec_kwargs)

    def handle_http_exception(self, error: HTTPException) -> BaseResponse:
        """Turn abort(), werkzeug errors and unhandled exceptions into the envelope."""
        if error.response is not None:
            return error.response  # already an envelope (e.g. the rate limiter's)
        code = error.code or 500
        data = getattr(error, "data", None) or {}
        # Keep protocol headers such as Allow (405); the body is ours.
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        errors = data.get("errors") or data.get("messages")
        message = data.get("message")
        if message is None and code == 400 and errors:
            # webargs reports an unparsable body this way.
            message = "The request body is not valid JSON."
        elif message is None and code < 500 and code != 422:
            message = error.description
        return error_response(
            code,
            message=message,
            error=data.get("error"),
            errors=errors,
            headers=headers,
        )
