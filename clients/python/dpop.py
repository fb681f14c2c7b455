"""DPoP (RFC 9449) for the Python client: a key pair that binds a login's tokens
and signs the proof each request carries.

    key = DpopKey()  # a new ECDSA P-256 key (ES256)
    key.thumbprint  # RFC 7638: the "jkt" the server puts in the tokens' cnf claim
    proof = key.proof("GET", "http://127.0.0.1:5000/item/3", token=access_token)
    requests.get(url, headers={"Authorization": f"DPoP {access_token}", "DPoP": proof})

A token bound to the key (``cnf.jkt``, RFC 9449 §6) is worth nothing without it:
whoever copies the token from a log or a proxy cannot sign a proof for the next
request. The private key never leaves the object; the proof carries only the
public JWK.

Depends on ``cryptography`` and ``PyJWT``.
"""

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = [
    "PROOF_TYPE",
    "DpopKey",
    "access_token_hash",
    "b64url",
    "htu_of",
    "jwk_thumbprint",
]

#: The ``typ`` of a proof's JOSE header (RFC 9449 §4.2).
PROOF_TYPE = "dpop+jwt"
# The members of a public JWK that its thumbprint hashes (RFC 7638 §3.2; OKP:
# RFC 8037 §2), by key type.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
# The curves the server accepts (its algs: ES256 ES384 EdDSA RS256 PS256), with
# the JWS algorithm and the coordinate size in bytes (RFC 7518 §6.2.1.2).
_CURVES = {"secp256r1": ("P-256", "ES256", 32), "secp384r1": ("P-384", "ES384", 48)}
_RSA_ALGORITHMS = ("RS256", "PS256")
_MIN_RSA_BITS = 2048
_JTI_BYTES = 16  # RFC 9449 §11.1: at least 96 bits of randomness


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2), as JOSE writes bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """A proof's ``ath`` (RFC 9449 §4.2): base64url of the SHA-256 of the
    token's ASCII, which ties the proof to the one token it is sent with."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def htu_of(url: str) -> str:
    """A proof's ``htu`` (RFC 9449 §4.2): the request's URL without its query
    and fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"htu must be an absolute http(s) URL, got {url!r}.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK (SHA-256, base64url): the hash of
    its required members only, in lexicographic order, without whitespace
    (§3.1-3.3), so every party computes the same one."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty", ""))
    if members is None:
        raise ValueError(f"Unsupported JWK key type {jwk.get('kty')!r}.")
    required = {name: jwk[name] for name in members}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _uint(number: int, size: int | None = None) -> str:
    """A JWK's unsigned integer (RFC 7518 §6): big-endian, base64url; ``size``
    bytes exactly for an EC coordinate, else as few as it takes."""
    length = size if size is not None else max(1, (number.bit_length() + 7) // 8)
    return b64url(number.to_bytes(length, "big"))


def _public_jwk(private_key: Any) -> tuple[dict[str, str], tuple[str, ...]]:
    """The public JWK of a private key the server accepts, and the algorithms
    that sign with it (the default first); ValueError for any other key (a
    curve it does not know, a short RSA key...)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        known = _CURVES.get(private_key.curve.name)
        if known is None:
            raise ValueError(f"Unsupported curve {private_key.curve.name}.")
        crv, alg, size = known
        point = private_key.public_key().public_numbers()
        x, y = _uint(point.x, size), _uint(point.y, size)
        return {"kty": "EC", "crv": crv, "x": x, "y": y}, (alg,)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        x = b64url(private_key.public_key().public_bytes_raw())
        return {"kty": "OKP", "crv": "Ed25519", "x": x}, ("EdDSA",)
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"An RSA key needs {_MIN_RSA_BITS} bits or more.")
        modulus = private_key.public_key().public_numbers()
        n, e = _uint(modulus.n), _uint(modulus.e)
        return {"kty": "RSA", "n": n, "e": e}, _RSA_ALGORITHMS
    raise ValueError(f"Unsupported key {type(private_key).__name__}.")


class DpopKey:
    """A DPoP key pair: the private key signs proofs, the public JWK goes in
    them, and its thumbprint is the ``jkt`` the bound tokens carry.

    ``DpopKey()`` makes a new ECDSA P-256 key (ES256, what the server names first
    in its ``algs``). ``DpopKey(private_key)`` takes one of ``cryptography``'s: an
    EC key on P-256 (ES256) or P-384 (ES384), Ed25519 (EdDSA), or RSA of 2048
    bits or more (RS256, or ``algorithm="PS256"``). Safe to share between threads.
    """

    def __init__(self, private_key: Any = None, *, algorithm: str | None = None):
        if private_key is None:
            private_key = ec.generate_private_key(ec.SECP256R1())
        jwk, algorithms = _public_jwk(private_key)
        if algorithm is not None and algorithm not in algorithms:
            fits = " or ".join(algorithms)
            raise ValueError(f"{algorithm} does not fit this key ({fits}).")
        self.algorithm = algorithm or algorithms[0]
        self._private_key = private_key
        self._public_jwk = jwk
        self.thumbprint = jwk_thumbprint(jwk)

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517): no private member, ever."""
        return dict(self._public_jwk)

    def proof(
        self,
        method: str,
        url: str,
        token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A new proof (RFC 9449 §4.2) for one request: ``method`` and ``url`` as
        sent (the query and fragment are left out of ``htu``), ``token`` the
        access or refresh token sent with it in ``Authorization: DPoP`` (its
        hash becomes ``ath``; None at a login), ``nonce`` the server's latest
        ``DPoP-Nonce`` (§8), if it gave one. Each proof has a new ``jti``: the
        server takes a proof once."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(_JTI_BYTES),
            "htm": method.upper(),
            "htu": htu_of(url),
            "iat": int(time.time()),
        }
        if token is not None:
            claims["ath"] = access_token_hash(token)
        if nonce is not None:
            claims["nonce"] = nonce
        headers = {"typ": PROOF_TYPE, "jwk": self.public_jwk}
        return jwt.encode(
            claims, self._private_key, algorithm=self.algorithm, headers=headers
        )

    def __repr__(self) -> str:
        return f"DpopKey({self.algorithm}, jkt={self.thumbprint})"
