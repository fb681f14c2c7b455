"""Passkeys (issue 26): register, list, rename, delete; log in without a password
(body and cookies); step up inside the session; the `amr` of each; on every
revocation store. The ceremonies are played by a software authenticator
(tests/authenticator.py); the attacks are in test_passkey_attacks.py."""

import base64

import pytest

from core import db
from models import PasskeyModel, WebAuthnChallengeModel
from tests.authenticator import EDDSA, SoftAuthenticator
from tests.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    TOKEN_KEYS,
    assert_error,
    bearer,
    claims,
    config,
    set_cookies,
    statements,
)
from tests.mfa import code, totp_account
from tests.passkeys import (
    ORIGIN,
    login_assertion,
    login_options,
    passkey_account,
    passkey_login,
    register_options,
    register_passkey,
    step_up,
    step_up_options,
)


@pytest.fixture
def app_config(request, app_config, backend) -> dict:
    return {**app_config, **backend, **getattr(request, "param", {})}


def decoded(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_creation_options_ask_for_a_verified_resident_es256_or_eddsa_key(
    app, auth, client
):
    user_id, tokens = auth.user("alice")

    options = register_options(client, bearer(tokens["access_token"]))

    assert options["rp"] == {"id": "localhost", "name": app.config["API_TITLE"]}
    assert options["user"]["name"] == options["user"]["displayName"] == "alice"
    handle = decoded(options["user"]["id"])
    assert len(handle) == 32 and handle != str(user_id).encode()
    assert len(decoded(options["challenge"])) == 32
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8]
    assert options["authenticatorSelection"] == {
        "residentKey": "preferred",
        "requireResidentKey": False,
        "userVerification": "required",
    }
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []
    assert options["timeout"] == 300_000


def test_a_registered_passkey_is_listed_and_excluded_from_the_next_options(
    app, auth, client
):
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    first = SoftAuthenticator(origin=ORIGIN)

    passkey = register_passkey(client, headers, first, "laptop")

    assert set(passkey) == {"id", "name", "created_at", "last_used_at"}
    assert (passkey["name"], passkey["last_used_at"]) == ("laptop", None)
    listed = client.get("/me/passkeys", headers=headers)
    assert listed.status_code == 200
    assert listed.get_json() == [passkey]
    options = register_options(client, headers)
    assert [c["id"] for c in options["excludeCredentials"]] == [first.credentials[0].id]
    # One user handle per account: the next passkey is made under the same one.
    assert decoded(options["user"]["id"]) == first.credentials[0].user_handle


def test_an_eddsa_passkey_registers_and_logs_in(app, auth, client):
    _, tokens = auth.user("alice")
    authenticator = SoftAuthenticator(origin=ORIGIN, algorithm=EDDSA)
    register_passkey(client, bearer(tokens["access_token"]), authenticator)

    response = passkey_login(client, login_assertion(client, authenticator))

    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == TOKEN_KEYS


def test_a_passkey_logs_in_without_username_or_password(app, auth, client):
    user_id, _, authenticator = passkey_account(auth, client)
    options = login_options(client)
    assert options["allowCredentials"] == []  # discoverable: any of the site's
    assert options["rpId"] == "localhost"
    assert options["userVerification"] == "required"

    response = passkey_login(client, authenticator.get(options))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == TOKEN_KEYS
    access = claims(app, body["access_token"])
    assert access["sub"] == str(user_id)
    assert access["fresh"] is True
    assert access["amr"] == ["hwk", "user"]
    assert claims(app, body["refresh_token"])["amr"] == ["hwk", "user"]
    sessions = client.get("/me/sessions", headers=bearer(body["access_token"]))
    assert len(sessions.get_json()) == 2  # the registration's login, and this one
    with app.app_context():
        stored = db.session.scalars(db.select(PasskeyModel)).one()
        assert stored.sign_count == authenticator.credentials[0].counter == 1
        assert stored.last_used_at is not None


def test_a_synced_passkey_is_a_software_key(app, auth, client):
    _, tokens = auth.user("alice")
    synced = SoftAuthenticator(origin=ORIGIN, backup_eligible=True, counter_step=0)
    register_passkey(client, bearer(tokens["access_token"]), synced)

    for _ in range(2):  # it never counts: 0 each time is no clone
        response = passkey_login(client, login_assertion(client, synced))
        assert response.status_code == 200, response.get_json()
        assert claims(app, response.get_json()["access_token"])["amr"] == [
            "swk",
            "user",
        ]


def test_with_a_username_the_options_name_its_passkeys(app, auth, client):
    _, _, authenticator = passkey_account(auth, client)
    auth.user("bob")

    alice = login_options(client, "Alice")  # case-insensitive, as /login
    bob = login_options(client, "bob")
    nobody = login_options(client, "nobody")

    assert [c["id"] for c in alice["allowCredentials"]] == [
        authenticator.credentials[0].id
    ]
    assert bob["allowCredentials"] == nobody["allowCredentials"] == []
    response = passkey_login(client, authenticator.get(alice))
    assert response.status_code == 200, response.get_json()


def test_cookie_mode_sets_the_token_cookies(app, auth, client):
    _, _, authenticator = passkey_account(auth, client)

    response = passkey_login(
        client, login_assertion(client, authenticator), token_delivery="cookie"
    )

    assert response.status_code == 200, response.get_json()
    cookies = set_cookies(response)
    assert {"access_token_cookie", "refresh_token_cookie"} <= set(cookies)
    assert "HttpOnly" in cookies["access_token_cookie"]
    assert "access_token" not in response.get_json()


def test_an_account_with_totp_logs_in_with_a_passkey_alone(app, auth, client):
    _, secret, _ = totp_account(auth, client, "alice")
    mfa = client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert_error(mfa, 401, "mfa_required")
    second = client.post(
        "/login/mfa",
        json={"mfa_token": mfa.get_json()["mfa_token"], "code": code(secret)},
    )
    assert claims(app, second.get_json()["access_token"])["amr"] == ["pwd", "otp"]
    authenticator = SoftAuthenticator(origin=ORIGIN)
    register_passkey(client, bearer(second.get_json()["access_token"]), authenticator)

    response = passkey_login(client, login_assertion(client, authenticator))

    assert response.status_code == 200, response.get_json()
    assert claims(app, response.get_json()["access_token"])["amr"] == ["hwk", "user"]


def test_a_step_up_with_a_passkey_is_a_fresh_token_of_the_same_session(
    app, auth, client
):
    _, tokens, authenticator = passkey_account(auth, client)
    stale = auth.refresh(tokens["refresh_token"]).get_json()
    headers = bearer(stale["access_token"])
    item = {"name": "Chair", "price": 15.99, "store_id": 1}
    client.post("/store", json={"name": "Corner shop"}, headers=headers)
    assert_error(
        client.post("/item", json=item, headers=headers), 401, "fresh_token_required"
    )

    options = step_up_options(client, headers)
    assert [c["id"] for c in options["allowCredentials"]] == [
        authenticator.credentials[0].id
    ]
    response = step_up(client, headers, authenticator.get(options))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    new, old = claims(app, body["access_token"]), claims(app, stale["access_token"])
    assert new["fresh"] is True and new["fam"] == old["fam"]
    assert new["amr"] == ["hwk", "user"]
    made = client.post("/item", json=item, headers=bearer(body["access_token"]))
    assert made.status_code == 201, made.get_json()
    refreshed = auth.refresh(body["refresh_token"]).get_json()
    assert claims(app, refreshed["access_token"])["amr"] == ["hwk", "user"]


def test_a_step_up_without_a_passkey_is_a_conflict(auth, client):
    _, tokens = auth.user("alice")

    response = client.post(
        "/reauthenticate/options", headers=bearer(tokens["access_token"])
    )

    body = assert_error(response, 409, "no_passkeys")
    assert "password" in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "password"),
        ({"password": PASSWORD, "credential": {}}, "credential"),
        ({"code": "123456", "credential": {}}, "credential"),
    ],
    ids=["neither", "both", "code-and-credential"],
)
def test_a_step_up_takes_a_password_or_a_passkey(auth, client, body, field):
    _, tokens = auth.user("alice")

    response = client.post(
        "/reauthenticate", json=body, headers=bearer(tokens["access_token"])
    )

    assert_error(response, 422, "validation_error")
    assert field in response.get_json()["errors"]["json"]


def test_a_passkey_is_renamed_and_deleted(app, auth, client):
    _, tokens, authenticator = passkey_account(auth, client)
    headers = bearer(tokens["access_token"])
    (passkey,) = client.get("/me/passkeys", headers=headers).get_json()

    renamed = client.patch(
        f"/me/passkeys/{passkey['id']}", json={"name": "  phone "}, headers=headers
    )
    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json() == {**passkey, "name": "phone"}

    deleted = client.delete(f"/me/passkeys/{passkey['id']}", headers=headers)
    assert deleted.status_code == 200
    assert deleted.get_json() == {"message": "Passkey deleted."}
    assert client.get("/me/passkeys", headers=headers).get_json() == []
    response = passkey_login(client, login_assertion(client, authenticator))
    assert_error(response, 401, "invalid_credential")


@config(WEBAUTHN_MAX_CREDENTIALS=2)
def test_an_account_holds_at_most_the_limit(auth, client):
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    for name in ("one", "two"):
        register_passkey(client, headers, SoftAuthenticator(origin=ORIGIN), name)

    response = client.post("/me/passkeys/options", headers=headers)

    body = assert_error(response, 409, "too_many_passkeys")
    assert "2 passkeys at most" in body["message"]


def test_a_password_login_reads_no_passkey_table(app, auth, client):
    """An account with a passkey logs in with its password as before: the two
    statements of test_mfa_cost.py, none on the passkeys' tables."""
    passkey_account(auth, client)

    with statements(app) as seen:
        response = app.test_client().post(
            "/login", json={"username": "alice", "password": PASSWORD}
        )

    assert response.status_code == 200, response.get_json()
    assert len(seen) == 2, seen
    assert not [s for s in seen if "passkeys" in s or "webauthn" in s], seen


def test_a_password_change_ends_the_ceremonies_in_flight(app, auth, client):
    """Options asked before a password change are no good after it, even with the
    new session's fresh token: the change ends what the old password began."""
    _, tokens = auth.user("alice")
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = authenticator.create(
        register_options(client, bearer(tokens["access_token"]))
    )
    changed = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.get_json()

    response = client.post(
        "/me/passkeys",
        json={"name": "laptop", "credential": credential},
        headers=bearer(changed.get_json()["access_token"]),
    )

    assert_error(response, 400, "challenge_expired")
    with app.app_context():
        assert db.session.scalars(db.select(PasskeyModel)).all() == []


def test_logging_out_everywhere_ends_the_ceremonies_in_flight(app, auth, client):
    _, tokens, authenticator = passkey_account(auth, client)
    options = login_options(client, "alice")
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(WebAuthnChallengeModel.id)))

    client.post("/logout/all", headers=bearer(tokens["access_token"]))

    response = passkey_login(client, authenticator.get(options))
    assert_error(response, 401, "challenge_expired")
