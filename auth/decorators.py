"""What views use to require a token: `token_required`, `public`, and the token's user.

`token_required` wraps Flask-JWT-Extended's `jwt_required` and documents the
answers it adds; resources must use it (ruff's TID251 bans the library's own
decorators outside this module, so the admin check and the OpenAPI document
cannot silently go missing).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g
from flask_jwt_extended import get_jwt, get_jwt_header, jwt_required
from flask_jwt_extended.exceptions import UserLookupError

from auth.callbacks import USER_GONE, token_user_id
from auth.freshness import FRESH_MAX_AGE_KEY, Freshness
from auth.freshness import check as check_freshness
from auth.freshness import require as require_freshness
from core import BEARER_OR_OAUTH2, Blueprint, Forbidden, error_response_doc
from models import UserModel
from models.user import TokenSubject


def token_subject() -> TokenSubject:
    """The id and admin flag of this request's user, as read by the token check."""
    return g.token_subject


def has_admin_rights() -> bool:
    """Whether this request's user is an administrator, as the database says now.

    The token check's row may come from the user cache, which lags the database
    by up to 2 s: a cached "administrator" is read again before it grants
    anything (a cached "not an administrator" only delays a promotion)."""
    subject = token_subject()
    if not subject.is_admin:
        return False
    if g.get("token_subject_cached"):
        current = UserModel.subject(subject.id)
        return current is not None and current.is_admin
    return True


def token_user() -> UserModel:
    """The user of this request's token, loaded on first use.

    Flask-JWT-Extended's `current_user` is not used: it would load the user on
    every protected request, and most handlers never look at it.
    """
    user = g.get("token_user")
    if user is None:
        claims = get_jwt()
        user_id = token_user_id(claims)
        user = None if user_id is None else UserModel.find(user_id)
        if user is None:  # deleted since the check at the start of the request
            raise UserLookupError(USER_GONE, get_jwt_header(), claims)
        g.token_user = user
    return user


def token_username() -> str:
    """The username of this request's user, as the failure budgets compare it."""
    return token_user().username.strip().lower()


def token_required(
    *, fresh: bool | Freshness = False, refresh: bool = False, admin: bool = False
) -> Callable:
    """Require a token (and optionally freshness or admin), and document it.

    Wraps Flask-JWT-Extended's `jwt_required` and records the bearer security
    requirement and the 401/403/503 answers in the OpenAPI document. `fresh` is
    the route's freshness (`True`: `Freshness.DEFAULT`): a fresh access token
    whose user authenticated within its max age (auth/freshness.py), stated in
    the operation as `x-fresh-max-age`.
    """
    freshness = Freshness.DEFAULT if fresh is True else (fresh or None)
    document = _documented(freshness, refresh=refresh, admin=admin)

    def decorator(func: Callable) -> Callable:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if freshness is not None:
                check_freshness(get_jwt())
            if admin and not has_admin_rights():
                raise Forbidden("Administrator rights are required.")
            return func(*args, **kwargs)

        verified = jwt_required(fresh=freshness is not None, refresh=refresh)(wrapper)

        @wraps(verified)
        def protected(*args: Any, **kwargs: Any) -> Any:
            if freshness is not None:
                # Read by the callback of a token that is not fresh at all.
                require_freshness(freshness)
            return verified(*args, **kwargs)

        return document(protected)

    return decorator


def _documented(freshness: Freshness | None, *, refresh: bool, admin: bool) -> Callable:
    """The OpenAPI document of a protected operation: the bearer requirement, its
    401/403/503 answers and (fresh-only) its max age as `x-fresh-max-age`."""
    if freshness is not None:
        needs = (
            "a fresh access token (from /login or /reauthenticate) whose user "
            f"authenticated at most {freshness.value} seconds ago (x-fresh-max-age); "
            "else `fresh_token_required` with an RFC 9470 challenge"
        )
    elif refresh:
        needs = "a refresh token"
    else:
        needs = "an access token"
    responses: dict[str, Any] = {
        "401": error_response_doc(
            f"Needs {needs}: see `error` for why it was refused."
        ),
        "503": error_response_doc(
            "The revocation store or the database is unavailable; retry later "
            "(a token is never accepted unchecked)."
        ),
    }
    if admin:
        responses["403"] = error_response_doc("Administrator rights are required.")
    # Resolved to the configured seconds in the served document (core/pages).
    extensions = (
        {} if freshness is None else {FRESH_MAX_AGE_KEY: {"setting": freshness.value}}
    )
    return Blueprint.doc(security=BEARER_OR_OAUTH2, responses=responses, **extensions)


def public(func: Callable) -> Callable:
    """Mark an operation as needing no token in the OpenAPI document."""
    return Blueprint.doc(security=[])(func)


def require_self_or_admin(user_id: int) -> None:
    """Only the user themself or an administrator may act on `user_id`.

    Administrator rights are the database's, read by this request's token check
    (not the token's `is_admin` claim: an API token lives for months)."""
    if token_subject().id != user_id and not has_admin_rights():
        raise Forbidden("You may only act on your own account.")
