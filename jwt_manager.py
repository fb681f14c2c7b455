"""Flask-JWT-Extended's manager, remembering the tokens it has already verified.

Verifying a token costs several base64 and JSON decodes and an HMAC, and a client
sends the same access token many times in a row. The cache keeps only what a full
verification established (the header and the claims), keyed by the exact token
string, per app. Expiry is compared on every use (an expired entry goes back
through the full check, which refuses it), and everything after decoding still
runs on every request: the token type, freshness, the revocation check, the user
check.
"""

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

import flask_jwt_extended.view_decorators
import jwt
from flask import Flask, current_app, has_app_context
from flask_jwt_extended import JWTManager

from config import decode_leeway_seconds

CACHE_EXTENSION = "verified_token_claims"


class VerifiedToken(NamedTuple):
    header: dict
    claims: dict


class VerifiedClaimsCache:
    """A small thread-safe LRU map: token string -> its verified header and claims."""

    def __init__(self, size: int, leeway: float) -> None:
        self._size = size
        self._leeway = leeway
        self._entries: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> VerifiedToken | None:
        """A verified token that has not expired yet (copies), or None."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if entry.claims["exp"] + self._leeway <= time.time():
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
        return VerifiedToken(dict(entry.header), dict(entry.claims))

    def put(self, token: str, header: dict, claims: dict) -> None:
        """Remember a token after a full verification."""
        with self._lock:
            self._entries[token] = VerifiedToken(dict(header), dict(claims))
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def _cache() -> VerifiedClaimsCache | None:
    return current_app.extensions.get(CACHE_EXTENSION) if has_app_context() else None


class CachingJWTManager(JWTManager):
    """JWTManager whose decoding step skips tokens verified a moment ago."""

    def init_app(self, app: Flask, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        size = app.config["JWT_VERIFIED_CLAIMS_CACHE_SIZE"]
        app.extensions[CACHE_EXTENSION] = (
            VerifiedClaimsCache(size, decode_leeway_seconds(app.config))
            if size
            else None
        )

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value=None, allow_expired: bool = False
    ) -> dict:
        cache = _cache()
        # Cookie tokens (CSRF comparison) and lenient decodes take the full path.
        if cache is None or csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(
                encoded_token, csrf_value, allow_expired
            )
        entry = cache.get(encoded_token)
        if entry is not None:
            return entry.claims
        claims = super()._decode_jwt_from_config(encoded_token)
        cache.put(encoded_token, jwt.get_unverified_header(encoded_token), claims)
        return claims


_read_header = flask_jwt_extended.view_decorators.get_unverified_jwt_headers


def _header_of_verified_token(encoded_token: str) -> dict:
    """The token's header, from the cache when the token was just verified.

    Flask-JWT-Extended reads the header of every token once more after decoding it
    (`view_decorators._decode_jwt_from_request`), and PyJWT checks every character
    of the whole token to do so: about 65 us a request, for a header the cache
    already holds. Any token the cache does not hold takes the library's path.
    """
    cache = _cache()
    entry = None if cache is None else cache.get(encoded_token)
    return _read_header(encoded_token) if entry is None else entry.header


# The one name Flask-JWT-Extended's request decoding looks the header up by; tested
# in tests/test_token_cache.py, so an upgrade that renames it fails loudly there.
flask_jwt_extended.view_decorators.get_unverified_jwt_headers = (
    _header_of_verified_token
)
