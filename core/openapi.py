"""The OpenAPI document's settings (flask-smorest reads them from the app's config):
its title and version, where it and Swagger UI are served, and the two ways an
operation takes a token."""

from typing import Any

# An operation that needs a token takes it either way (OpenAPI: one or the other).
# (A DPoP-bound token of a session started with a proof, RFC 9449, is a third way.)
BEARER_OR_OAUTH2: list[dict[str, list]] = [
    {"bearerAuth": []},
    {"oauth2": []},
    {"dpop": []},
]
# RFC 9449 §4.1: the proof header, which operations that take or issue a token read.
DPOP_PARAMETER = {
    "required": False,
    "schema": {"type": "string", "maxLength": 8192},
    "description": (
        "A DPoP proof (RFC 9449 §4): a JWT of type dpop+jwt signed by the client's "
        "key, for this request's method and URL (htm, htu), with the token's hash "
        "(ath) when a token is sent. At a login it binds the session's tokens to "
        "the key; with a bound token it is required (docs/dpop.md)."
    ),
}


def openapi_settings() -> dict[str, Any]:
    """API_TITLE, API_SPEC_OPTIONS and the rest of flask-smorest's settings."""
    return {
        "API_TITLE": "Stores REST API",
        "API_VERSION": "1.0.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/swagger-ui",
        "OPENAPI_SWAGGER_UI_URL": "/swagger-ui-assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True},
        "API_SPEC_OPTIONS": {
            "info": {
                "description": (
                    "Log in for a fresh access token and a refresh token; trade the "
                    "refresh token at /refresh for a new non-fresh access token. "
                    "Destructive operations need a fresh token."
                )
            },
            "security": BEARER_OR_OAUTH2,
            "components": {"securitySchemes": _security_schemes()},
        },
    }


def _security_schemes() -> dict[str, Any]:
    return {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        # RFC 9449 §7.1: `Authorization: DPoP <token>` and a proof per request;
        # Swagger UI cannot sign proofs, and says so ("unsupported scheme").
        "dpop": {
            "type": "http",
            "scheme": "DPoP",
            "bearerFormat": "JWT",
            "description": (
                "A token of a session bound to the client's key (token_type DPoP): "
                "sent as 'Authorization: DPoP <token>' with a DPoP proof header."
            ),
        },
        # RFC 6749 §4.3: Swagger UI's Authorize takes a username and a password;
        # relative URLs resolve against the server's (under a path prefix, the
        # document prefixes them: core/pages).
        "oauth2": {
            "type": "oauth2",
            "flows": {
                "password": {"tokenUrl": "/token", "refreshUrl": "/token", "scopes": {}}
            },
        },
    }
