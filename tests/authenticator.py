"""A software WebAuthn authenticator for tests (WebAuthn Level 3,
https://www.w3.org/TR/webauthn-3/): the browser and a platform authenticator, honest
or forging. Options in as py_webauthn's `options_to_json` gives them, responses out
as a browser's `credential.toJSON()`; attestation "none", credentials discoverable,
ES256 or EdDSA keys. The overrides of `create` and `get` change what is sent and
signed, never which credential is picked; `get(counter=...)` stores no count."""

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ES256, EDDSA = -7, -8
SUPPORTED_ALGORITHMS = (ES256, EDDSA)

# The flags of authenticatorData (WebAuthn §6.1).
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40

Options = dict[str, Any]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class NotAllowedError(ValueError):
    """No held credential the ceremony may use (the browser's NotAllowedError)."""


class InvalidStateError(ValueError):
    """A credential of excludeCredentials is held (the browser's InvalidStateError)."""


class NotSupportedError(ValueError):
    """No algorithm of pubKeyCredParams is one this authenticator has."""


class SecurityError(ValueError):
    """The RP ID is neither the origin's host nor a domain above it."""


def b64url(data: bytes) -> str:
    """Base64url without padding, as WebAuthn's JSON forms carry bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of a base64url string, padded or not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _normal(text: str) -> str:
    """A base64url value as a browser re-encodes it after decoding."""
    return b64url(b64url_decode(text))


@dataclass
class Credential:
    """A credential held: its key, its RP, its user and its signature counter."""

    id: str  # base64url, as the JSON forms and py_webauthn spell it
    rp_id: str
    user_handle: bytes
    algorithm: int
    private_key: PrivateKey
    counter: int = 0

    @classmethod
    def new(cls, rp_id: str, user_handle: bytes, algorithm: int) -> "Credential":
        """A credential of a fresh key pair and a random 16-byte ID."""
        key: PrivateKey = ed25519.Ed25519PrivateKey.generate()
        if algorithm == ES256:
            key = ec.generate_private_key(ec.SECP256R1())
        return cls(b64url(secrets.token_bytes(16)), rp_id, user_handle, algorithm, key)

    @property
    def raw_id(self) -> bytes:
        """The credential ID's bytes."""
        return b64url_decode(self.id)

    def public_key(self) -> bytes:
        """The credential public key as a COSE_Key, CBOR in CTAP2's canonical order."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            x = self.private_key.public_key().public_bytes_raw()
            return cbor2.dumps({1: 1, 3: EDDSA, -1: 6, -2: x}, canonical=True)
        point = self.private_key.public_key().public_numbers()
        x, y = point.x.to_bytes(32, "big"), point.y.to_bytes(32, "big")
        return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: x, -3: y}, canonical=True)

    def sign(self, data: bytes) -> bytes:
        """An ES256 signature DER-encoded, or an EdDSA one raw (WebAuthn §6.5.5)."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def to_json(self, response: dict[str, Any]) -> dict[str, Any]:
        """The PublicKeyCredential's toJSON() around one of its responses."""
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": response,
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }


@dataclass(kw_only=True)
class SoftAuthenticator:
    """One authenticator (one device) holding any number of credentials."""

    origin: str = "http://localhost:5000"
    algorithm: int = ES256  # preferred when offered; -8 is EdDSA
    user_verified: bool = True
    user_present: bool = True
    backup_eligible: bool = False
    backed_up: bool = False  # BS without BE is allowed: no honest device sends it
    counter_step: int = 1  # 0: never counts (sign_count 0), as many passkeys do
    aaguid: bytes = bytes(16)
    credentials: list[Credential] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Refuse an algorithm it has no key for, or an AAGUID of another length."""
        if self.algorithm not in SUPPORTED_ALGORITHMS or len(self.aaguid) != 16:
            raise ValueError("algorithm must be -7 or -8, and aaguid 16 bytes")

    def create(
        self,
        options: Options,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        client_data_type: str = "webauthn.create",
    ) -> dict[str, Any]:
        """navigator.credentials.create(): its RegistrationResponseJSON."""
        sent_origin, asked_rp_id, signed_rp_id = self._rp_ids(options, origin, rp_id)
        held = {c.id for c in self.credentials if c.rp_id == asked_rp_id}
        if held & {_normal(d["id"]) for d in options.get("excludeCredentials") or []}:
            raise InvalidStateError("a credential of excludeCredentials is held")
        algorithm = self._algorithm(options.get("pubKeyCredParams") or [])
        user_handle = b64url_decode(options["user"]["id"])
        credential = Credential.new(signed_rp_id, user_handle, algorithm)
        raw_id = credential.raw_id
        auth_data = self._authenticator_data(signed_rp_id, AT, credential.counter)
        auth_data += self.aaguid + len(raw_id).to_bytes(2, "big") + raw_id
        auth_data += credential.public_key()
        attestation = {"fmt": "none", "attStmt": {}, "authData": auth_data}
        # A new discoverable credential replaces the one of its RP and user (§6.3.2).
        same = (signed_rp_id, user_handle)
        self.credentials = [
            c for c in self.credentials if (c.rp_id, c.user_handle) != same
        ]
        self.credentials.append(credential)
        challenge = _normal(options["challenge"]) if challenge is None else challenge
        client_data = _client_data(client_data_type, challenge, sent_origin)
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "transports": ["internal"],
            "publicKeyAlgorithm": algorithm,
            "attestationObject": b64url(cbor2.dumps(attestation)),
        }
        return credential.to_json(response)

    def get(
        self,
        options: Options,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        client_data_type: str = "webauthn.get",
        credential_id: str | None = None,
        counter: int | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.get(): an assertion's AuthenticationResponseJSON."""
        sent_origin, asked_rp_id, signed_rp_id = self._rp_ids(options, origin, rp_id)
        credential = self._pick(options, asked_rp_id, credential_id)
        if counter is None:
            credential.counter += self.counter_step
            counter = credential.counter
        auth_data = self._authenticator_data(signed_rp_id, 0, counter)
        challenge = _normal(options["challenge"]) if challenge is None else challenge
        client_data = _client_data(client_data_type, challenge, sent_origin)
        signature = credential.sign(auth_data + hashlib.sha256(client_data).digest())
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
            "userHandle": b64url(credential.user_handle),
        }
        return credential.to_json(response)

    def clone(self) -> "SoftAuthenticator":
        """A copy holding the same keys and counters (a cloned device)."""
        return replace(self, credentials=[replace(c) for c in self.credentials])

    def _rp_ids(
        self, options: Options, origin: str | None, rp_id: str | None
    ) -> tuple[str, str, str]:
        """Origin sent, RP ID asked (checked unless a test forges), RP ID signed."""
        sent_origin = self.origin if origin is None else origin
        host = urlsplit(sent_origin).hostname or ""
        asked = options.get("rpId") or options.get("rp", {}).get("id") or host
        # The RP ID is the origin's host or a domain above it (§5.1.3's simple case).
        if origin is None and rp_id is None and not f".{host}".endswith(f".{asked}"):
            raise SecurityError(f"RP ID {asked!r} is not a domain of {host!r}")
        return sent_origin, asked, asked if rp_id is None else rp_id

    def _algorithm(self, params: list[dict[str, Any]]) -> int:
        """Ours if offered, else the first offered we have."""
        offered = [p["alg"] for p in params if p["type"] == "public-key"]
        if not params:  # The client's defaults, ES256 and RS256 (§5.4).
            offered = [ES256]
        for algorithm in [self.algorithm, *offered]:
            if algorithm in offered and algorithm in SUPPORTED_ALGORITHMS:
                return int(algorithm)
        raise NotSupportedError(f"none of {offered} is -7 or -8")

    def _pick(self, options: Options, rp_id: str, wanted: str | None) -> Credential:
        """The first held credential of allowCredentials, else the RP's newest."""
        allowed = [_normal(d["id"]) for d in options.get("allowCredentials") or []]
        found = [c for c in reversed(self.credentials) if c.rp_id == rp_id]
        if allowed:
            found = [c for i in allowed for c in found if c.id == i]
        if wanted is not None:
            found = [c for c in self.credentials if c.id == wanted]
        if not found:
            raise NotAllowedError(f"no usable credential for {rp_id!r}")
        return found[0]

    def _authenticator_data(self, rp_id: str, flags: int, counter: int) -> bytes:
        """rpIdHash || flags || signCount, without attested credential data (§6.1)."""
        flags |= UP * self.user_present | UV * self.user_verified
        flags |= BE * self.backup_eligible | BS * self.backed_up
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + counter.to_bytes(4, "big")


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    """clientDataJSON in the member order and compact form of browsers (§5.8.1.1)."""
    members = dict(type=kind, challenge=challenge, origin=origin, crossOrigin=False)
    return json.dumps(members, separators=(",", ":"), ensure_ascii=False).encode()
