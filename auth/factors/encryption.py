"""TOTP secrets at rest: encrypted with a key from the settings, which can rotate.

A sealed secret is "<key id>:<Fernet token>" (cryptography's Fernet: AES-128-CBC
with HMAC-SHA256, authenticated). `MFA_ENCRYPTION_KEY` seals; it and the keys in
`MFA_ENCRYPTION_KEY_FALLBACKS` open, each secret with the key its id names. To
rotate: make the new key current, move the old one to the fallbacks, run
`flask mfa reseal` (every secret sealed again with the current key), then drop
the old key. The id is a digest of the key, so it names a key without revealing
it. The keys live in the app (`app.extensions`), so two apps never share them.
"""

import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from flask import Flask, current_app

EXTENSION = "mfa_keyring"


class SealedSecretError(RuntimeError):
    """A sealed secret names a key the app does not have, or does not open."""


@dataclass(frozen=True)
class Keyring:
    """The current key's id, and every key by its id."""

    current: str
    keys: dict[str, Fernet]


def key_id(key: str) -> str:
    """A short, stable name for a key (not the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def init_secret_keys(app: Flask) -> None:
    """The app's keys, from its settings (validated at start-up)."""
    keys = [
        app.config["MFA_ENCRYPTION_KEY"],
        *app.config["MFA_ENCRYPTION_KEY_FALLBACKS"],
    ]
    app.extensions[EXTENSION] = Keyring(
        key_id(keys[0]), {key_id(key): Fernet(key.encode()) for key in keys}
    )


def _keyring() -> Keyring:
    return current_app.extensions[EXTENSION]


def seal(secret: str) -> str:
    """`secret` encrypted with the current key, behind that key's id."""
    keyring = _keyring()
    token = keyring.keys[keyring.current].encrypt(secret.encode()).decode()
    return f"{keyring.current}:{token}"


def unseal(sealed: str) -> str:
    """The secret inside `sealed`."""
    kid, _, token = sealed.partition(":")
    fernet = _keyring().keys.get(kid)
    if fernet is None:
        raise SealedSecretError(
            f"A TOTP secret is sealed with key {kid}, which is neither "
            "MFA_ENCRYPTION_KEY nor one of MFA_ENCRYPTION_KEY_FALLBACKS."
        )
    try:
        return fernet.decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise SealedSecretError(
            f"A TOTP secret sealed with key {kid} does not open."
        ) from error


def sealed_with_current_key(sealed: str) -> bool:
    """Whether `sealed` is sealed with the current key."""
    return sealed.startswith(_keyring().current + ":")
