"""The ceremonies' moving parts (WebAuthn §13.4.3, §5.8): challenges stored and
spent, and what a credential's JSON names (its challenge, its passkey, its user
handle), read before py_webauthn verifies it (auth/factors/passkeys.py).

A challenge is 32 random bytes; the database keeps its SHA-256 digest with its
purpose, who asked and when it expires. Taking it (the credential names it in
its clientDataJSON) spends it first, by a DELETE that one request alone wins:
a challenge serves one ceremony, once, pass or fail.
"""

import base64
import binascii
import hashlib
import json
import secrets
from datetime import timedelta

from flask import current_app
from webauthn import generate_authentication_options, options_to_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    UserVerificationRequirement,
)

from core import Unauthorized, db
from models import PasskeyModel, WebAuthnChallengeModel
from models.base import utcnow, write

REGISTER, LOGIN, STEP_UP = "register", "login", "step_up"
CHALLENGE_BYTES = 32
# What a malformed credential can make py_webauthn or its parsers raise.
MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, IndexError)


class InvalidCredential(Unauthorized):
    """An assertion that proves nothing: an unknown passkey, a bad signature, the
    wrong origin or RP, no user verification, or a cloned authenticator."""

    error = "invalid_credential"


class ChallengeExpired(Unauthorized):
    """The assertion's challenge is unknown, used, expired, or not for this."""

    error = "challenge_expired"


def new_challenge(
    purpose: str,
    *,
    user_id: int | None = None,
    family: str | None = None,
    user_handle: bytes | None = None,
) -> bytes:
    """A new random challenge for `purpose`, stored (expired ones purged)."""
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    lifetime = timedelta(seconds=current_app.config["WEBAUTHN_CHALLENGE_EXPIRES"])
    with write("The challenge could not be stored."):
        WebAuthnChallengeModel.purge_expired()
        db.session.add(
            WebAuthnChallengeModel(
                id=hashlib.sha256(challenge).hexdigest(),
                purpose=purpose,
                user_id=user_id,
                family=family,
                user_handle=user_handle,
                expires_at=utcnow() + lifetime,
            )
        )
    return challenge


def take_challenge(
    credential: dict, purpose: str
) -> tuple[bytes, WebAuthnChallengeModel | None]:
    """The challenge the credential's clientDataJSON names, and its stored
    record if it was live and for `purpose`, now spent (None otherwise)."""
    challenge = named_challenge(credential)
    digest = hashlib.sha256(challenge).hexdigest()
    stored = WebAuthnChallengeModel.find_live(digest)
    with write("The challenge could not be spent."):
        spent = WebAuthnChallengeModel.spend(digest)
    if stored is None or not spent or stored.purpose != purpose:
        return challenge, None
    return challenge, stored


def named_challenge(credential: dict) -> bytes:
    """The challenge in the credential's clientDataJSON (§5.8.1)."""
    try:
        client_data = json.loads(decode(credential["response"]["clientDataJSON"]))
        return decode(client_data["challenge"])
    # RecursionError: JSON nested a thousand levels deep fits in the 4,096
    # characters the schema allows, and the standard parser recurses.
    except (*MALFORMED, json.JSONDecodeError, binascii.Error, RecursionError):
        raise InvalidCredential(
            "The credential's clientDataJSON is not valid."
        ) from None


def passkey_of(credential: dict) -> PasskeyModel | None:
    """The passkey whose credential id the credential's rawId is."""
    raw_id = credential.get("rawId")
    try:
        credential_id = decode(raw_id) if isinstance(raw_id, str) else None
    except (ValueError, binascii.Error):
        credential_id = None
    return PasskeyModel.find_by_credential(credential_id) if credential_id else None


def user_handle_of(credential: dict) -> bytes | None:
    """The user handle an assertion carries (§5.2.2; b"" when it is not base64url,
    which is no account's), or None when it carries none."""
    handle = credential.get("response", {}).get("userHandle")
    try:
        return decode(handle) if isinstance(handle, str) and handle else None
    except (ValueError, binascii.Error):
        return b""


def request_options(challenge: bytes, passkeys: list[PasskeyModel]) -> dict:
    """The options of navigator.credentials.get(): these passkeys (none: any
    discoverable one), user verification required."""
    options = generate_authentication_options(
        rp_id=current_app.config["WEBAUTHN_RP_ID"],
        challenge=challenge,
        timeout=timeout_ms(),
        allow_credentials=[descriptor(passkey) for passkey in passkeys],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return json.loads(options_to_json(options))


def descriptor(passkey: PasskeyModel) -> PublicKeyCredentialDescriptor:
    """A passkey as options name it: its id, and how its authenticator is reached."""
    transports = [
        AuthenticatorTransport(name)
        for name in passkey.transports.split(",")
        if name in AuthenticatorTransport._value2member_map_
    ]
    return PublicKeyCredentialDescriptor(
        id=passkey.credential_id, transports=transports or None
    )


def transports_of(credential: dict) -> list[str]:
    """The transports the browser reported, those WebAuthn names (§5.8.4)."""
    reported = credential.get("response", {}).get("transports") or []
    known = AuthenticatorTransport._value2member_map_
    return [name for name in reported if isinstance(name, str) and name in known]


def decode(value: str) -> bytes:
    """base64url, padded or not (WebAuthn's JSON leaves the padding out)."""
    if not isinstance(value, str):
        raise TypeError("not a string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def timeout_ms() -> int:
    """How long the browser may take, as options say it (the challenge's life)."""
    return current_app.config["WEBAUTHN_CHALLENGE_EXPIRES"] * 1000
