"""DPoP proofs (RFC 9449 §4): what a proof must be, checked without any state.

A proof is a JWT the client signs with a private key that never leaves it, for one
request: its header carries the public key (`jwk`), its claims the request
(`htm`, `htu`), when it was made (`iat`), a unique id (`jti`) and, with a token,
the token's hash (`ath`). `check_proof` runs every check of §4.3 that needs no
store; the `jti` (seen before?) and the server's nonce are auth/dpop.py's.

A key is named by its RFC 7638 thumbprint, the `jkt` a bound token's `cnf` claim
carries (§6.1). Keys are built once per thumbprint: the thumbprint covers exactly
the members the key is built from, so one thumbprint is one key.
"""

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cachetools import LRUCache
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWTError, get_algorithm_by_name
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_decode

from auth.keys import THUMBPRINT_MEMBERS

# §4.2: asymmetric algorithms only. Each names the key type (and curve) it signs
# with, so a key of another type or curve is refused before any verification.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}
# RFC 7517 §9.2 (and RFC 7518 §6): the members of a private (or secret) key.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 9700 §2.4 asks 2048 bits at least; beyond 8192 only costs the server.
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 8192
# A proof with an 8192-bit RSA key is under 4 KiB; anything longer is not one.
MAX_PROOF_LENGTH = 8192
# A random id of 96 bits or more is 16 base64url characters (§4.2); ours allow
# far longer ones, never unbounded ones.
MAX_JTI_LENGTH = 256
MAX_NONCE_LENGTH = 256
TYPE = "dpop+jwt"
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 §2.3: characters a percent-encoding stands for needlessly.
UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_KEY_BUILDERS: dict[str, Any] = {
    "EC": ECAlgorithm,
    "OKP": OKPAlgorithm,
    "RSA": RSAAlgorithm,
}
# Each algorithm's verifier (PyJWT's: EC signatures are r||s, RFC 7518 §3.4).
_VERIFIERS = {name: get_algorithm_by_name(name) for name in KEY_TYPES}


class InvalidProof(Exception):
    """The proof is not one this request may be served with (§4.3): the message
    says which check it failed, for the client's developer."""


@dataclass(frozen=True)
class Proof:
    """A proof that passed every check of §4.3 that needs no store."""

    jkt: str  # the key's RFC 7638 thumbprint
    jti: str
    iat: float
    nonce: str | None


@dataclass(frozen=True)
class Expected:
    """What this request's proof must say: its method and URL (as the client
    sent them), the token it comes with, the algorithms and the time window."""

    method: str
    url: str
    token: str | None
    algorithms: tuple[str, ...]
    now: float
    max_age: float
    leeway: float


def check_proof(value: str, expected: Expected) -> Proof:
    """The proof's key and claims, after §4.3's checks 2 to 9 and 11 to 12:
    a JWS with `typ` dpop+jwt, an allowed asymmetric `alg`, a public `jwk` that
    verifies the signature, and claims of this request, made within the window.

    The JWS is taken apart once here and its signature checked by PyJWT's
    algorithm (its decode would parse the whole proof a second time)."""
    header, claims, signing_input, signature = _parts(value)
    if header.get("typ") != TYPE:
        raise InvalidProof(f"The DPoP proof's typ must be '{TYPE}'.")
    if "crit" in header:
        # RFC 7515 §4.1.11: no extension is understood here.
        raise InvalidProof("The DPoP proof's header may not have crit.")
    algorithm = header.get("alg")
    if algorithm not in expected.algorithms:
        raise InvalidProof(
            "The DPoP proof's alg must be one of " + ", ".join(expected.algorithms)
        )
    jkt, key = public_key(header.get("jwk"), algorithm)
    if not _VERIFIERS[algorithm].verify(signing_input, key, signature):
        raise InvalidProof("The DPoP proof's signature is invalid.")
    return _checked_claims(claims, jkt, expected)


def _parts(value: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """A compact JWS (RFC 7515 §7.1): its header and claims, each a JSON object,
    what was signed, and the signature."""
    segments = value.split(".")
    if len(value) > MAX_PROOF_LENGTH or not value.isascii() or len(segments) != 3:
        raise InvalidProof("The DPoP proof is not a JWT.")
    header = _json_object(segments[0], "The DPoP proof is not a JWT.")
    claims = _json_object(segments[1], "The DPoP proof's claims are not a JSON object.")
    try:
        signature = base64url_decode(segments[2])
    except (ValueError, binascii.Error):
        raise InvalidProof("The DPoP proof is not a JWT.") from None
    signing_input = f"{segments[0]}.{segments[1]}".encode()
    return header, claims, signing_input, signature


def _json_object(segment: str, problem: str) -> dict[str, Any]:
    """A base64url segment holding a JSON object. RecursionError: JSON nested a
    few thousand deep, which Python's parser refuses that way."""
    try:
        value = json.loads(base64url_decode(segment))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidProof(problem) from None
    if not isinstance(value, dict):
        raise InvalidProof(problem)
    return value


def _checked_claims(claims: dict[str, Any], jkt: str, expected: Expected) -> Proof:
    jti: Any = claims.get("jti")
    nonce: Any = claims.get("nonce")
    iat: Any = claims.get("iat")
    if not _text(jti, MAX_JTI_LENGTH):
        raise InvalidProof(
            f"The DPoP proof needs a jti of 1 to {MAX_JTI_LENGTH} characters."
        )
    if claims.get("htm") != expected.method:
        raise InvalidProof(f"The DPoP proof's htm must be '{expected.method}'.")
    _check_htu(claims.get("htu"), expected.url)
    # JSON numbers only: bool is an int in Python; NaN fails every comparison.
    if type(iat) not in (int, float) or not (
        expected.now - expected.max_age - expected.leeway
        <= iat
        <= expected.now + expected.leeway
    ):
        raise InvalidProof(
            "The DPoP proof's iat must be the time it was made, at most "
            f"{int(expected.max_age)} seconds ago (and not in the future)."
        )
    if expected.token is not None and claims.get("ath") != token_hash(expected.token):
        # §4.3 check 12: the proof is for this very token.
        raise InvalidProof("The DPoP proof's ath must be the token's SHA-256 hash.")
    if nonce is not None and not _text(nonce, MAX_NONCE_LENGTH):
        raise InvalidProof("The DPoP proof's nonce must be a string.")
    return Proof(jkt, jti, float(iat), nonce)


def _text(value: Any, longest: int) -> bool:
    return type(value) is str and 0 < len(value) <= longest


def _check_htu(htu: Any, expected: str) -> None:
    """§4.3 check 9: the URL of this request, query and fragment excluded, compared
    after RFC 3986 §6.2.2 and §6.2.3 normalisation. A proof's `htu` has neither
    (§4.2): one with a query or a fragment is refused, not trimmed."""
    if type(htu) is not str or len(htu) > MAX_PROOF_LENGTH:
        raise InvalidProof("The DPoP proof needs an htu: the request's URL.")
    if "?" in htu or "#" in htu:
        raise InvalidProof("The DPoP proof's htu must have no query or fragment.")
    if normalized_url(htu) != normalized_url(expected):
        raise InvalidProof(
            f"The DPoP proof's htu must be this request's URL, {expected}"
        )


def normalized_url(url: str) -> str | None:
    """`url` as RFC 3986 §6.2.2-6.2.3 normalise it: scheme and host in lower case,
    no default port, "/" for an empty path, percent-encodings in upper case and
    none of an unreserved character, no "." or ".." segments. None when it is not
    an http(s) URL, or names a user (RFC 9110 §4.2.4: never in an http(s) URI)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname  # lower case already
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host += f":{port}"
    path = _without_dot_segments(_normalized_path(parts.path))
    return f"{scheme}://{host}{path or '/'}"


def _normalized_path(path: str) -> str:
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        code = piece[:2]
        try:
            char = chr(int(code, 16)) if len(code) == 2 else None
        except ValueError:
            char = None
        if char is None:
            out.append("%" + piece)  # not an encoding: compared as it is
        elif char in UNRESERVED:
            out.append(char + piece[2:])
        else:
            out.append("%" + code.upper() + piece[2:])
    return "".join(out)


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4: "." and ".." segments resolved, as a client resolving the
    URL would (after percent-decoding, so "%2E" is a dot too)."""
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and len(output) > 1:
                output.pop()
            if last:
                output.append("")  # "/a/." is the folder "/a/"
        else:
            output.append(segment)
    return "/".join(output)


def token_hash(token: str) -> str:
    """§4.2 `ath`: the base64url SHA-256 hash of the token's ASCII characters."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_keys: LRUCache[str, Any] = LRUCache(1024)
_keys_lock = threading.Lock()


def public_key(jwk: Any, algorithm: str) -> tuple[str, Any]:
    """The thumbprint (RFC 7638 §3) and the verifying key of a proof's `jwk`: a
    public key of the type (and curve) `algorithm` signs with (§4.3 checks 5-7)."""
    if not isinstance(jwk, Mapping):
        raise InvalidProof("The DPoP proof's header needs the public key as a jwk.")
    if PRIVATE_MEMBERS.intersection(jwk):
        raise InvalidProof("The DPoP proof's jwk must hold the public key only.")
    key_type, curve = KEY_TYPES[algorithm]
    if jwk.get("kty") != key_type or (curve and jwk.get("crv") != curve):
        wanted = f"{key_type} {curve}" if curve else key_type
        raise InvalidProof(f"The DPoP proof's alg {algorithm} needs a {wanted} key.")
    members = THUMBPRINT_MEMBERS[key_type]
    if not all(_text(jwk.get(name), MAX_PROOF_LENGTH) for name in members):
        raise InvalidProof("The DPoP proof's jwk is not a key.")
    required = {name: jwk[name] for name in members}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    jkt = b64url(hashlib.sha256(canonical.encode()).digest())
    with _keys_lock:
        key = _keys.get(jkt)
    if key is None:
        key = _built_key(required)
        with _keys_lock:
            _keys[jkt] = key
    return jkt, key


def _built_key(members: dict[str, str]) -> Any:
    """The key `members` describe (an EC point is checked to be on its curve)."""
    try:
        key = _KEY_BUILDERS[members["kty"]].from_jwk(members)
    except (PyJWTError, ValueError, TypeError, KeyError):
        raise InvalidProof("The DPoP proof's jwk is not a valid key.") from None
    if isinstance(key, rsa.RSAPublicKey) and not (
        MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS
    ):
        raise InvalidProof(
            f"The DPoP proof's RSA key must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits."
        )
    return key
