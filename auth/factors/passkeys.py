"""Passkeys (W3C WebAuthn Level 3, verified by py_webauthn): registration, and the
assertions of a password-less login and of a step-up (no HTTP).

- Every ceremony starts with options that carry a new 32-byte random challenge
  (§13.4.3 asks for 16 at least), good for WEBAUTHN_CHALLENGE_EXPIRES (5
  minutes), for its purpose (register, login, step_up) and who asked: the
  account, and for a step-up its session. It is spent before anything else is
  checked, by one DELETE that one request alone wins (ceremonies.py): one
  ceremony, once, pass or fail, on every worker and instance (the database is
  what they all share, whatever the revocation store).
- The origin and the RP ID hash are checked (§7.1 steps 9, 13; §7.2 steps 13,
  15), and user verification is required (§6.2.3): a passkey is then two factors
  at once, a key held and a PIN or biometric at the device.
- Attestation is "none" (§8.7): the app takes the public key the browser hands
  over and asks nothing of the authenticator's make, so any passkey provider works.
- The signature counter (§6.1.1): an assertion with a valid signature whose
  counter is not above the stored one (when either is not 0) comes from a cloned
  authenticator: it is refused and audited.
- `amr` (RFC 8176 §2): "hwk" for a key bound to its device, "swk" for a synced
  passkey (backup eligible, §6.1.3: its private key leaves the device), with
  "user" (a user present and verified at the authenticator).
"""

import json
import secrets
from collections.abc import Sequence
from typing import NoReturn

from flask import current_app
from webauthn import (
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from auth.factors.ceremonies import (
    LOGIN,
    MALFORMED,
    REGISTER,
    STEP_UP,
    ChallengeExpired,
    InvalidCredential,
    descriptor,
    new_challenge,
    passkey_of,
    request_options,
    take_challenge,
    timeout_ms,
    transports_of,
    user_handle_of,
)
from core import APIError, Conflict, NotFound, audit, db
from core.telemetry import MFA_CHANGES, MFA_VERIFICATIONS
from models import PasskeyModel, UserModel
from models.base import write

ALGORITHMS = [COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.EDDSA]
USER_VERIFIED = "user"  # RFC 8176: the user was present (and verified) at the key
__all__ = ["ChallengeExpired", "InvalidCredential"]  # raised here, made there


class InvalidRegistration(APIError):
    """A new credential that cannot be registered (nothing is stored)."""

    status_code = 400
    error = "invalid_credential"


class RegistrationChallengeExpired(APIError):
    """A registration whose challenge is unknown, used, expired or another's."""

    status_code = 400
    error = "challenge_expired"


class TooManyPasskeys(Conflict):
    """The account holds WEBAUTHN_MAX_CREDENTIALS passkeys already."""

    error = "too_many_passkeys"


class NoPasskeys(Conflict):
    """A passkey step-up for an account without one."""

    error = "no_passkeys"


# --- registration -----------------------------------------------------------


def registration_options(user: UserModel) -> dict:
    """The options of navigator.credentials.create() for a new passkey of `user`
    (its other passkeys excluded: an authenticator holds one per account)."""
    passkeys = PasskeyModel.of_user(user.id)
    if len(passkeys) >= current_app.config["WEBAUTHN_MAX_CREDENTIALS"]:
        raise TooManyPasskeys(_too_many())
    # One handle per account (§14.6.1: random, not the user id), so an
    # authenticator asked again replaces its credential for the account.
    handle = passkeys[0].user_handle if passkeys else secrets.token_bytes(32)
    challenge = new_challenge(REGISTER, user_id=user.id, user_handle=handle)
    config = current_app.config
    options = generate_registration_options(
        rp_id=config["WEBAUTHN_RP_ID"],
        rp_name=config["WEBAUTHN_RP_NAME"],
        user_name=user.username,
        user_id=handle,
        user_display_name=user.username,
        challenge=challenge,
        timeout=timeout_ms(),
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[descriptor(passkey) for passkey in passkeys],
        supported_pub_key_algs=ALGORITHMS,
    )
    return json.loads(options_to_json(options))


def register(user: UserModel, name: str, credential: dict) -> PasskeyModel:
    """Verify the authenticator's answer to `registration_options` and keep its
    public key as a new passkey of `user`."""
    try:
        challenge, stored = take_challenge(credential, REGISTER)
    except InvalidCredential as error:
        # The caller is known (a 401 would say its token is not): a 400, as any
        # registration the credential makes invalid.
        raise InvalidRegistration(error.message) from None
    if stored is None or stored.user_id != user.id or stored.user_handle is None:
        raise RegistrationChallengeExpired(_EXPIRED)
    config = current_app.config
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=config["WEBAUTHN_RP_ID"],
            expected_origin=config["WEBAUTHN_ORIGINS"],
            require_user_verification=True,
            supported_pub_key_algs=ALGORITHMS,
        )
    except MALFORMED as error:
        raise InvalidRegistration(f"The credential is not valid: {error}") from None
    passkey = PasskeyModel(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        user_handle=stored.user_handle,
        sign_count=verified.sign_count,
        name=name,
        aaguid=verified.aaguid,
        transports=",".join(transports_of(credential)),
        backup_eligible=verified.credential_device_type
        == CredentialDeviceType.MULTI_DEVICE,
    )
    with write("This passkey is registered already.", "passkey_exists"):
        # One registration of the account at a time: side by side, each count
        # would miss the other's passkey and both would pass the limit.
        UserModel.lock(user.id)
        if PasskeyModel.count_of(user.id) >= config["WEBAUTHN_MAX_CREDENTIALS"]:
            raise TooManyPasskeys(_too_many())
        db.session.add(passkey)
    MFA_CHANGES.labels(action="passkey_registered").inc()
    audit("passkey_registered", "Passkey registered", user_id=str(user.id))
    return passkey


# --- login and step-up ------------------------------------------------------


def login_options(username: str | None) -> dict:
    """The options of navigator.credentials.get() for a login: any passkey of
    this site (a discoverable credential names its account), or, with a
    username, that account's passkeys (whether a name is taken, /register tells
    anyway). The challenge is then bound to the account."""
    user = UserModel.find_by_username(username) if username else None
    passkeys = PasskeyModel.of_user(user.id) if user else []
    challenge = new_challenge(LOGIN, user_id=user.id if user else None)
    return request_options(challenge, passkeys)


def passkey_login(credential: dict) -> tuple[UserModel, Sequence[str]]:
    """The account a login assertion proves, and its `amr`."""
    challenge, stored = take_challenge(credential, LOGIN)
    if stored is None:
        raise ChallengeExpired(_EXPIRED)
    passkey = passkey_of(credential)
    if passkey is None or stored.user_id not in (None, passkey.user_id):
        _refused()
    return _check_assertion(passkey, credential, challenge)


def step_up_options(user: UserModel, family: str) -> dict:
    """The options of navigator.credentials.get() for a step-up of `user` in the
    session `family`, with the account's passkeys."""
    passkeys = PasskeyModel.of_user(user.id)
    if not passkeys:
        raise NoPasskeys("This account has no passkey: step up with the password.")
    challenge = new_challenge(STEP_UP, user_id=user.id, family=family)
    return request_options(challenge, passkeys)


def passkey_step_up(user: UserModel, family: str, credential: dict) -> Sequence[str]:
    """Check a step-up assertion of `user` in the session `family`: its `amr`."""
    challenge, stored = take_challenge(credential, STEP_UP)
    if stored is None or (stored.user_id, stored.family) != (user.id, family):
        raise ChallengeExpired(_EXPIRED)
    passkey = passkey_of(credential)
    if passkey is None or passkey.user_id != user.id:
        _refused()
    return _check_assertion(passkey, credential, challenge)[1]


def _check_assertion(
    passkey: PasskeyModel, credential: dict, challenge: bytes
) -> tuple[UserModel, Sequence[str]]:
    """Verify an assertion of `passkey` (§7.2) and record its use."""
    config = current_app.config
    handle = user_handle_of(credential)
    if handle is not None and handle != passkey.user_handle:
        _refused()  # §7.2 step 6: the credential is not this account's
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=config["WEBAUTHN_RP_ID"],
            expected_origin=config["WEBAUTHN_ORIGINS"],
            credential_public_key=passkey.public_key,
            # Checked below, once the signature is known good: a regression is
            # then a clone, not a forgery.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except MALFORMED:
        _refused()
    seen, counted = passkey.sign_count, verified.new_sign_count
    if (counted or seen) and counted <= seen:
        MFA_VERIFICATIONS.labels(factor="passkey", outcome="clone").inc()
        audit(
            "passkey_clone_suspected",
            "A passkey's signature counter went backwards: refused",
            user_id=str(passkey.user_id),
            passkey_id=passkey.id,
        )
        _refused()
    with write("The passkey's use could not be recorded."):
        if not PasskeyModel.record_use(passkey.id, seen, counted):
            _refused()  # another assertion of this passkey came first
    user = UserModel.find(passkey.user_id)
    if user is None:
        _refused()
    MFA_VERIFICATIONS.labels(factor="passkey", outcome="success").inc()
    return user, amr_of(passkey)


def amr_of(passkey: PasskeyModel) -> tuple[str, str]:
    """RFC 8176 §2: a device-bound key ("hwk") or a synced one ("swk"), verified."""
    return ("swk" if passkey.backup_eligible else "hwk", USER_VERIFIED)


def credential_owner(credential: object) -> str:
    """The username of the account whose passkey a credential names ('' for any
    other value), as the failure budgets compare names (lower case)."""
    passkey = passkey_of(credential) if isinstance(credential, dict) else None
    user = UserModel.find(passkey.user_id) if passkey else None
    return user.username.lower() if user else ""


# --- the account's passkeys --------------------------------------------------


def passkeys_of(user: UserModel) -> list[PasskeyModel]:
    """The user's passkeys, oldest first."""
    return PasskeyModel.of_user(user.id)


def rename(user: UserModel, passkey_id: int, name: str) -> PasskeyModel:
    """Give one of the user's passkeys a new name."""
    passkey = _own(user, passkey_id)
    with write("The passkey could not be renamed."):
        passkey.name = name
    return passkey


def remove(user: UserModel, passkey_id: int) -> None:
    """Delete one of the user's passkeys: it logs in no more."""
    passkey = _own(user, passkey_id)
    with write("The passkey could not be deleted."):
        db.session.delete(passkey)
    MFA_CHANGES.labels(action="passkey_deleted").inc()
    audit("passkey_deleted", "Passkey deleted", user_id=str(user.id))


def _own(user: UserModel, passkey_id: int) -> PasskeyModel:
    passkey = PasskeyModel.find_for(user.id, passkey_id)
    if passkey is None:
        raise NotFound("Passkey not found.")
    return passkey


def _too_many() -> str:
    limit = current_app.config["WEBAUTHN_MAX_CREDENTIALS"]
    return f"An account holds {limit} passkeys at most: delete one first."


def _refused() -> NoReturn:
    MFA_VERIFICATIONS.labels(factor="passkey", outcome="failure").inc()
    raise InvalidCredential(
        "The passkey is unknown, or its assertion is not valid for this site."
    )


_EXPIRED = "The challenge is unknown, used or expired: ask for new options."
