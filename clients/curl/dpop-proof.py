#!/usr/bin/env python3
"""Print a DPoP proof (RFC 9449) for one curl request.

Usage: dpop-proof.py KEYFILE METHOD URL [ACCESS_TOKEN] [NONCE]
       dpop-proof.py KEYFILE --jkt

KEYFILE holds the client's ECDSA P-256 private key (PEM, PKCS #8); it is made,
readable by you only (mode 0600), when it does not exist. The proof is signed
with it (ES256) and carries its public JWK; it names METHOD and URL (its query
and fragment left out: `htu`), the time (`iat`) and a random `jti`. With
ACCESS_TOKEN (the one sent in `Authorization: DPoP ...`; at /refresh the refresh
token) it carries the token's hash (`ath`); with NONCE, the server's latest
`DPoP-Nonce`. Pass "" as ACCESS_TOKEN for a nonce without a token (a login).
A proof is good for one request, within a minute.

    KEY=~/.config/stores-api/dpop.pem
    curl -H "DPoP: $(dpop-proof.py "$KEY" POST "$API/login")" \\
         -H 'Content-Type: application/json' -d "$CREDENTIALS" "$API/login"
    curl -H "Authorization: DPoP $ACCESS" \\
         -H "DPoP: $(dpop-proof.py "$KEY" GET "$API/me" "$ACCESS")" "$API/me"

`--jkt` prints the key's RFC 7638 thumbprint: the `cnf.jkt` of the tokens bound
to it. Needs python3 and the `cryptography` package only.

Exit status: 0 printed; 2 usage error, or a KEYFILE that is not a P-256 key.
"""

import base64
import hashlib
import json
import os
import secrets
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

USAGE = (
    "Usage: dpop-proof.py KEYFILE METHOD URL [ACCESS_TOKEN] [NONCE]\n"
    "       dpop-proof.py KEYFILE --jkt"
)
COORDINATE_BYTES = 32  # P-256 (RFC 7518 §6.2.1.2)


class UsageError(Exception):
    """Wrong arguments, or a KEYFILE this script cannot use."""


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_make_key(path: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key in `path`; a new one written there (0600) when absent."""
    try:
        with open(path, "rb") as stored:
            key = serialization.load_pem_private_key(stored.read(), password=None)
    except FileNotFoundError:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # O_EXCL: never write over a file that appeared meanwhile; 0600 from
        # the start, so the key is never readable by others, not for a moment.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise UsageError(f"{path}: {error.strerror}.") from error
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return key
    except ValueError as error:
        raise UsageError(f"{path}: not a PEM private key ({error}).") from error
    except OSError as error:  # unreadable, or not writable where it should be
        raise UsageError(f"{path}: {error.strerror}.") from error
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return key
    raise UsageError(f"{path}: not an ECDSA P-256 key.")


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public key as a JWK; its coordinates at their full 32 bytes."""
    point = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(point.x.to_bytes(COORDINATE_BYTES, "big")),
        "y": b64url(point.y.to_bytes(COORDINATE_BYTES, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 of the required members, sorted, no whitespace."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def htu_of(url: str) -> str:
    """The proof's `htu`: the request's URL without query and fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"URL must be an absolute http(s) URL, got {url!r}.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def proof(
    key: ec.EllipticCurvePrivateKey,
    method: str,
    htu: str,
    token: str = "",
    nonce: str = "",
) -> str:
    """A compact JWS (RFC 7515 §7.1) of the proof's header and claims, signed
    ES256: the signature is r and s of 32 bytes each (RFC 7518 §3.4), not DER."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(key)}
    claims = {
        "jti": secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": htu,
        "iat": int(time.time()),
    }
    if token:
        claims["ath"] = b64url(hashlib.sha256(token.encode("ascii")).digest())
    if nonce:
        claims["nonce"] = nonce
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode())
        for part in (header, claims)
    )
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    signature = b"".join(
        number.to_bytes(COORDINATE_BYTES, "big") for number in decode_dss_signature(der)
    )
    return f"{signing_input}.{b64url(signature)}"


def main(args: list[str]) -> int:
    if len(args) == 2 and args[1] == "--jkt":
        print(thumbprint(public_jwk(load_or_make_key(args[0]))))
        return 0
    if not 3 <= len(args) <= 5 or not args[1].isalpha():
        raise UsageError(USAGE)
    key_file, method, url, *rest = args
    htu = htu_of(url)  # before the key file is made: nothing made for nothing
    print(proof(load_or_make_key(key_file), method, htu, *rest))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
