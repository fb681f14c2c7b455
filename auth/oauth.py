"""OAuth 2.0 for standard clients: form-encoded requests, the token endpoint's two
grants (RFC 6749 §4.3 password, §6 refresh_token), and the §5.2 error answers.

The grants run the same code as /login and /refresh (`authenticate`,
`start_session`, `rotate_refresh_token`); only the way in and the error codes
differ. Tokens stay Flask-JWT-Extended's: there is no client registry (public
clients, RFC 6749 §2.1), and client credentials, when sent, are ignored.
"""

from typing import Any

from flask import request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import ExpiredSignatureError, PyJWTError
from marshmallow import Schema, ValidationError

from auth.accounts import InvalidCredentials, authenticate
from auth.callbacks import USER_GONE, check_revocation, user_exists
from auth.decorators import token_subject
from auth.dpop import check_refresh_grant, session_binding
from auth.sessions import (
    RefreshTokenReused,
    SessionExpired,
    rotate_refresh_token,
    start_session,
)
from core import APIError, audit

FORM = "application/x-www-form-urlencoded"


class OAuthError(APIError):
    """An RFC 6749 §5.2 error: 400, an `error` code and an `error_description`."""

    status_code = 400

    def extra_fields(self) -> dict[str, Any]:
        return {"error_description": self.message}


class InvalidRequest(OAuthError):
    """A parameter is missing, repeated or malformed, or the body is not a form."""

    error = "invalid_request"


class InvalidGrant(OAuthError):
    """The credentials or the refresh token are not (or no longer) good."""

    error = "invalid_grant"


class UnsupportedGrantType(OAuthError):
    """A grant type this server does not issue tokens for."""

    error = "unsupported_grant_type"


def form_parameters(schema: Schema, *, json: bool = True) -> dict[str, Any]:
    """The request's parameters, loaded by `schema`: from the form body
    (application/x-www-form-urlencoded, RFC 6749 §3.2), or, where `json` allows
    it, from a JSON object. A parameter sent twice is refused (§3.2)."""
    if json and request.mimetype == "application/json":
        body = request.get_json(silent=True)
        data = body if isinstance(body, dict) else None
    elif request.mimetype == FORM or (json and not request.mimetype):
        repeated = sorted(
            name for name in request.form if len(request.form.getlist(name)) > 1
        )
        if repeated:
            raise InvalidRequest(
                f"Parameters sent more than once: {', '.join(repeated)}."
            )
        data = request.form.to_dict()
    else:
        data = None
    if data is None:
        kinds = "form-encoded parameters or a JSON object" if json else "form-encoded"
        raise InvalidRequest(f"The body must be {kinds}.")
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields = ", ".join(sorted(exc.messages))
        raise InvalidRequest(
            f"Missing or malformed parameters: {fields}.", errors={"form": exc.messages}
        ) from exc


def form_body_doc(schema: type[Schema], *, json: bool = True) -> dict[str, Any]:
    """The OpenAPI request body of an operation that reads `form_parameters`."""
    content = {FORM: {"schema": schema}}
    if json:
        content["application/json"] = {"schema": schema}
    return {"required": True, "content": content}


def grant_tokens(parameters: dict[str, Any]) -> dict:
    """The token endpoint (RFC 6749 §3.2): a new session for the password grant,
    a rotation for the refresh_token grant; every refusal is `invalid_grant`."""
    grant = parameters["grant_type"]
    if grant == "password":
        username, password = _required(parameters, "username", "password")
        jkt = session_binding("body")  # RFC 9449 §5: a proof binds the tokens
        try:
            user = authenticate(username, password)
        except InvalidCredentials as exc:
            raise InvalidGrant("Invalid credentials.") from exc
        if user.totp_enabled:
            # RFC 6749 §4.3 has no second step: never tokens on the password alone.
            audit(
                "mfa_required",
                "Password grant refused: the account has a second factor",
                user_id=str(user.id),
            )
            raise InvalidGrant(SECOND_FACTOR_NEEDED)
        return start_session(user, jkt=jkt)
    if grant == "refresh_token":
        (refresh_token,) = _required(parameters, "refresh_token")
        claims = _verified_refresh_token(refresh_token)
        # RFC 9449 §5: a bound refresh token is traded with a proof of its key.
        check_refresh_grant(claims)
        try:
            return rotate_refresh_token(token_subject(), claims)
        except (RefreshTokenReused, SessionExpired) as exc:
            # A replay has revoked the session already, as on /refresh.
            raise InvalidGrant(exc.message) from exc
    raise UnsupportedGrantType(
        "grant_type must be password or refresh_token (RFC 6749 §4.3, §6)."
    )


SECOND_FACTOR_NEEDED = (
    "This account has a second factor, which the password grant cannot carry: "
    "log in with POST /login, then POST /login/mfa with a code (docs/mfa.md)."
)


def _required(parameters: dict[str, Any], *names: str) -> list[str]:
    missing = [name for name in names if not parameters.get(name)]
    if missing:
        raise InvalidRequest(
            f"The {parameters['grant_type']} grant needs {', '.join(missing)}."
        )
    return [parameters[name] for name in names]


def _verified_refresh_token(token: str) -> dict:
    """The claims of a refresh token of ours that may be rotated: the same checks
    as the /refresh route's (signature, expiry, type, revocation, its user)."""
    try:
        claims = decode_token(token)
    except ExpiredSignatureError as exc:
        raise InvalidGrant("The refresh token has expired.") from exc
    except (PyJWTError, JWTExtendedException) as exc:
        raise InvalidGrant("The refresh token is invalid.") from exc
    if claims.get("type") != "refresh":
        raise InvalidGrant(
            "An access token was sent where a refresh token is required."
        )
    if check_revocation({}, claims):
        raise InvalidGrant("The refresh token has been revoked.")
    if not user_exists({}, claims):
        raise InvalidGrant(USER_GONE)
    return claims
