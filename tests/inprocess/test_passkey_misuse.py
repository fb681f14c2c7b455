"""Passkeys misused (issue 26), where the revocation store plays no part: bodies
that are not what a browser sends, each refused in the envelope and never a 500,
and failed assertions that spend the failed-login budgets as wrong passwords do
(auth/limits.py: the budgets of the account whose passkey the credential names).
"""

import copy
import random
import secrets

import pytest

from tests.authenticator import b64url
from tests.helpers import PASSWORD, assert_error, bearer, config
from tests.inprocess.test_login_budgets import BUDGETS, assert_refused
from tests.passkeys import (
    PURPOSES,
    REFUSED,
    answer,
    assert_untouched,
    device_for,
    login_options,
    options_for,
    passkey_account,
    passkey_login,
    send_answer,
)

MB = 1024 * 1024
DROP = object()  # a mutation that removes the member
garbage = random.Random(26).randbytes  # the same bytes on every run


@pytest.fixture
def app_config(request, app_config) -> dict:
    """The base config and what `parametrize(indirect=True)` adds."""
    return {**app_config, **getattr(request, "param", {})}


@pytest.fixture
def alice(auth, client):
    """alice with one passkey, logged in with her password: id, tokens, device."""
    return passkey_account(auth, client, "alice")


# --- failure budgets, as a password's ------------------------------------------------


def from_address(client, credential: dict, addr: str):
    return client.post(
        "/login/passkey",
        json={"credential": credential},
        environ_base={"REMOTE_ADDR": addr},
    )


def password_login(client, addr: str):
    return client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": addr},
    )


def forged(client, authenticator) -> dict:
    """An assertion naming alice's passkey that fails (another origin)."""
    return authenticator.get(login_options(client), origin="https://evil.example")


@config(**BUDGETS)
def test_failed_assertions_spend_the_accounts_budget_at_that_address(
    app, client, alice
):
    _, _, authenticator = alice
    stranger = app.test_client()
    for _ in range(2):
        response = from_address(
            stranger, forged(stranger, authenticator), "198.51.100.7"
        )
        assert_error(response, 401, "invalid_credential")

    refused = from_address(stranger, forged(stranger, authenticator), "198.51.100.7")

    assert_refused(refused, "2 per 1 minute")
    # The owner, elsewhere, logs in either way.
    owner = app.test_client()
    assert password_login(owner, "192.0.2.10").status_code == 200
    real = authenticator.get(login_options(owner))
    assert from_address(owner, real, "192.0.2.10").status_code == 200


@config(**BUDGETS)
def test_distributed_failed_assertions_leave_alices_known_device_alone(
    app, client, alice
):
    """`client` logged alice in (passkey_account): its device cookie keeps her
    budgets apart from the stranger's, at /login and /login/passkey alike."""
    _, _, authenticator = alice
    stranger = app.test_client()
    for i in range(1, 5):
        response = from_address(
            stranger, forged(stranger, authenticator), f"203.0.113.{i}"
        )
        assert_error(response, 401, "invalid_credential")

    # A device never seen before is refused, with the password or the passkey...
    assert_refused(password_login(app.test_client(), "192.0.2.99"), "4 per 1 hour")
    newcomer = app.test_client()
    real = authenticator.get(login_options(newcomer))
    assert_refused(from_address(newcomer, real, "192.0.2.99"), "4 per 1 hour")
    # ...alice's own device is not.
    assert password_login(client, "192.0.2.99").status_code == 200
    passkey = from_address(
        client, authenticator.get(login_options(client)), "192.0.2.99"
    )
    assert passkey.status_code == 200, passkey.get_json()


@config(**BUDGETS)
def test_unknown_credentials_spend_no_accounts_budget(app, client, alice):
    _, _, authenticator = alice
    stranger = app.test_client()
    for i in range(1, 5):
        credential = authenticator.get(login_options(stranger))
        credential["rawId"] = credential["id"] = b64url(secrets.token_bytes(16))
        response = from_address(stranger, credential, f"203.0.113.{i}")
        assert_error(response, 401, "invalid_credential")

    assert password_login(app.test_client(), "192.0.2.99").status_code == 200


# --- malformed and oversized credentials --------------------------------------------

NESTED_JSON = b64url(b"[" * 3000)  # 4,000 characters: within the field's length
NESTED_CBOR = b64url(b"\x81" * 40_000)
RANDOM = b64url(garbage(64))
NO_CHALLENGE = b64url(b'{"type":"webauthn.get","origin":"http://localhost:5000"}')
NUMBER_CHALLENGE = b64url(b'{"type":"webauthn.get","challenge":5}')
INVALID = (REFUSED, "invalid_credential")  # the purpose's refusal
VALIDATION = (422, "validation_error")
TOO_LARGE = (413, "payload_too_large")
EVERY, ASSERTIONS = ("login", "step_up", "register"), ("login", "step_up")
LOGIN, STEP_UP, REGISTER = ("login",), ("step_up",), ("register",)
CREDENTIAL, RESPONSE = "credential", "credential.response"
CLIENT_DATA, AUTH_DATA = f"{RESPONSE}.clientDataJSON", f"{RESPONSE}.authenticatorData"
SIGNATURE, USER_HANDLE = f"{RESPONSE}.signature", f"{RESPONSE}.userHandle"
ATTESTATION, TRANSPORTS = f"{RESPONSE}.attestationObject", f"{RESPONSE}.transports"
# (purposes, description, path in the body, value or DROP, (status, error))
MALFORMED = [
    (EVERY, "no credential", CREDENTIAL, DROP, VALIDATION),
    (EVERY, "a string credential", CREDENTIAL, "abc", VALIDATION),
    (EVERY, "a list credential", CREDENTIAL, [], VALIDATION),
    (EVERY, "no id", f"{CREDENTIAL}.id", DROP, VALIDATION),
    (EVERY, "no rawId", f"{CREDENTIAL}.rawId", DROP, VALIDATION),
    (EVERY, "no response", RESPONSE, DROP, VALIDATION),
    (EVERY, "no clientDataJSON", CLIENT_DATA, DROP, VALIDATION),
    (EVERY, "another type", f"{CREDENTIAL}.type", "password", VALIDATION),
    (EVERY, "a number id", f"{CREDENTIAL}.id", 12345, VALIDATION),
    (EVERY, "an id not base64url", f"{CREDENTIAL}.id", "not base64url!", VALIDATION),
    (
        EVERY,
        "a rawId of 2,000 characters",
        f"{CREDENTIAL}.rawId",
        "A" * 2000,
        VALIDATION,
    ),
    (EVERY, "standard base64", CLIENT_DATA, "ab+/", VALIDATION),
    (EVERY, "a 5 MB clientDataJSON", CLIENT_DATA, "A" * 5 * MB, TOO_LARGE),
    (EVERY, "a 5 MB member besides", f"{CREDENTIAL}.extra", "A" * 5 * MB, TOO_LARGE),
    (EVERY, "clientDataJSON of random bytes", CLIENT_DATA, RANDOM, INVALID),
    (EVERY, "clientDataJSON a JSON array", CLIENT_DATA, b64url(b"[]"), INVALID),
    (EVERY, "clientDataJSON nested deep", CLIENT_DATA, NESTED_JSON, INVALID),
    (EVERY, "clientDataJSON without a challenge", CLIENT_DATA, NO_CHALLENGE, INVALID),
    (EVERY, "a number challenge", CLIENT_DATA, NUMBER_CHALLENGE, INVALID),
    (EVERY, "an id not the rawId", f"{CREDENTIAL}.id", b64url(garbage(16)), INVALID),
    (ASSERTIONS, "no signature", SIGNATURE, DROP, VALIDATION),
    (ASSERTIONS, "a list signature", SIGNATURE, ["a"], VALIDATION),
    (ASSERTIONS, "an empty signature", SIGNATURE, "", VALIDATION),
    (ASSERTIONS, "a number userHandle", USER_HANDLE, 7, VALIDATION),
    (ASSERTIONS, "a userHandle not base64url", USER_HANDLE, "@@", VALIDATION),
    (ASSERTIONS, "a userHandle of 100 bytes", USER_HANDLE, "A" * 134, VALIDATION),
    (ASSERTIONS, "authenticatorData too long", AUTH_DATA, "A" * 5000, VALIDATION),
    (ASSERTIONS, "authenticatorData of random bytes", AUTH_DATA, RANDOM, INVALID),
    (
        ASSERTIONS,
        "authenticatorData of 10 bytes",
        AUTH_DATA,
        b64url(bytes(10)),
        INVALID,
    ),
    (ASSERTIONS, "a signature of random bytes", SIGNATURE, RANDOM, INVALID),
    (ASSERTIONS, "a rawId of no passkey", f"{CREDENTIAL}.rawId", RANDOM, INVALID),
    (ASSERTIONS, "a random userHandle", USER_HANDLE, RANDOM, INVALID),
    (LOGIN, "an unknown token_delivery", "token_delivery", "pigeon", VALIDATION),
    (STEP_UP, "the password too", "password", PASSWORD, VALIDATION),
    (REGISTER, "no name", "name", DROP, VALIDATION),
    (REGISTER, "a blank name", "name", "   ", VALIDATION),
    (REGISTER, "a number name", "name", 5, VALIDATION),
    (REGISTER, "a name of 81 characters", "name", "x" * 81, VALIDATION),
    (REGISTER, "a name of 100,000 characters", "name", "x" * 100_000, VALIDATION),
    (REGISTER, "a 5 MB name", "name", "x" * 5 * MB, TOO_LARGE),
    (REGISTER, "a control character", "name", "lap\x00top", VALIDATION),
    (REGISTER, "no attestationObject", ATTESTATION, DROP, VALIDATION),
    (REGISTER, "attestationObject too long", ATTESTATION, "A" * 70_000, VALIDATION),
    (REGISTER, "attestationObject of random bytes", ATTESTATION, RANDOM, INVALID),
    (REGISTER, "attestationObject nested deep", ATTESTATION, NESTED_CBOR, INVALID),
    (REGISTER, "11 transports", TRANSPORTS, ["usb"] * 11, VALIDATION),
    (REGISTER, "a number transport", TRANSPORTS, [5], VALIDATION),
]
CASES = [
    pytest.param(purpose, path, value, expected, id=f"{purpose}: {description}")
    for purposes, description, path, value, expected in MALFORMED
    for purpose in purposes
]


def mutated(body: dict, path: str, value) -> dict:
    """A deep copy of `body` with the member at `path` ("a.b.c") set or dropped."""
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[key]
    if value is DROP:
        del target[last]
    else:
        target[last] = value
    return body


@config(PROPAGATE_EXCEPTIONS=False)  # an unhandled error answers 500, as in production
@pytest.mark.parametrize(("purpose", "path", "value", "expected"), CASES)
def test_a_malformed_credential_is_refused_in_the_envelope(
    app, client, alice, purpose, path, value, expected
):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    status, error = expected
    if isinstance(status, dict):
        status = status[purpose]
    device = device_for(purpose, authenticator)
    body = answer(purpose, device, options_for(client, purpose, headers))

    response = send_answer(client, purpose, headers, mutated(body, path, value))

    assert_error(response, status, error)
    assert_untouched(app, user_id)
    # Nothing broke: the real passkey still logs in.
    assert (
        passkey_login(client, authenticator.get(login_options(client))).status_code
        == 200
    )


@config(PROPAGATE_EXCEPTIONS=False)
@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"credential": ', (400, "bad_request")),
        (b"\xff\xfe not even text", (400, "bad_request")),
        (b"[]", VALIDATION),
        (b"null", VALIDATION),
        (b'"credential"', VALIDATION),
    ],
    ids=["truncated", "not text", "an array", "null", "a string"],
)
def test_a_body_that_is_no_json_object_is_refused(
    app, client, alice, purpose, data, expected
):
    user_id, tokens, _ = alice

    response = send_answer(
        client,
        purpose,
        bearer(tokens["access_token"]),
        data=data,
        content_type="application/json",
    )

    assert_error(response, *expected)
    assert_untouched(app, user_id)
