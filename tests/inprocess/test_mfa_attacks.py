"""The second factor attacked (issue 25), on every revocation store: a stranger
with forged `mfa_token`s, a thief holding the password (and perhaps a stolen,
no longer fresh, access token), replays of codes, recovery codes and waiting
logins, and waiting logins that outlive what they were issued for.

What tests/inprocess/test_mfa_login.py shows already (a code twice at /login/mfa,
a recovery code twice, a used or unknown mfa_token, five wrong codes, the
password grant) is not repeated; the races are in test_mfa_races.py.
"""

import hashlib
import secrets
from datetime import UTC, timedelta

import pytest

from core import db
from models import MfaTokenModel
from models.base import utcnow
from tests.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    TOKEN_KEYS,
    assert_error,
    bearer,
    set_cookies,
)
from tests.mfa import (
    code,
    complete,
    enrol,
    mfa_token,
    totp_account,
    wrong_code,
)

TOKEN_COOKIES = {"access_token_cookie", "refresh_token_cookie"}


@pytest.fixture
def app_config(request, app_config, backend) -> dict:
    """The app on each revocation store (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


@pytest.fixture
def alice(auth, client) -> tuple[int, str, list[str]]:
    """alice, with TOTP on: id, secret, recovery codes."""
    return totp_account(auth, client, "alice")


def logged_in(client, username: str, **factor) -> dict:
    """A completed login (password, then `factor`): the token pair."""
    response = complete(client, mfa_token(client, username), **factor)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def stale_pair(auth, tokens: dict) -> dict:
    """The pair a refresh gives: its access token is not fresh (a thief's loot)."""
    response = auth.refresh(tokens["refresh_token"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def mfa_status(client, access_token: str) -> dict:
    response = client.get("/me/mfa", headers=bearer(access_token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- a stranger ---------------------------------------------------------------------


def _forgeries(real: str) -> dict[str, str]:
    """Tokens a stranger may try, none of them issued."""
    changed = real[:-1] + ("A" if real[-1] != "A" else "B")
    return {
        "random": secrets.token_urlsafe(32),
        "one character changed": changed,
        "swapped case": real.swapcase(),
        "with a space": real + " ",
        "with a NUL": real + "\x00",
        "truncated": real[:-1],
        # What the database holds: reading the table gives no usable token.
        "the stored digest": hashlib.sha256(real.encode()).hexdigest(),
        "non-ASCII": "é" * 43,
    }


def test_a_forged_mfa_token_is_refused_and_spends_nothing(client, alice):
    _, secret, _ = alice
    real = mfa_token(client, "alice")

    for name, forged in _forgeries(real).items():
        response = complete(client, forged, code=code(secret))
        assert response.status_code == 401, (name, response.get_json())
        assert_error(response, 401, "invalid_mfa_token")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"', name

    # Nothing the stranger sent counted against the real waiting login or its code.
    assert complete(client, real, code=code(secret)).status_code == 200


def test_a_jwt_is_no_mfa_token(auth, client, alice):
    """An access token is longer than any mfa_token: refused before any lookup."""
    _, secret, codes = alice
    tokens = logged_in(client, "alice", recovery_code=codes[0])

    for kind in ("access_token", "refresh_token"):
        response = complete(client, tokens[kind], code=code(secret))
        body = assert_error(response, 422, "validation_error")
        assert body["errors"]["json"] == {
            "mfa_token": ["Length must be between 1 and 128."]
        }


def test_an_mfa_token_takes_no_code_of_another_account(auth, client, alice):
    _, secret, _ = alice
    _, bob_secret, bob_codes = totp_account(auth, client, "bob")
    token = mfa_token(client, "alice")

    if code(bob_secret) not in (code(secret), code(secret, steps_ago=1)):
        assert_error(
            complete(client, token, code=code(bob_secret)), 401, "invalid_code"
        )
    # A recovery code is bound to its account (its digest names the account).
    stolen = complete(client, token, recovery_code=bob_codes[0])
    assert_error(stolen, 401, "invalid_code")

    # Bob's code and recovery code were not spent by the attempts on alice.
    assert (
        complete(client, mfa_token(client, "bob"), code=code(bob_secret)).status_code
        == 200
    )
    bob = logged_in(client, "bob", recovery_code=bob_codes[0])
    assert mfa_status(client, bob["access_token"]) == {
        "totp": True,
        "recovery_codes_left": 9,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/me/mfa"),
        ("POST", "/me/mfa/totp"),
        ("DELETE", "/me/mfa/totp"),
        ("POST", "/me/mfa/totp/confirm"),
        ("POST", "/me/mfa/recovery-codes"),
        ("POST", "/reauthenticate"),
        ("GET", "/me/sessions"),
        ("POST", "/logout"),
        ("POST", "/logout/all"),
        ("PUT", "/user/password"),
        ("POST", "/store"),
    ],
)
def test_an_mfa_token_is_no_bearer_token(client, alice, method, path):
    token = mfa_token(client, "alice")

    response = client.open(path, method=method, headers=bearer(token), json={})

    assert_error(response, 401, "invalid_token", "The token is malformed.")


def test_an_mfa_token_is_no_token_cookie_nor_refresh_grant(app, client, alice):
    token = mfa_token(client, "alice")
    browser = app.test_client()
    browser.set_cookie("access_token_cookie", token)
    grant = {"grant_type": "refresh_token", "refresh_token": token}

    as_cookie = browser.get("/me")
    as_grant = client.post("/token", data=grant)

    assert_error(as_cookie, 401, "invalid_token", "The token is malformed.")
    body = assert_error(as_grant, 400, "invalid_grant")
    assert body["error_description"] == "The refresh token is invalid."


# --- a thief holding the password ---------------------------------------------------


@pytest.mark.parametrize("delivery", ["body", "cookie"])
def test_the_password_alone_gets_no_token_from_login(client, alice, delivery):
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, "token_delivery": delivery},
    )

    body = assert_error(response, 401, "mfa_required")
    assert set(body) == {"code", "status", "message", "error", "mfa_token"}
    assert not TOKEN_COOKIES & set(set_cookies(response))
    assert "eyJ" not in response.get_data(as_text=True)  # no JWT anywhere


def test_a_stolen_stale_token_and_the_password_cannot_step_up(auth, client, alice):
    """Nor can they change what protects the account: every such route needs a
    token fresh from a login or a step-up, which needs the second factor."""
    user_id, secret, codes = alice
    loot = stale_pair(auth, logged_in(client, "alice", recovery_code=codes[0]))
    headers = bearer(loot["access_token"])

    alone = client.post("/reauthenticate", json={"password": PASSWORD}, headers=headers)
    guessed = client.post(
        "/reauthenticate",
        json={"password": PASSWORD, "code": wrong_code(secret)},
        headers=headers,
    )
    body = assert_error(alone, 401, "mfa_required")
    assert "mfa_token" not in body
    assert_error(guessed, 401, "invalid_code")

    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    for method, path, payload in [
        ("DELETE", "/me/mfa/totp", None),
        ("POST", "/me/mfa/recovery-codes", None),
        ("POST", "/me/mfa/totp", None),
        ("PUT", "/user/password", change),
        ("DELETE", f"/user/{user_id}", None),
    ]:
        response = client.open(path, method=method, json=payload, headers=headers)
        assert response.status_code == 401, (path, response.get_json())
        assert_error(response, 401, "fresh_token_required")

    assert mfa_status(client, loot["access_token"]) == {
        "totp": True,
        "recovery_codes_left": 9,
    }
    # The owner's code still logs in: the thief's guesses spent nothing of it.
    assert (
        complete(client, mfa_token(client, "alice"), code=code(secret)).status_code
        == 200
    )


# --- replays ------------------------------------------------------------------------


def test_the_code_that_confirmed_the_enrolment_cannot_log_in(auth, client):
    _, tokens = auth.user("carol")
    headers = bearer(tokens["access_token"])
    secret = client.post("/me/mfa/totp", headers=headers).get_json()["secret"]
    first = code(secret)
    confirmed = client.post(
        "/me/mfa/totp/confirm", json={"code": first}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.get_json()

    replayed = complete(client, mfa_token(client, "carol"), code=first)

    assert_error(replayed, 401, "invalid_code")


def test_a_code_spent_at_a_step_up_cannot_log_in(client, alice):
    _, secret, codes = alice
    tokens = logged_in(client, "alice", recovery_code=codes[0])
    current = code(secret)
    stepped = client.post(
        "/reauthenticate",
        json={"password": PASSWORD, "code": current},
        headers=bearer(tokens["access_token"]),
    )
    assert stepped.status_code == 200, stepped.get_json()

    replayed = complete(client, mfa_token(client, "alice"), code=current)

    assert_error(replayed, 401, "invalid_code")


def test_a_recovery_code_spent_at_a_step_up_cannot_log_in(client, alice):
    _, secret, codes = alice
    tokens = logged_in(client, "alice", code=code(secret))
    stepped = client.post(
        "/reauthenticate",
        json={"password": PASSWORD, "recovery_code": codes[3]},
        headers=bearer(tokens["access_token"]),
    )
    assert stepped.status_code == 200, stepped.get_json()

    replayed = complete(client, mfa_token(client, "alice"), recovery_code=codes[3])

    assert_error(replayed, 401, "invalid_code")


def test_recovery_codes_die_when_renewed_or_when_totp_is_turned_off(client, alice):
    _, secret, old = alice
    tokens = logged_in(client, "alice", code=code(secret))
    headers = bearer(tokens["access_token"])
    new = client.post("/me/mfa/recovery-codes", headers=headers).get_json()
    new = new["recovery_codes"]

    stale = complete(client, mfa_token(client, "alice"), recovery_code=old[1])
    assert_error(stale, 401, "invalid_code")

    # Off and on again: neither the old secret's codes nor the old set work.
    assert client.delete("/me/mfa/totp", headers=headers).status_code == 200
    new_secret, newest = enrol(client, tokens["access_token"])
    for stale_code in (new[0], old[2]):
        response = complete(
            client, mfa_token(client, "alice"), recovery_code=stale_code
        )
        assert_error(response, 401, "invalid_code")
    if code(secret) != code(new_secret):
        response = complete(client, mfa_token(client, "alice"), code=code(secret))
        assert_error(response, 401, "invalid_code")
    assert (
        complete(
            client, mfa_token(client, "alice"), recovery_code=newest[0]
        ).status_code
        == 200
    )


def test_wrong_recovery_codes_count_towards_the_waiting_logins_limit(client, alice):
    _, secret, codes = alice
    token = mfa_token(client, "alice")
    guesses = [f"aaaa-bbbb-cccc-{i}{i}{i}{i}" for i in "23456"]

    for guess in guesses[:4]:
        assert_error(complete(client, token, recovery_code=guess), 401, "invalid_code")
    # The fifth failure, a TOTP code this time, is the last one allowed.
    assert_error(complete(client, token, code=wrong_code(secret)), 401, "invalid_code")

    assert_error(
        complete(client, token, recovery_code=codes[0]), 401, "invalid_mfa_token"
    )


def test_four_wrong_codes_leave_the_waiting_login_to_its_owner(client, alice):
    _, secret, _ = alice
    token = mfa_token(client, "alice")
    for _ in range(4):
        assert_error(
            complete(client, token, code=wrong_code(secret)), 401, "invalid_code"
        )

    response = complete(client, token, code=code(secret))

    assert response.status_code == 200
    assert set(response.get_json()) == TOKEN_KEYS


# --- a waiting login outlives nothing -----------------------------------------------


def _aware(moment):
    """SQLite gives back naive datetimes (stored in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.mark.parametrize("app_config", [{"MFA_TOKEN_EXPIRES": 1}], indirect=True)
def test_an_mfa_token_past_its_lifetime_is_refused(app, client, alice):
    _, secret, _ = alice
    before = utcnow()
    token = mfa_token(client, "alice")
    with app.app_context():
        (row,) = db.session.scalars(db.select(MfaTokenModel)).all()
        expires_at = _aware(row.expires_at)
        # Issued for MFA_TOKEN_EXPIRES (1 s) from now.
        assert before + timedelta(seconds=1) <= expires_at
        assert expires_at <= utcnow() + timedelta(seconds=1)
        # Two seconds later, as far as the database can tell.
        row.expires_at = expires_at - timedelta(seconds=2)
        db.session.commit()

    response = complete(client, token, code=code(secret))

    assert_error(response, 401, "invalid_mfa_token")
    # The refusal spent nothing: a new login uses the same code; expired rows
    # are purged when a new waiting login is stored.
    assert (
        complete(client, mfa_token(client, "alice"), code=code(secret)).status_code
        == 200
    )
    with app.app_context():
        assert (
            db.session.scalar(db.select(db.func.count()).select_from(MfaTokenModel))
            == 0
        )


def test_a_waiting_login_ends_when_totp_is_turned_off(client, alice):
    _, secret, codes = alice
    tokens = logged_in(client, "alice", recovery_code=codes[0])
    token = mfa_token(client, "alice")
    off = client.delete("/me/mfa/totp", headers=bearer(tokens["access_token"]))
    assert off.status_code == 200

    response = complete(client, token, code=code(secret))

    assert_error(response, 401, "invalid_mfa_token")


def test_a_waiting_login_ends_with_its_account(client, alice):
    user_id, secret, codes = alice
    tokens = logged_in(client, "alice", recovery_code=codes[0])
    token = mfa_token(client, "alice")
    gone = client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))
    assert gone.status_code == 200, gone.get_json()

    response = complete(client, token, code=code(secret))

    assert_error(response, 401, "invalid_mfa_token")


def test_a_password_change_ends_the_logins_waiting_for_a_code(client, alice):
    """The password that a waiting login proved is no longer the password: as
    every session ends at a change (issue 22), so does every half-login."""
    _, secret, codes = alice
    thief = mfa_token(client, "alice")
    owner = logged_in(client, "alice", recovery_code=codes[0])
    changed = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(owner["access_token"]),
    )
    assert changed.status_code == 200, changed.get_json()

    response = complete(client, thief, code=code(secret))

    assert_error(response, 401, "invalid_mfa_token")
    # The owner logs in with the new password and the same code.
    fresh = mfa_token(client, "alice", NEW_PASSWORD)
    after = complete(client, fresh, code=code(secret))
    assert after.status_code == 200, after.get_json()
