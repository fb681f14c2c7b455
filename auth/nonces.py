"""DPoP nonces (RFC 9449 §8): values the server hands out for proofs to carry, so a
proof cannot be made ahead of time for later use."""

import hmac
import time
from collections.abc import Sequence

from auth.proofs import b64url


class Nonces:
    """§8 nonces, made and checked without a store, by every worker and instance
    alike: a time window's number and its HMAC under a key derived from the
    signing key (which every instance holds). A nonce is good in its window and
    the next one, so it rotates every `lifetime` seconds and lives at most two.
    Nonces are made under the first key and accepted under any: during a
    signing-key rotation, instances on either side accept each other's."""

    LABEL = b"stores-api dpop nonce"

    def __init__(self, secrets: Sequence[bytes], lifetime: int) -> None:
        self._keys = [hmac.digest(secret, self.LABEL, "sha256") for secret in secrets]
        self._lifetime = lifetime

    def _window(self) -> int:
        return int(time.time() // self._lifetime)

    def _nonce(self, window: int, key: bytes) -> str:
        number = window.to_bytes(8, "big")
        return b64url(number + hmac.digest(key, number, "sha256")[:16])

    def current(self) -> str:
        return self._nonce(self._window(), self._keys[0])

    def check(self, nonce: str | None) -> bool | None:
        """True for the current nonce, False for another good one (the previous
        window's, or another key's: the current one is due), None for anything
        else."""
        if nonce is None:
            return None
        window = self._window()
        given = nonce.encode()
        for index, key in enumerate(self._keys):
            for candidate in (window, window - 1):
                if hmac.compare_digest(given, self._nonce(candidate, key).encode()):
                    return index == 0 and candidate == window
        return None
