"""How token answers reach the client: in the body, or as HttpOnly cookies.

The cookies are set here rather than by Flask-JWT-Extended's set_*_cookies and
unset_jwt_cookies, which take their paths from the settings alone: under a path
prefix (a proxy's X-Forwarded-Prefix, or SCRIPT_NAME) each cookie's path is the
mount path plus its configured one, so the refresh cookie still goes to /refresh
only. Every other attribute is the library's reading of the same settings.
"""

from flask import Response, after_this_request, current_app, request
from flask_jwt_extended import get_csrf_token, get_jwt_request_location
from flask_jwt_extended.config import config as jwt_config
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
            _token_cookies(response, access, refresh)
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
            _token_cookies(response, None, None)
            return response


def _token_cookies(response: Response, access: str | None, refresh: str | None) -> None:
    """Set both token cookies and their CSRF cookies, or (None) expire them."""
    config = jwt_config  # the library's reading of the JWT_* cookie settings
    csrf = config.cookie_csrf_protect and config.csrf_in_cookies
    for token, name, path, csrf_name, csrf_path in (
        (
            access,
            config.access_cookie_name,
            config.access_cookie_path,
            config.access_csrf_cookie_name,
            config.access_csrf_cookie_path,
        ),
        (
            refresh,
            config.refresh_cookie_name,
            config.refresh_cookie_path,
            config.refresh_csrf_cookie_name,
            config.refresh_csrf_cookie_path,
        ),
    ):
        _cookie(response, name, token, path, httponly=True)
        if csrf:
            # Not HttpOnly: page JavaScript reads it to send it back in a header.
            value = None if token is None else get_csrf_token(token)
            _cookie(response, csrf_name, value, csrf_path, httponly=False)


def _cookie(
    response: Response, name: str, value: str | None, path: str, *, httponly: bool
) -> None:
    """One cookie at `path` under this request's mount path; None expires it."""
    response.set_cookie(
        name,
        value=value or "",
        max_age=None if value is None else jwt_config.cookie_max_age,
        expires=0 if value is None else None,
        secure=jwt_config.cookie_secure,
        httponly=httponly,
        domain=jwt_config.cookie_domain,
        path=request.script_root + path,
        samesite=jwt_config.cookie_samesite,
    )
