"""Flask-JWT-Extended's manager, remembering the tokens it has already verified.

Verifying a token costs two JSON decodes and an HMAC, and a client sends the same
access token many times in a row. The cache keeps only what a full verification
established (the claims), keyed by the exact token string, per app. Expiry is
compared on every use (an expired entry goes back through the full check, which
refuses it), and everything after decoding still runs on every request: the token
type, freshness, the revocation check, the user checks.
"""

import threading
import time
from collections import OrderedDict

from flask import Flask, current_app
from flask_jwt_extended import JWTManager

from config import decode_leeway_seconds

CACHE_EXTENSION = "verified_token_claims"


class VerifiedClaimsCache:
    """A small thread-safe LRU map: token string -> verified claims."""

    def __init__(self, size: int, leeway: float) -> None:
        self._size = size
        self._leeway = leeway
        self._entries: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> dict | None:
        """The claims of a verified token that has not expired yet, or None."""
        with self._lock:
            claims = self._entries.get(token)
            if claims is None:
                return None
            if claims["exp"] + self._leeway <= time.time():
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
        return dict(claims)

    def put(self, token: str, claims: dict) -> None:
        """Remember a token's claims after a full verification."""
        with self._lock:
            self._entries[token] = dict(claims)
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


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
        cache = current_app.extensions.get(CACHE_EXTENSION)
        # Cookie tokens (CSRF comparison) and lenient decodes take the full path.
        if cache is None or csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(
                encoded_token, csrf_value, allow_expired
            )
        claims = cache.get(encoded_token)
        if claims is None:
            claims = super()._decode_jwt_from_config(encoded_token)
            cache.put(encoded_token, claims)
        return claims
