"""DPoP nonces (RFC 9449 §8): values the server hands out for proofs to carry, so a
proof cannot be made ahead of time for later use."""

import hmac
import time

from auth.proofs import b64url


class Nonces:
    """§8 nonces, made and checked without a store, by every worker and instance
    alike: a time window's number and its HMAC under a key derived from the
    signing key (which every instance holds). A nonce is good in its window and
    the next one, so it rotates every `lifetime` seconds and lives at most two."""

    LABEL = b"stores-api dpop nonce"

    def __init__(self, secret: bytes, lifetime: int) -> None:
        self._key = hmac.digest(secret, self.LABEL, "sha256")
        self._lifetime = lifetime

    def _window(self) -> int:
        return int(time.time() // self._lifetime)

    def _nonce(self, window: int) -> str:
        number = window.to_bytes(8, "big")
        return b64url(number + hmac.digest(self._key, number, "sha256")[:16])

    def current(self) -> str:
        return self._nonce(self._window())

    def check(self, nonce: str | None) -> bool | None:
        """True for the current nonce, False for the previous window's (good; a
        new one is due), None for anything else."""
        if nonce is None:
            return None
        window = self._window()
        for candidate, current in ((window, True), (window - 1, False)):
            if hmac.compare_digest(nonce.encode(), self._nonce(candidate).encode()):
                return current
        return None
