"""How token answers reach the client: in the body, or as HttpOnly cookies."""

from flask import Response, after_this_request, current_app
from flask_jwt_extended import (
    get_jwt_request_location,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
)
from flask_smorest import abort

# RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_answer(tokens: dict, *, as_cookies: bool) -> tuple[dict, int, dict]:
    """The token answer: in the body, or (cookie mode) as HttpOnly cookies only."""
    if as_cookies:
        if not current_app.config["AUTH_COOKIES_ENABLED"]:
            abort(
                422,
                message="Cookie delivery is switched off on this server.",
                errors={"json": {"token_delivery": ["Cookie delivery is disabled."]}},
            )
        access, refresh = tokens.pop("access_token"), tokens.pop("refresh_token")

        @after_this_request
        def set_cookies(response: Response) -> Response:
            set_access_cookies(response, access)
            set_refresh_cookies(response, refresh)
            return response

    return tokens, 200, NO_STORE


def sent_in_cookies() -> bool:
    """Whether this request's token came in a cookie (then answer in cookies)."""
    return get_jwt_request_location() == "cookies"


def clear_token_cookies() -> None:
    """Expire the token and CSRF cookies (cookie mode's logout)."""
    if current_app.config["AUTH_COOKIES_ENABLED"]:

        @after_this_request
        def unset(response: Response) -> Response:
            unset_jwt_cookies(response)
            return response
