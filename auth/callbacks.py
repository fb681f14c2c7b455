"""Flask-JWT-Extended's callbacks: every token failure in the error envelope.

Each is a 401 with a machine-readable `error` (what a client does next depends on
it: `token_expired` -> refresh; anything else -> log in again) and a
`WWW-Authenticate` header (RFC 6750 §3). The revocation and user checks of every
protected request are callbacks too.
"""

from typing import Any

from flask import Response, g, request
from flask_jwt_extended import JWTManager
from flask_jwt_extended.exceptions import JWTDecodeError

from auth.api_tokens import is_api_token, note_api_token_use
from auth.challenges import www_authenticate
from auth.claims import claims_problem
from auth.dpop import check_presented_token
from auth.freshness import not_fresh_response
from auth.keys import (
    NO_KID,
    UNKNOWN_KID,
    WRONG_ALGORITHM,
    signing_keys,
    verifying_key,
)
from auth.user_cache import user_check_cache
from blocklist import get_blocklist
from core import error_response
from models import UserModel
from models.user import TokenSubject

# Flask-JWT-Extended's and PyJWT's wording, rewritten for API consumers.
INVALID_TOKEN_MESSAGES = {
    "Only non-refresh tokens are allowed": (
        "A refresh token was sent where an access token is required."
    ),
    "Only refresh tokens are allowed": (
        "An access token was sent where a refresh token is required."
    ),
    "Signature verification failed": "The token's signature is invalid.",
    "The specified alg value is not allowed": WRONG_ALGORITHM,
    # The key checks (auth/keys.py) word their own.
    NO_KID: NO_KID,
    UNKNOWN_KID: UNKNOWN_KID,
    WRONG_ALGORITHM: WRONG_ALGORITHM,
}
# PyJWT's reasons for a token that is not a well-formed JWT at all.
MALFORMED_TOKEN_REASONS = (
    "Not enough segments",
    "Invalid header",
    "Invalid payload",
    "Invalid crypto padding",
    "Invalid token type",
    "Key ID header parameter",
)


# Flask-JWT-Extended's reason for an Authorization header of another shape.
BAD_HEADER_REASON = "Bad Authorization header"
BAD_HEADER = (
    "The Authorization header must be 'Bearer <token>', or 'DPoP <token>' with a "
    "DPoP proof."
)
REVOKED = "The token has been revoked."
USER_GONE = "The user of this token no longer exists."


def token_error(error: str, message: str) -> Response:
    """A 401 for a token that was sent and refused."""
    return error_response(
        401,
        message,
        error,
        headers={"WWW-Authenticate": www_authenticate("invalid_token", message)},
    )


def header_refused(message: str) -> Response:
    """A 401 for a request without a token in the expected form (RFC 6750 §3.1:
    the challenge then names no error)."""
    return error_response(
        401,
        message,
        "authorization_required",
        headers={"WWW-Authenticate": www_authenticate()},
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith(".") else text + "."


def register_jwt_callbacks(jwt: JWTManager) -> None:
    """Override every response loader, so no default `{"msg": ...}` survives."""
    jwt.unauthorized_loader(missing_token)
    jwt.invalid_token_loader(invalid_token)

    @jwt.expired_token_loader
    def expired_token(_header: dict, _payload: dict) -> Response:
        return token_error("token_expired", "The token has expired.")

    @jwt.revoked_token_loader
    def revoked_token(_header: dict, _payload: dict) -> Response:
        return token_error("token_revoked", REVOKED)

    @jwt.needs_fresh_token_loader
    def token_not_fresh(_header: dict, _payload: dict) -> Response:
        return not_fresh_response()

    @jwt.token_verification_failed_loader
    @jwt.user_lookup_error_loader
    def user_gone(_header: dict, _payload: dict) -> Response:
        return token_error("invalid_token", USER_GONE)

    @jwt.decode_key_loader
    def decode_key(header: dict, unverified_claims: dict) -> Any:
        # Called before the signature check, on every full decode: a token whose
        # claims are not ours is refused either way, and Flask-JWT-Extended would
        # otherwise fill some in (auth/claims.py).
        problem = claims_problem(unverified_claims)
        if problem is not None:
            raise JWTDecodeError(problem)
        return verifying_key(header)

    # New tokens: signed with the current key, which their header names.
    jwt.encode_key_loader(lambda _identity: signing_keys().current.signing_key)
    jwt.additional_headers_loader(lambda _identity: {"kid": signing_keys().current.kid})

    jwt.token_in_blocklist_loader(check_revocation)
    jwt.token_verification_loader(verify_token)


def missing_token(reason: str) -> Response:
    """No token where one is needed: 401, or 403 when a cookie came without its
    CSRF header."""
    if "CSRF" in reason:
        # A token came in a cookie without the matching X-CSRF-TOKEN header:
        # possibly another site submitting on the user's behalf.
        return error_response(
            403,
            "The X-CSRF-TOKEN header is missing or does not match the "
            "csrf_access_token (csrf_refresh_token for /refresh) cookie.",
            "csrf_failed",
        )
    if request.headers.get("Authorization", "").strip():
        return header_refused(BAD_HEADER)
    return header_refused("Missing Authorization header with a Bearer token.")


def invalid_token(reason: str) -> Response:
    """A token that cannot be decoded, or an Authorization header of another
    shape: 401."""
    if reason.startswith(BAD_HEADER_REASON):
        # `Bearer` alone, or followed by more than one word: a header of
        # another shape, like any other (no token to refuse).
        return header_refused(BAD_HEADER)
    if reason.startswith(MALFORMED_TOKEN_REASONS):
        message = "The token is malformed."
    else:
        message = INVALID_TOKEN_MESSAGES.get(reason) or (
            "The token is invalid: " + _sentence(reason)
        )
    return token_error("invalid_token", message)


def check_revocation(_header: dict, payload: dict) -> bool:
    """Whether the token is revoked (by jti, session or per-user mark; an API
    token by jti only: logging out everywhere ends sessions, not API tokens)."""
    return get_blocklist().is_token_revoked(
        payload, by_user_mark=not is_api_token(payload)
    )


def verify_token(header: dict, payload: dict) -> bool:
    """Every protected request, after the revocation check: the token's DPoP
    binding (auth/dpop.py: a proof of its key, or none for an unbound token),
    then its user."""
    check_presented_token(payload)
    return user_exists(header, payload)


def user_exists(_header: dict, payload: dict) -> bool:
    """Every protected request, after the revocation check: the token's user must
    still exist. One primary-key read of the id and admin flag; the whole user is
    loaded only by the handlers that need it (token_user())."""
    user_id = token_user_id(payload)
    g.token_subject = None if user_id is None else token_subject_of(user_id)
    if g.token_subject is None:
        return False
    if is_api_token(payload):
        note_api_token_use(payload)
    return True


def token_subject_of(user_id: int) -> TokenSubject | None:
    """The user check's row for `user_id`: from this worker's user cache when it
    read it less than USER_CHECK_CACHE_SECONDS ago, else from the database."""
    cache = user_check_cache()
    subject = cache.get(user_id) if cache is not None else None
    # An administrator's rights are read again when they would grant anything
    # (auth.decorators.has_admin_rights).
    g.token_subject_cached = subject is not None
    if subject is None:
        subject = UserModel.subject(user_id)
        if subject is not None and cache is not None:
            cache.put(user_id, subject)
    return subject


def token_user_id(claims: dict) -> int | None:
    """The user id a token's `sub` names, or None when it names none."""
    try:
        return int(claims["sub"])
    except (TypeError, ValueError):
        return None
