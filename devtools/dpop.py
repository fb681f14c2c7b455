"""DPoP proofs as a client makes them (RFC 9449 §4.2), and as an attacker bends
them: every member of the header and the claims can be changed or dropped.

Proofs are signed with PyJWT and keys made by `cryptography`, apart from the
server's own code (auth/proofs.py), so the server is never checked against
itself. The tests (tests/dpop.py) and the benchmark (bench/dpop.py) make their
proofs here.
"""

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

DROP = object()  # an override that removes the member

_KEYS = {
    "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "ES384": (lambda: ec.generate_private_key(ec.SECP384R1()), ECAlgorithm),
    "EdDSA": (ed25519.Ed25519PrivateKey.generate, OKPAlgorithm),
    "RS256": (lambda: rsa.generate_private_key(65537, 2048), RSAAlgorithm),
    "PS256": (lambda: rsa.generate_private_key(65537, 2048), RSAAlgorithm),
}
ALGORITHMS = tuple(_KEYS)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ath(token: str) -> str:
    """§4.2: the token's SHA-256, base64url."""
    return b64url(hashlib.sha256(token.encode()).digest())


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3 (written here again, apart from the server's)."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    names = members.get(jwk["kty"], ("e", "kty", "n"))
    canonical = json.dumps({n: jwk[n] for n in names}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in overrides.items():
        if value is DROP:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


class ProofKey:
    """A client's DPoP key pair, and the proofs it signs."""

    def __init__(self, algorithm: str = "ES256", private_key: Any = None) -> None:
        make, family = _KEYS[algorithm]
        self.algorithm = algorithm
        self.private_key = private_key or make()
        self.jwk = family.to_jwk(self.private_key.public_key(), as_dict=True)
        self.jkt = thumbprint(self.jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A proof for `method` at the absolute `url` (its `htu`), with `ath` of
        `token`; `header` and `claims` override or DROP members."""
        payload = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if token is not None:
            payload["ath"] = ath(token)
        if nonce is not None:
            payload["nonce"] = nonce
        payload = _apply(payload, claims)
        fields = _apply({"typ": "dpop+jwt", "jwk": self.jwk}, header or {})
        return jwt.encode(
            payload, self.private_key, algorithm=self.algorithm, headers=fields
        )

    def headers(
        self, method: str, url: str, token: str | None = None, **kwargs: Any
    ) -> dict[str, str]:
        """The request headers of a bound request at `url` (as `proof` takes it):
        `Authorization: DPoP` (with a token) and the proof."""
        proof = {"DPoP": self.proof(method, url, token=token, **kwargs)}
        return proof if token is None else {"Authorization": f"DPoP {token}", **proof}
