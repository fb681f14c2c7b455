"""Signing keys: the one that signs new tokens, the older ones that still verify,
and the public half of each as a JWK Set (RFC 7517).

Every token's header names its key (`kid`). A token is verified with the key its
`kid` names and with that key's own algorithm only, so no token can pick the
algorithm it is checked with (RFC 8725 §2.1, §3.1): an HS256 token "signed" with
a public key, `alg: none`, an unknown `kid` or none at all are all refused.

- HS256 (the default): `JWT_SECRET_KEY` signs, `JWT_SECRET_KEY_FALLBACKS` verify.
  A secret's `kid` is an HMAC of a fixed label under the secret: it names the
  secret without revealing anything of it.
- EdDSA (Ed25519), ES256 (P-256) or RS256 (RSA, 2048 bits or more):
  `JWT_PRIVATE_KEY_FILE` signs, `JWT_PUBLIC_KEY_FALLBACK_FILES` verify (PEM,
  public or private). An asymmetric key's `kid` is its RFC 7638 thumbprint.

Rotation: make the new key current and keep the old one as a fallback; tokens of
the old key keep working (a refresh re-signs with the new one) until the
fallback is dropped. The ring is built once per app, at start-up: changing keys
is a restart, which also empties the verified-claims cache.
"""

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask, current_app
from flask_jwt_extended.exceptions import JWTDecodeError
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from core import SIGNING_ALGORITHMS, ConfigError

SYMMETRIC = "HS256"
NO_KID = "The token names no signing key (kid)."
UNKNOWN_KID = "The token is signed with a key this API does not hold."
WRONG_ALGORITHM = "The token is signed with an algorithm this API does not accept."
MIN_RSA_BITS = 2048
KID_LABEL = b"stores-api signing key id"
EXTENSION = "signing_keys"

# RFC 7638 §3.2: the members a thumbprint covers, per key type.
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
THUMBPRINT_MEMBERS["OKP"] = ("crv", "kty", "x")  # RFC 8037 §2


@dataclass(frozen=True)
class SigningKey:
    """One key: its id, its algorithm, and what signs and verifies with it."""

    kid: str
    algorithm: str
    verifying_key: Any = field(repr=False)  # the secret, or the public key
    signing_key: Any = field(default=None, repr=False)  # None: verifies only

    def public_jwk(self) -> dict[str, Any] | None:
        """The key's public half as an RFC 7517 JWK; None for a secret."""
        if self.algorithm == SYMMETRIC:
            return None
        return {
            **_public_members(self.verifying_key),
            "kid": self.kid,
            "alg": self.algorithm,
            "use": "sig",
        }


class KeyRing:
    """The current key and the fallbacks, by `kid`."""

    def __init__(self, current: SigningKey, fallbacks: Sequence[SigningKey]) -> None:
        self.current = current
        self._by_kid: dict[str, SigningKey] = {}
        for key in (current, *fallbacks):
            # The same key given twice (current and fallback) is one key.
            self._by_kid.setdefault(key.kid, key)
        # The ring never changes: its public half is computed once.
        public = (key.public_jwk() for key in self._by_kid.values())
        self._public = [jwk for jwk in public if jwk is not None]

    def keys(self) -> list[SigningKey]:
        """Every key of the ring, the current one first."""
        return list(self._by_kid.values())

    def get(self, kid: Any) -> SigningKey | None:
        """The key this `kid` names, if it is configured."""
        return self._by_kid.get(kid) if isinstance(kid, str) else None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """RFC 7517 §5: the public keys, current first; secrets are never shown."""
        return {"keys": [dict(jwk) for jwk in self._public]}


def verifying_key(header: Mapping[str, Any]) -> Any:
    """The key that verifies a token with this (unverified) header: the one its
    `kid` names, for that key's own algorithm only (RFC 8725 §3.1)."""
    if header.get("alg") not in SIGNING_ALGORITHMS:  # "none", HS512, ...
        raise JWTDecodeError(WRONG_ALGORITHM)
    kid = header.get("kid")
    if kid is None:
        raise JWTDecodeError(NO_KID)
    key = signing_keys().get(kid)
    if key is None:
        raise JWTDecodeError(UNKNOWN_KID)
    if header.get("alg") != key.algorithm:
        raise JWTDecodeError(WRONG_ALGORITHM)
    return key.verifying_key


def init_signing_keys(app: Flask) -> None:
    """Build the app's key ring from its settings (ConfigError when a key is bad)."""
    app.extensions[EXTENSION] = load_key_ring(app.config)


def signing_keys() -> KeyRing:
    """The current app's key ring."""
    return current_app.extensions[EXTENSION]


def load_key_ring(config: Mapping[str, Any]) -> KeyRing:
    """The key ring the settings describe; every failure names its setting."""
    algorithm = config["JWT_ALGORITHM"]
    fallbacks = [
        secret_key(secret, "JWT_SECRET_KEY_FALLBACKS")
        for secret in config["JWT_SECRET_KEY_FALLBACKS"]
    ]
    if algorithm == SYMMETRIC:
        current = secret_key(config["JWT_SECRET_KEY"], "JWT_SECRET_KEY", signs=True)
    else:  # the settings made sure there is a file (core/settings.py)
        current = private_key_file(config["JWT_PRIVATE_KEY_FILE"], algorithm)
    fallbacks += [
        key_file(path, "JWT_PUBLIC_KEY_FALLBACK_FILES")
        for path in config["JWT_PUBLIC_KEY_FALLBACK_FILES"]
    ]
    return KeyRing(current, fallbacks)


def secret_key(secret: str | bytes, setting: str, *, signs: bool = False) -> SigningKey:
    """An HS256 secret; its `kid` is an HMAC under it (reveals nothing of it)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    if not raw:
        raise ConfigError(f"{setting}: a secret must not be empty.")
    digest = hmac.new(raw, KID_LABEL, hashlib.sha256).digest()
    return SigningKey("hs-" + _b64(digest[:16]), SYMMETRIC, raw, raw if signs else None)


def private_key_file(path: str, algorithm: str) -> SigningKey:
    """The signing key in a PEM file: a private key of `algorithm`."""
    setting = "JWT_PRIVATE_KEY_FILE"
    key = _load_pem(path, setting, private_only=True)
    found = _algorithm_of(key, path, setting)
    if found != algorithm:
        raise ConfigError(
            f"{setting}: {path} holds a key for {found}, not for JWT_ALGORITHM "
            f"{algorithm}."
        )
    public = key.public_key()
    return SigningKey(thumbprint(public), algorithm, public, key)


def key_file(path: str, setting: str) -> SigningKey:
    """A verifying key in a PEM file, public or private (its public half is used)."""
    key = _load_pem(path, setting, private_only=False)
    algorithm = _algorithm_of(key, path, setting)
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return SigningKey(thumbprint(public), algorithm, public)


def thumbprint(public_key: Any) -> str:
    """RFC 7638 §3: SHA-256 of the key's required members, sorted, no spaces."""
    members = _public_members(public_key)
    required = {name: members[name] for name in THUMBPRINT_MEMBERS[members["kty"]]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


GENERATORS = {
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
}


def generate_private_key(algorithm: str) -> Any:
    """A new private key for an asymmetric algorithm (RSA: 3072 bits)."""
    return GENERATORS[algorithm]()


def write_private_key(key: Any, path: str) -> None:
    """Write a private key as unencrypted PKCS#8 PEM, readable by its owner only;
    never over an existing file."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def _public_members(public_key: Any) -> dict[str, Any]:
    """The public members of a key's JWK (RFC 7518 §6, RFC 8037 §2)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}


def _load_pem(path: str, setting: str, *, private_only: bool) -> Any:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}.") from exc
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted: there is no way to ask for a password
        raise ConfigError(
            f"{setting}: {path} is encrypted; give it unencrypted "
            "(and readable by the app only)."
        ) from exc
    except ValueError:
        if private_only:
            raise ConfigError(
                f"{setting}: {path} is not a PEM private key (PKCS#8)."
            ) from None
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"{setting}: {path} is not a PEM key.") from None


def _algorithm_of(key: Any, path: str, setting: str) -> str:
    """The one algorithm a key may sign with here."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise ConfigError(f"{setting}: {path} is on {key.curve.name}; ES256 is P-256.")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{setting}: {path} is a {key.key_size}-bit RSA key; RS256 needs "
                f"at least {MIN_RSA_BITS} bits."
            )
        return "RS256"
    raise ConfigError(
        f"{setting}: {path} is neither an Ed25519, a P-256 nor an RSA key."
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
