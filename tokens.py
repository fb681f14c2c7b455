"""Issuing, rotating and revoking tokens (no HTTP here)."""

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from blocklist import get_blocklist
from models import UserModel


def issue_tokens(user: UserModel, *, fresh: bool) -> dict:
    """A new access token (fresh only straight after a login) and refresh token."""
    identity = str(user.id)
    # Admin rights are read from the database at every issue, never copied over.
    claims = {"is_admin": user.is_admin}
    lifetime = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(
            identity=identity, fresh=fresh, additional_claims=claims
        ),
        "refresh_token": create_refresh_token(
            identity=identity, additional_claims=claims
        ),
        "token_type": "Bearer",
        "expires_in": int(lifetime.total_seconds()),
    }


def revoke_token(claims: dict) -> None:
    """Refuse this token from now until it expires."""
    get_blocklist().revoke(claims["jti"], claims["exp"])


def rotate_refresh_token(user: UserModel, claims: dict) -> dict:
    """Trade a refresh token for a non-fresh access token and a new refresh token.

    The presented refresh token is revoked, so each one works exactly once.
    """
    revoke_token(claims)
    return issue_tokens(user, fresh=False)
