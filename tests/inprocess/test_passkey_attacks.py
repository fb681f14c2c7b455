"""Passkeys attacked (issue 26), on every revocation store: a stranger forging
and replaying ceremonies, a thief holding one stolen token, other accounts'
passkeys and challenges, a cloned authenticator, and what goes away between a
ceremony's options and its answer.

Every ceremony is played by the software authenticator (tests/authenticator.py)
as a browser and its platform authenticator would, honest or forging. Malformed
bodies and the failure budgets are in test_passkey_misuse.py, the races in
test_passkey_races.py, the workers in tests/live/test_passkey_workers.py.
"""

import logging
import secrets
from dataclasses import replace
from datetime import UTC, timedelta

import pytest

from core import db
from models import WebAuthnChallengeModel
from models.base import utcnow
from tests.authenticator import SoftAuthenticator, b64url
from tests.helpers import TOKEN_KEYS, assert_error, bearer, records
from tests.inprocess.test_mfa_attacks import stale_pair
from tests.passkeys import (
    ORIGIN,
    PURPOSES,
    REFUSED,
    answer,
    assert_untouched,
    ceremony,
    device_for,
    login_options,
    options_for,
    passkey_account,
    passkey_login,
    register_options,
    register_passkey,
    send_answer,
    step_up_options,
    stored_passkeys,
    with_client_data,
)


@pytest.fixture
def app_config(request, app_config, backend) -> dict:
    """The app on each revocation store (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


@pytest.fixture
def alice(auth, client) -> tuple[int, dict, SoftAuthenticator]:
    """alice with one passkey, logged in with her password: id, tokens, device."""
    return passkey_account(auth, client, "alice")


def assert_succeeded(response, purpose: str) -> None:
    status = 201 if purpose == "register" else 200
    assert response.status_code == status, response.get_json()
    if purpose != "register":
        assert set(response.get_json()) == TOKEN_KEYS


def challenges_in_flight(app) -> int:
    with app.app_context():
        return db.session.scalar(
            db.select(db.func.count()).select_from(WebAuthnChallengeModel)
        )


# --- a stranger: no token ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/me/passkeys/options"),
        ("POST", "/me/passkeys"),
        ("GET", "/me/passkeys"),
        ("PATCH", "/me/passkeys/1"),
        ("DELETE", "/me/passkeys/1"),
        ("POST", "/reauthenticate/options"),
    ],
)
def test_the_account_routes_need_a_token(client, alice, method, path):
    response = client.open(path, method=method, json={"name": "mallory's"})

    assert_error(response, 401, "authorization_required")


# --- replays -------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", PURPOSES)
def test_a_replayed_answer_is_refused(app, client, alice, purpose):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    options = options_for(client, purpose, headers)
    body = answer(purpose, device_for(purpose, authenticator), options)
    assert_succeeded(send_answer(client, purpose, headers, body), purpose)

    replayed = send_answer(client, purpose, headers, body)

    assert_error(replayed, REFUSED[purpose], "challenge_expired")
    passkeys = stored_passkeys(app, user_id)
    assert len(passkeys) == (2 if purpose == "register" else 1)
    # The replay moved nothing: the counter is the first answer's.
    assert passkeys[0]["sign_count"] == (0 if purpose == "register" else 1)


def test_a_login_assertion_replayed_at_a_step_up_is_refused(client, alice):
    _, tokens, authenticator = alice
    credential = authenticator.get(login_options(client))
    assert passkey_login(client, credential).status_code == 200

    response = send_answer(
        client, "step_up", bearer(tokens["access_token"]), {"credential": credential}
    )

    assert_error(response, 401, "challenge_expired")


@pytest.mark.parametrize("owner", ["alice", "bob"])
def test_a_registration_under_new_options_cannot_register_its_key_again(
    app, auth, client, alice, owner
):
    """Attestation "none" signs nothing: alice's registration, sent again with
    the challenge of new options (hers, or bob's who read her credential id in
    login options), is the same credential id: refused, hers untouched."""
    alice_id, tokens, _ = alice
    headers = bearer(tokens["access_token"])
    body = answer(
        "register", SoftAuthenticator(origin=ORIGIN), register_options(client, headers)
    )
    assert send_answer(client, "register", headers, body).status_code == 201
    if owner == "bob":
        headers = bearer(auth.user("bob")[1]["access_token"])
    challenge = register_options(client, headers)["challenge"]

    response = send_answer(
        client,
        "register",
        headers,
        {
            "name": "stolen",
            "credential": with_client_data(body["credential"], challenge=challenge),
        },
    )

    assert_error(response, 409, "passkey_exists")
    assert [p["name"] for p in stored_passkeys(app, alice_id)] == ["laptop", "phone"]


# --- forged answers: another origin or RP, another type, no user verification ------

FORGERIES = {
    "another origin": {"origin": "https://evil.example"},
    "another port": {"origin": "http://localhost:5001"},
    "https instead of http": {"origin": "https://localhost:5000"},
    "a subdomain": {"origin": "http://evil.localhost:5000"},
    "a path": {"origin": "http://localhost:5000/"},
    "another RP ID": {"rp_id": "evil.example"},
    "an RP ID with a port": {"rp_id": "localhost:5000"},
    "an RP ID in upper case": {"rp_id": "LOCALHOST"},
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
@pytest.mark.parametrize("purpose", PURPOSES)
def test_an_answer_for_another_site_is_refused(app, client, alice, purpose, forgery):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])

    response = ceremony(
        client, purpose, headers, device_for(purpose, authenticator), **forgery
    )

    assert_error(response, REFUSED[purpose], "invalid_credential")
    assert_untouched(app, user_id)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_an_answer_of_the_other_ceremony_type_is_refused(app, client, alice, purpose):
    """clientDataJSON's type: a get() answer is no create() answer (§7.1 step 7)."""
    user_id, tokens, authenticator = alice
    other = "webauthn.get" if purpose == "register" else "webauthn.create"
    device = device_for(purpose, authenticator)

    response = ceremony(
        client, purpose, bearer(tokens["access_token"]), device, client_data_type=other
    )

    assert_error(response, REFUSED[purpose], "invalid_credential")
    assert_untouched(app, user_id)


@pytest.mark.parametrize("flag", ["user_verified", "user_present"])
@pytest.mark.parametrize("purpose", PURPOSES)
def test_an_answer_without_user_verification_is_refused(
    app, client, alice, purpose, flag
):
    user_id, tokens, authenticator = alice
    device = replace(device_for(purpose, authenticator), **{flag: False})

    response = ceremony(client, purpose, bearer(tokens["access_token"]), device)

    assert_error(response, REFUSED[purpose], "invalid_credential")
    assert_untouched(app, user_id)


# --- challenges: expired, forged, spent, for another purpose or another account ----


@pytest.mark.parametrize(
    "app_config", [{"WEBAUTHN_CHALLENGE_EXPIRES": 60}], indirect=True
)
@pytest.mark.parametrize("purpose", PURPOSES)
def test_an_expired_challenge_is_refused(app, client, alice, purpose):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    before = utcnow()
    options = options_for(client, purpose, headers)
    assert options["timeout"] == 60_000
    with app.app_context():
        (row,) = db.session.scalars(db.select(WebAuthnChallengeModel)).all()
        expires_at = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC)
        lifetime = timedelta(seconds=60)
        assert before + lifetime <= expires_at <= utcnow() + lifetime
    options_for(client, purpose, headers)  # another, never answered
    with app.app_context():  # 61 seconds later, as far as the database can tell
        db.session.execute(
            db.update(WebAuthnChallengeModel).values(
                expires_at=utcnow() - timedelta(seconds=1)
            )
        )
        db.session.commit()

    response = ceremony(
        client, purpose, headers, device_for(purpose, authenticator), options
    )

    assert_error(response, REFUSED[purpose], "challenge_expired")
    assert_untouched(app, user_id)
    # The expired challenge never answered is purged when new options are asked.
    options_for(client, purpose, headers)
    assert challenges_in_flight(app) == 1


@pytest.mark.parametrize("purpose", PURPOSES)
def test_a_forged_challenge_is_refused_and_spends_nothing(app, client, alice, purpose):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    device = device_for(purpose, authenticator)
    options = options_for(client, purpose, headers)
    forged = b64url(secrets.token_bytes(32))

    response = ceremony(client, purpose, headers, device, options, challenge=forged)

    assert_error(response, REFUSED[purpose], "challenge_expired")
    assert_untouched(app, user_id)
    # The real challenge is still the owner's.
    assert_succeeded(ceremony(client, purpose, headers, device, options), purpose)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_a_challenge_is_spent_by_a_failed_answer(app, client, alice, purpose):
    """Pass or fail, once: a forged answer spends the challenge it names."""
    _, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    device = device_for(purpose, authenticator)
    options = options_for(client, purpose, headers)
    forged = ceremony(
        client, purpose, headers, device, options, origin="https://evil.example"
    )
    assert_error(forged, REFUSED[purpose], "invalid_credential")

    response = ceremony(
        client, purpose, headers, device_for(purpose, authenticator), options
    )

    assert_error(response, REFUSED[purpose], "challenge_expired")
    assert challenges_in_flight(app) == 0


@pytest.mark.parametrize(
    ("issued", "used"),
    [(issued, used) for issued in PURPOSES for used in PURPOSES if issued != used],
)
def test_a_challenge_serves_its_own_ceremony_only(app, client, alice, issued, used):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    challenge = options_for(client, issued, headers)["challenge"]

    response = ceremony(
        client, used, headers, device_for(used, authenticator), challenge=challenge
    )

    assert_error(response, REFUSED[used], "challenge_expired")
    # Spent all the same: its own ceremony cannot use it now.
    again = ceremony(
        client, issued, headers, device_for(issued, authenticator), challenge=challenge
    )
    assert_error(again, REFUSED[issued], "challenge_expired")
    assert_untouched(app, user_id)


def test_a_registration_challenge_of_alice_cannot_register_for_bob(
    app, auth, client, alice
):
    alice_id, tokens, _ = alice
    bob_id, bob_tokens = auth.user("bob")
    stolen = register_options(client, bearer(tokens["access_token"]))
    body = answer("register", SoftAuthenticator(origin=ORIGIN), stolen)

    response = send_answer(client, "register", bearer(bob_tokens["access_token"]), body)

    assert_error(response, 400, "challenge_expired")
    assert stored_passkeys(app, bob_id) == []
    assert len(stored_passkeys(app, alice_id)) == 1


@pytest.mark.parametrize("thief", ["another session of alice", "bob's session"])
def test_a_step_up_challenge_serves_its_own_session_only(
    app, auth, client, alice, thief
):
    """The challenge is bound to the session (`fam`) that asked, and its account."""
    alice_id, tokens, authenticator = alice
    options = step_up_options(client, bearer(tokens["access_token"]))
    if thief == "bob's session":
        _, other, authenticator = passkey_account(auth, client, "bob")
        credential = authenticator.get(
            options, credential_id=authenticator.credentials[0].id
        )
    else:
        other = auth.login("alice")
        credential = authenticator.get(options)

    response = send_answer(
        client, "step_up", bearer(other["access_token"]), {"credential": credential}
    )

    assert_error(response, 401, "challenge_expired")
    assert_untouched(app, alice_id)


# --- a cloned authenticator ----------------------------------------------------------


@pytest.mark.parametrize("counter", ["equal", "lower", "zero"])
def test_a_cloned_authenticator_is_refused_and_audited(
    app, client, alice, caplog, counter
):
    caplog.set_level(logging.INFO)
    user_id, _, authenticator = alice
    clone = authenticator.clone()
    for _ in range(2):  # the owner's device moves on: 2
        assert (
            passkey_login(client, authenticator.get(login_options(client))).status_code
            == 200
        )
    forged = {"equal": {"counter": 2}, "lower": {}, "zero": {"counter": 0}}[counter]

    response = passkey_login(client, clone.get(login_options(client), **forged))

    assert_error(response, 401, "invalid_credential")
    (passkey,) = stored_passkeys(app, user_id)
    assert passkey["sign_count"] == 2
    (record,) = records(caplog, "api.audit", "passkey_clone_suspected")
    assert (record.user_id, record.passkey_id) == (str(user_id), passkey["id"])
    # The owner's device goes on.
    assert (
        passkey_login(client, authenticator.get(login_options(client))).status_code
        == 200
    )


def test_a_clone_that_logs_in_first_gets_the_original_flagged(
    app, client, alice, caplog
):
    """A counter tells two devices apart, not which one is the thief's (§6.1.1):
    the one that falls behind is refused, and the account's owner is told."""
    caplog.set_level(logging.INFO)
    user_id, _, authenticator = alice
    clone = authenticator.clone()
    assert passkey_login(client, clone.get(login_options(client))).status_code == 200

    response = passkey_login(client, authenticator.get(login_options(client)))

    assert_error(response, 401, "invalid_credential")
    assert len(records(caplog, "api.audit", "passkey_clone_suspected")) == 1


def test_an_authenticator_that_never_counts_logs_in_again_and_again(
    app, auth, client, caplog
):
    """Counter 0 is "no counter" (§6.1.1), as many synced passkeys send."""
    caplog.set_level(logging.INFO)
    user_id, tokens = auth.user("carol")
    device = SoftAuthenticator(origin=ORIGIN, counter_step=0, backup_eligible=True)
    register_passkey(client, bearer(tokens["access_token"]), device)

    for _ in range(3):
        response = passkey_login(client, device.get(login_options(client)))
        assert response.status_code == 200, response.get_json()

    (passkey,) = stored_passkeys(app, user_id)
    assert passkey["sign_count"] == 0 and passkey["last_used_at"] is not None
    assert records(caplog, "api.audit", "passkey_clone_suspected") == []


# --- other accounts' passkeys ------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_another_users_passkey_is_not_found(app, auth, client, alice, method):
    _, tokens, _ = alice
    bob_id, bob_tokens, bob_device = passkey_account(auth, client, "bob")
    (bob_passkey,) = stored_passkeys(app, bob_id)
    headers = bearer(tokens["access_token"])

    for passkey_id in (bob_passkey["id"], 999_999, 2**63):
        response = client.open(
            f"/me/passkeys/{passkey_id}",
            method=method,
            json={"name": "mine"},
            headers=headers,
        )
        assert_error(response, 404, "not_found")

    assert stored_passkeys(app, bob_id) == [bob_passkey]
    listed = client.get("/me/passkeys", headers=bearer(bob_tokens["access_token"]))
    assert [p["name"] for p in listed.get_json()] == ["laptop"]
    assert (
        passkey_login(client, bob_device.get(login_options(client))).status_code == 200
    )


def test_a_passkey_cannot_answer_options_bound_to_another_username(
    app, auth, client, alice
):
    alice_id, _, authenticator = alice
    bob_id, _, _ = passkey_account(auth, client, "bob")
    options = login_options(client, "bob")
    credential = authenticator.get(
        options, credential_id=authenticator.credentials[0].id
    )

    response = passkey_login(client, credential)

    assert_error(response, 401, "invalid_credential")
    assert_untouched(app, alice_id)
    assert_untouched(app, bob_id)


def test_a_user_handle_of_another_account_is_refused(app, auth, client, alice):
    """userHandle is not signed: the server checks it names the passkey's account."""
    alice_id, _, authenticator = alice
    _, _, bob_device = passkey_account(auth, client, "bob")
    credential = authenticator.get(login_options(client))
    credential["response"]["userHandle"] = b64url(bob_device.credentials[0].user_handle)

    response = passkey_login(client, credential)

    assert_error(response, 401, "invalid_credential")
    assert_untouched(app, alice_id)


def test_a_thiefs_own_passkey_cannot_step_up_in_alices_session(
    app, auth, client, alice
):
    alice_id, tokens, _ = alice
    mallory_id, _, mallory_device = passkey_account(auth, client, "mallory")
    loot = stale_pair(auth, tokens)
    options = step_up_options(client, bearer(loot["access_token"]))
    credential = mallory_device.get(
        options, credential_id=mallory_device.credentials[0].id
    )

    response = send_answer(
        client, "step_up", bearer(loot["access_token"]), {"credential": credential}
    )

    assert_error(response, 401, "invalid_credential")
    assert_untouched(app, mallory_id)


# --- a thief with a stolen, no longer fresh, token -----------------------------------


def test_a_stale_token_cannot_add_or_delete_a_passkey(app, auth, client, alice):
    user_id, tokens, authenticator = alice
    (passkey,) = stored_passkeys(app, user_id)
    fresh = bearer(tokens["access_token"])
    stale = bearer(stale_pair(auth, tokens)["access_token"])
    body = answer(
        "register", SoftAuthenticator(origin=ORIGIN), register_options(client, fresh)
    )

    for method, path, payload in [
        ("POST", "/me/passkeys/options", None),
        ("POST", "/me/passkeys", body),
        ("DELETE", f"/me/passkeys/{passkey['id']}", None),
    ]:
        response = client.open(path, method=method, json=payload, headers=stale)
        assert_error(response, 401, "fresh_token_required")
    assert_untouched(app, user_id)

    # Reading and renaming need no freshness.
    assert client.get("/me/passkeys", headers=stale).status_code == 200
    renamed = client.patch(
        f"/me/passkeys/{passkey['id']}", json={"name": "work"}, headers=stale
    )
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "work"
    # The refusals spent nothing: the owner's fresh token registers the credential.
    assert send_answer(client, "register", fresh, body).status_code == 201
    # And a passkey step-up makes the stale token's session fresh again.
    stepped = ceremony(client, "step_up", stale, authenticator)
    assert stepped.status_code == 200, stepped.get_json()
    gone = client.delete(
        f"/me/passkeys/{passkey['id']}",
        headers=bearer(stepped.get_json()["access_token"]),
    )
    assert gone.status_code == 200 and gone.get_json() == {
        "message": "Passkey deleted."
    }


# --- what goes away between options and answer ---------------------------------------


@pytest.mark.parametrize("purpose", ["login", "step_up"])
def test_a_passkey_deleted_after_the_options_is_refused(app, client, alice, purpose):
    user_id, tokens, authenticator = alice
    headers = bearer(tokens["access_token"])
    options = options_for(client, purpose, headers)
    (passkey,) = stored_passkeys(app, user_id)
    deleted = client.delete(f"/me/passkeys/{passkey['id']}", headers=headers)
    assert deleted.status_code == 200, deleted.get_json()

    response = ceremony(client, purpose, headers, authenticator, options)

    assert_error(response, 401, "invalid_credential")


@pytest.mark.parametrize(
    ("username", "error"),
    [(None, "invalid_credential"), ("alice", "challenge_expired")],
)
def test_an_account_deleted_after_the_options_logs_in_no_more(
    app, client, alice, username, error
):
    """Options for any passkey, or bound to alice's account (whose challenges go
    with it); her passkeys go with her account."""
    user_id, tokens, authenticator = alice
    options = login_options(client, username)
    gone = client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))
    assert gone.status_code == 200, gone.get_json()

    response = passkey_login(client, authenticator.get(options))

    assert_error(response, 401, error)
    assert stored_passkeys(app, user_id) == []
