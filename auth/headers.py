"""How a token arrives: the request headers Flask-JWT-Extended reads, made sound
before it reads them (a hook before every request).

- The auth scheme is case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER`
  are `Bearer`; the library compares JWT_HEADER_TYPE exactly, and has no option
  for it. After the scheme come one or more spaces (RFC 6750 §2.1:
  `"Bearer" 1*SP b64token`), as the library already accepts.
- `DPoP <token>` (RFC 9449 §7.1) is handed on as `Bearer <token>`, so the library
  decodes the token as any other; the token is kept in the environ for the proof
  check (auth/dpop.py), which also makes the request's challenges DPoP ones. The
  scheme takes exactly one credential here: a DPoP token is never one of a list.
- A CSRF header that is not ASCII could never match the token's `csrf` (ours are
  UUIDs), and `hmac.compare_digest`, which the library compares them with, raises
  on it: it is dropped, so the request is refused as one without the header (403
  `csrf_failed`).
"""

import re

from flask import Flask, after_this_request, current_app, request

from auth.dpop import TOKEN_ENVIRON, dpop_challenges

# The scheme of each credential in the header (the library reads comma-separated
# credentials): "bearer" in any case, then whitespace, a comma or the end.
BEARER_SCHEME = re.compile(r"(^|,)(\s*)bearer(?=\s|,|$)", re.IGNORECASE)
# RFC 9449 §7.1: "DPoP" 1*SP token68, in any case.
DPOP_CREDENTIALS = re.compile(r"\s*dpop +([^\s,]+)\s*", re.IGNORECASE)
# The DPoP scheme with anything else after it (no token, two, a list).
DPOP_SCHEME = re.compile(r"\s*dpop(?:\s|,|$)", re.IGNORECASE)
TOKEN_HEADERS_EXTENSION = "token_headers"


def _environ_key(header: str) -> str:
    """The WSGI environ key of a request header (PEP 3333)."""
    return "HTTP_" + header.upper().replace("-", "_")


def init_token_headers(app: Flask) -> None:
    """Normalise the token headers of every request (after jwt.init_app, whose
    defaults name them)."""
    config = app.config
    app.extensions[TOKEN_HEADERS_EXTENSION] = (
        _environ_key(config["JWT_HEADER_NAME"]),
        {
            _environ_key(config["JWT_ACCESS_CSRF_HEADER_NAME"]),
            _environ_key(config["JWT_REFRESH_CSRF_HEADER_NAME"]),
        },
    )
    app.before_request(normalize_token_headers)


def normalize_token_headers() -> None:
    """Any case of the Bearer scheme as `Bearer`, a DPoP token as a bearer's; a
    non-ASCII CSRF header dropped."""
    authorization, csrf_headers = current_app.extensions[TOKEN_HEADERS_EXTENSION]
    environ = request.environ
    value = environ.get(authorization)
    if value and DPOP_SCHEME.match(value):
        # RFC 9449 §7.1; any other shape is refused as such, challenged as DPoP.
        after_this_request(dpop_challenges)
        dpop = DPOP_CREDENTIALS.fullmatch(value)
        if dpop is not None:
            environ[TOKEN_ENVIRON] = dpop[1]
            environ[authorization] = "Bearer " + dpop[1]
    elif value:
        environ[authorization] = BEARER_SCHEME.sub(r"\1\2Bearer", value)
    for key in csrf_headers:
        if not environ.get(key, "").isascii():
            del environ[key]
