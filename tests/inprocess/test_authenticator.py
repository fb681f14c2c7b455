"""The software authenticator (tests/authenticator.py) against py_webauthn itself:
honest ceremonies verify, and each forgery is refused for its own reason."""

import json
from dataclasses import replace
from typing import Any

import cbor2
import pytest
import webauthn
from webauthn.helpers import decode_credential_public_key, structs
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import AttestationFormat, CredentialDeviceType
from webauthn.registration.verify_registration_response import VerifiedRegistration

from tests import authenticator as soft
from tests.authenticator import EDDSA, ES256, SoftAuthenticator, b64url, b64url_decode

RP_ID = "localhost"
ORIGIN = "http://localhost:5000"
ALICE, BOB = b"alice-handle", b"bob-handle"
REQUIRED = structs.UserVerificationRequirement.REQUIRED
UV_REQUIRED = structs.AuthenticatorSelectionCriteria(user_verification=REQUIRED)
EVIL = "http://evil.example"
# In either ceremony: device settings, what is forged, a word of py_webauthn's refusal.
FORGERIES = [
    ({}, {"origin": EVIL}, f'Unexpected client data origin "{EVIL}"'),
    ({}, {"rp_id": "evil.example"}, "Unexpected RP ID hash"),
    ({}, {"challenge": b64url(b"another challenge")}, "challenge was not expected"),
    ({"user_verified": False}, {}, "User verification is required"),
]
Json = dict[str, Any]
Registered = VerifiedRegistration
Descriptor = structs.PublicKeyCredentialDescriptor


def registration_options(user: bytes = ALICE, *excluded: bytes) -> tuple[Json, bytes]:
    """Creation options as the server sends them, and their challenge."""
    options = webauthn.generate_registration_options(
        rp_id=RP_ID,
        rp_name="Items",
        user_name=user.decode(),
        user_id=user,
        authenticator_selection=UV_REQUIRED,
        exclude_credentials=[Descriptor(id=i) for i in excluded],
    )
    return json.loads(webauthn.options_to_json(options)), options.challenge


def authentication_options(*allowed: bytes) -> tuple[Json, bytes]:
    """Request options (no allowed credential: discoverable) and their challenge."""
    options = webauthn.generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=[Descriptor(id=i) for i in allowed],
        user_verification=REQUIRED,
    )
    return json.loads(webauthn.options_to_json(options)), options.challenge


def verify_registration(response: Json, challenge: bytes) -> Registered:
    """Verify a registration as the server will (user verification required)."""
    return webauthn.verify_registration_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
    )


def register(device: SoftAuthenticator, user: bytes = ALICE) -> Registered:
    """A fresh registration, verified."""
    options, challenge = registration_options(user)
    return verify_registration(device.create(options), challenge)


def authenticate(
    response: Json, challenge: bytes, registered: Registered, count: int
) -> int:
    """Verify an assertion as the server will: the new sign count."""
    verified = webauthn.verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=count,
        require_user_verification=True,
    )
    assert verified.credential_id == registered.credential_id
    return verified.new_sign_count


def sign_in(device: SoftAuthenticator, registered: Registered, count: int) -> int:
    """A fresh discoverable challenge, answered and verified: the new sign count."""
    options, challenge = authentication_options()
    return authenticate(device.get(options), challenge, registered, count)


@pytest.mark.parametrize("algorithm", [ES256, EDDSA])
def test_registration_verifies(algorithm: int) -> None:
    authenticator = SoftAuthenticator(algorithm=algorithm)
    options, challenge = registration_options()
    response = authenticator.create(options)
    registered = verify_registration(response, challenge)
    [credential] = authenticator.credentials
    assert (credential.rp_id, credential.user_handle) == (RP_ID, ALICE)
    assert (credential.algorithm, credential.counter) == (algorithm, 0)
    assert registered.credential_id == credential.raw_id
    assert len(credential.raw_id) == 16
    public_key = decode_credential_public_key(registered.credential_public_key)
    assert public_key.alg == algorithm
    assert (registered.sign_count, registered.fmt) == (0, AttestationFormat.NONE)
    assert registered.aaguid == "00000000-0000-0000-0000-000000000000"
    assert (registered.user_verified, registered.credential_backed_up) == (True, False)
    assert registered.credential_device_type == CredentialDeviceType.SINGLE_DEVICE
    assert response["id"] == response["rawId"] == b64url(credential.raw_id)
    assert response["type"] == "public-key"
    assert response["authenticatorAttachment"] == "platform"
    assert response["clientExtensionResults"] == {}
    body = response["response"]
    assert body["transports"] == ["internal"]
    assert body["publicKeyAlgorithm"] == algorithm
    assert b64url_decode(body["clientDataJSON"]) == (
        b'{"type":"webauthn.create","challenge":"%s","origin":"http://localhost:5000",'
        b'"crossOrigin":false}' % b64url(challenge).encode()
    )
    attestation = cbor2.loads(b64url_decode(body["attestationObject"]))
    assert (attestation["fmt"], attestation["attStmt"]) == ("none", {})
    assert attestation["authData"] == b64url_decode(body["authenticatorData"])
    assert attestation["authData"][32:37] == b"\x45\0\0\0\0"  # UP|UV|AT, count 0


@pytest.mark.parametrize(
    ("preferred", "offered", "chosen"),
    [
        (ES256, [EDDSA, ES256, -257], ES256),
        (EDDSA, [EDDSA, ES256, -257], EDDSA),
        (EDDSA, [-257, ES256], ES256),
        (EDDSA, [], ES256),  # none offered: the client's defaults, ES256 and RS256
    ],
)
def test_algorithm_is_the_preferred_one_if_offered(
    preferred: int, offered: list[int], chosen: int
) -> None:
    options, challenge = registration_options()
    options["pubKeyCredParams"] = [{"type": "public-key", "alg": a} for a in offered]
    response = SoftAuthenticator(algorithm=preferred).create(options)
    public_key = verify_registration(response, challenge).credential_public_key
    assert decode_credential_public_key(public_key).alg == chosen


def test_no_algorithm_it_has_is_refused() -> None:
    options, _ = registration_options()
    options["pubKeyCredParams"] = [{"type": "public-key", "alg": -257}]
    authenticator = SoftAuthenticator()
    with pytest.raises(soft.NotSupportedError, match=r"none of \[-257\]"):
        authenticator.create(options)
    assert authenticator.credentials == []


@pytest.mark.parametrize("algorithm", [ES256, EDDSA])
def test_authentication_verifies_and_counts(algorithm: int) -> None:
    authenticator = SoftAuthenticator(algorithm=algorithm)
    registered = register(authenticator)
    options, challenge = authentication_options(registered.credential_id)
    response = authenticator.get(options)
    assert authenticate(response, challenge, registered, 0) == 1
    assert sign_in(authenticator, registered, 1) == 2
    assert authenticator.credentials[0].counter == 2
    assert response["id"] == response["rawId"] == b64url(registered.credential_id)
    assert b64url_decode(response["response"]["userHandle"]) == ALICE
    auth_data = b64url_decode(response["response"]["authenticatorData"])
    assert auth_data[32:] == b"\x05\0\0\0\1"  # UP|UV, count 1
    assert b64url_decode(response["response"]["clientDataJSON"]) == (
        b'{"type":"webauthn.get","challenge":"%s","origin":"http://localhost:5000",'
        b'"crossOrigin":false}' % b64url(challenge).encode()
    )


def test_get_picks_the_first_allowed_credential_held_else_the_newest() -> None:
    authenticator = SoftAuthenticator()
    alice = register(authenticator, ALICE)
    bob = register(authenticator, BOB)
    options, challenge = authentication_options()
    assert options["allowCredentials"] == []
    response = authenticator.get(options)
    assert b64url_decode(response["response"]["userHandle"]) == BOB
    assert authenticate(response, challenge, bob, 0) == 1

    options, challenge = authentication_options(b"unknown", alice.credential_id)
    response = authenticator.get(options)
    assert b64url_decode(response["response"]["userHandle"]) == ALICE
    assert authenticate(response, challenge, alice, 0) == 1


def test_a_new_credential_replaces_the_one_of_its_rp_and_user() -> None:
    authenticator = SoftAuthenticator()
    first = register(authenticator)
    second = register(authenticator)
    assert [c.raw_id for c in authenticator.credentials] == [second.credential_id]
    assert first.credential_id != second.credential_id


def test_no_usable_credential_is_not_allowed() -> None:
    authenticator = SoftAuthenticator()
    options, _ = authentication_options()
    with pytest.raises(soft.NotAllowedError, match="for 'localhost'"):
        authenticator.get(options)
    register(authenticator)
    options, _ = authentication_options(b"someone else's")
    with pytest.raises(soft.NotAllowedError, match="no usable credential"):
        authenticator.get(options)
    assert authenticator.credentials[0].counter == 0


def test_exclude_credentials_refuses_one_held() -> None:
    authenticator = SoftAuthenticator()
    register(authenticator)
    [held] = authenticator.credentials
    options, _ = registration_options(BOB, b"other", held.raw_id)
    with pytest.raises(soft.InvalidStateError, match="excludeCredentials"):
        authenticator.create(options)
    assert authenticator.credentials == [held]
    other_device = SoftAuthenticator()
    other_device.create(options)
    assert [c.user_handle for c in other_device.credentials] == [BOB]


def test_rp_id_not_of_the_origin_is_refused_as_a_browser_does() -> None:
    options, _ = registration_options()
    options["rp"]["id"] = "example.com"
    with pytest.raises(soft.SecurityError, match="'example.com' is not a domain of"):
        SoftAuthenticator().create(options)
    # A domain above the origin's host is one the page may claim.
    subdomain = SoftAuthenticator(origin="https://login.example.com")
    assert subdomain.create(options)["type"] == "public-key"
    assert subdomain.credentials[0].rp_id == "example.com"


@pytest.mark.parametrize(
    ("device", "forged", "message"),
    [*FORGERIES, ({}, {"client_data_type": "webauthn.get"}, 'type "webauthn.get"')],
)
def test_forged_registration_refused(device: Json, forged: Json, message: str) -> None:
    options, challenge = registration_options()
    response = SoftAuthenticator(**device).create(options, **forged)
    with pytest.raises(InvalidRegistrationResponse, match=message):
        verify_registration(response, challenge)


@pytest.mark.parametrize(
    ("device", "forged", "message"),
    [
        *FORGERIES,
        ({"user_present": False}, {}, "User was not present"),
        ({}, {"client_data_type": "webauthn.create"}, 'type "webauthn.create"'),
        ({}, {"counter": 3}, "sign count of 3 was not greater than current count of 5"),
        ({}, {"counter": 5}, "sign count of 5 was not greater than current count of 5"),
    ],
)
def test_forged_assertion_refused(device: Json, forged: Json, message: str) -> None:
    honest = SoftAuthenticator()
    registered = register(honest)
    honest.credentials[0].counter = 5
    options, challenge = authentication_options()
    response = replace(honest, **device).get(options, **forged)
    with pytest.raises(InvalidAuthenticationResponse, match=message):
        authenticate(response, challenge, registered, 5)
    # A forced count is sent, not stored; any other forgery counted as a use.
    expected = 6 if "counter" in forged else 7
    assert sign_in(honest, registered, 5) == expected


def test_a_clone_shares_keys_and_counters() -> None:
    device = SoftAuthenticator()
    registered = register(device)
    assert sign_in(device, registered, 0) == 1
    clone = device.clone()
    [original] = device.credentials
    assert [(c.id, c.counter) for c in clone.credentials] == [(original.id, 1)]
    assert sign_in(clone, registered, 1) == 2
    # The device goes on from its own count: the server, already at 2, sees a clone.
    with pytest.raises(InvalidAuthenticationResponse, match="sign count of 2 was not"):
        sign_in(device, registered, 2)
    assert (original.counter, clone.credentials[0].counter) == (2, 2)


def test_a_synced_passkey_that_never_counts_sends_zero() -> None:
    passkey = SoftAuthenticator(counter_step=0, backup_eligible=True, backed_up=True)
    registered = register(passkey)
    assert registered.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert registered.credential_backed_up is True
    assert sign_in(passkey, registered, 0) == 0
    assert sign_in(passkey, registered, 0) == 0
    assert passkey.credentials[0].counter == 0
