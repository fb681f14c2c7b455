"""A login and a step-up with TOTP (auth/logins.py): `mfa_required` only after the
right password, POST /login/mfa answering what /login answers with `amr` ["pwd",
"otp"], codes good once, a step-up that needs every factor, and the password
grant that never issues tokens on the password alone. On every revocation store."""

import time

import pytest

from core import db
from models import MfaTokenModel
from tests.helpers import (
    PASSWORD,
    TOKEN_KEYS,
    assert_error,
    bearer,
    claims,
    set_cookies,
)
from tests.mfa import code, enrol, mfa_token


@pytest.fixture
def app_config(app_config, backend) -> dict:
    return {**app_config, **backend}


@pytest.fixture
def totp_user(auth, client) -> tuple[int, str, list[str]]:
    """alice, with TOTP on and her enrolment session ended: id, secret, codes."""
    user_id, tokens = auth.user("alice")
    secret, codes = enrol(client, tokens["access_token"])
    client.post("/logout", headers=bearer(tokens["access_token"]))
    return user_id, secret, codes


def complete(client, token: str, **second_factor):
    return client.post("/login/mfa", json={"mfa_token": token, **second_factor})


def test_the_right_password_asks_for_a_second_factor(client, totp_user):
    response = client.post("/login", json={"username": "alice", "password": PASSWORD})

    body = assert_error(response, 401, "mfa_required")
    assert set(body) == {"code", "status", "message", "error", "mfa_token"}
    assert len(body["mfa_token"]) >= 43  # 256 bits, base64url
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "access_token" not in response.get_data(as_text=True)


def test_a_wrong_password_is_refused_as_for_any_account(auth, client, totp_user):
    auth.register("bob")
    wrong = {"password": "not the password"}

    with_totp = client.post("/login", json={"username": "alice", **wrong})
    without = client.post("/login", json={"username": "bob", **wrong})

    assert with_totp.get_json() == without.get_json()
    assert_error(with_totp, 401, "invalid_credentials", "Invalid credentials.")
    assert with_totp.headers == without.headers or (
        with_totp.headers.get("WWW-Authenticate")
        == without.headers.get("WWW-Authenticate")
    )


def test_a_code_completes_the_login_with_both_factors_in_amr(app, client, totp_user):
    user_id, secret, _ = totp_user
    token = mfa_token(client, "alice")

    response = complete(client, token, code=code(secret))

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == TOKEN_KEYS
    access = claims(app, body["access_token"])
    refresh = claims(app, body["refresh_token"])
    assert access["amr"] == refresh["amr"] == ["pwd", "otp"]
    assert access["fresh"] is True and access["sub"] == str(user_id)
    assert abs(access["auth_time"] - time.time()) < 5
    assert client.get("/me", headers=bearer(body["access_token"])).status_code == 200
    # A refresh keeps the factors the session was proved with.
    refreshed = client.post("/refresh", headers=bearer(body["refresh_token"]))
    assert claims(app, refreshed.get_json()["access_token"])["amr"] == ["pwd", "otp"]


def test_a_recovery_code_completes_a_login_once(app, client, totp_user):
    _, _, codes = totp_user

    first = complete(client, mfa_token(client, "alice"), recovery_code=codes[0])
    again = complete(client, mfa_token(client, "alice"), recovery_code=codes[0])

    assert first.status_code == 200
    assert claims(app, first.get_json()["access_token"])["amr"] == ["pwd", "otp"]
    assert_error(again, 401, "invalid_code")
    status = client.get("/me/mfa", headers=bearer(first.get_json()["access_token"]))
    assert status.get_json() == {"totp": True, "recovery_codes_left": 9}


def test_a_recovery_code_may_be_typed_without_hyphens_in_capitals(client, totp_user):
    _, _, codes = totp_user
    typed = codes[1].replace("-", "").upper()

    response = complete(client, mfa_token(client, "alice"), recovery_code=typed)

    assert response.status_code == 200


def test_cookie_mode_carries_through_the_second_step(client, totp_user):
    _, secret, _ = totp_user
    token = mfa_token(client, "alice", token_delivery="cookie")

    response = complete(client, token, code=code(secret))

    assert response.status_code == 200
    assert "access_token" not in response.get_json()
    cookies = set_cookies(response)
    assert {"access_token_cookie", "refresh_token_cookie"} <= set(cookies)
    assert "HttpOnly" in cookies["access_token_cookie"]


def test_a_code_is_good_for_its_step_and_the_one_before_never_older(client, totp_user):
    _, secret, _ = totp_user
    token = mfa_token(client, "alice")

    too_old = complete(client, token, code=code(secret, steps_ago=2))
    previous = complete(client, token, code=code(secret, steps_ago=1))

    assert_error(too_old, 401, "invalid_code")
    # The enrolment spent the previous step's code: it is refused too.
    assert_error(previous, 401, "invalid_code")
    assert complete(client, token, code=code(secret)).status_code == 200


def test_a_code_is_never_accepted_twice(client, totp_user):
    _, secret, _ = totp_user
    current = code(secret)
    assert complete(client, mfa_token(client, "alice"), code=current).status_code == 200

    replayed = complete(client, mfa_token(client, "alice"), code=current)

    assert_error(replayed, 401, "invalid_code")


def test_an_mfa_token_is_single_use(client, totp_user):
    _, _, codes = totp_user
    token = mfa_token(client, "alice")
    assert complete(client, token, recovery_code=codes[0]).status_code == 200

    again = complete(client, token, recovery_code=codes[1])

    assert_error(again, 401, "invalid_mfa_token")


def test_an_mfa_token_dies_after_five_wrong_codes(client, totp_user):
    _, secret, _ = totp_user
    token = mfa_token(client, "alice")
    wrong = "000000" if code(secret) != "000000" else "111111"

    for _ in range(5):
        assert_error(complete(client, token, code=wrong), 401, "invalid_code")

    assert_error(complete(client, token, code=code(secret)), 401, "invalid_mfa_token")


def test_an_expired_mfa_token_is_refused(app, client, totp_user):
    _, secret, _ = totp_user
    token = mfa_token(client, "alice")
    with app.app_context():
        db.session.execute(
            db.update(MfaTokenModel).values(
                expires_at=db.func.datetime("now", "-1 second")
                if db.engine.dialect.name == "sqlite"
                else db.func.now() - db.text("interval '1 second'")
            )
        )
        db.session.commit()

    assert_error(complete(client, token, code=code(secret)), 401, "invalid_mfa_token")


def test_an_unknown_mfa_token_is_refused(client, totp_user):
    response = complete(client, "not-a-token-we-issued", code="123456")

    assert_error(response, 401, "invalid_mfa_token")


def test_the_mfa_token_is_no_bearer_token(client, totp_user):
    token = mfa_token(client, "alice")

    me = client.get("/me", headers=bearer(token))
    refresh = client.post("/refresh", headers=bearer(token))

    assert_error(me, 401, "invalid_token")
    assert_error(refresh, 401, "invalid_token")


def test_an_account_without_totp_logs_in_with_the_password_alone(app, auth):
    auth.register("bob")

    tokens = auth.login("bob")

    assert claims(app, tokens["access_token"])["amr"] == ["pwd"]


# --- step-up ------------------------------------------------------------------------


def _logged_in(client, secret: str) -> dict:
    response = complete(client, mfa_token(client, "alice"), code=code(secret))
    assert response.status_code == 200
    return response.get_json()


def test_a_step_up_needs_the_code_too(app, client, totp_user):
    _, secret, codes = totp_user
    tokens = _logged_in(client, secret)
    headers = bearer(tokens["access_token"])

    alone = client.post("/reauthenticate", json={"password": PASSWORD}, headers=headers)
    body = assert_error(alone, 401, "mfa_required")
    assert "mfa_token" not in body

    stepped = client.post(
        "/reauthenticate",
        json={"password": PASSWORD, "recovery_code": codes[0]},
        headers=headers,
    )
    assert stepped.status_code == 200
    fresh = claims(app, stepped.get_json()["access_token"])
    assert fresh["amr"] == ["pwd", "otp"] and fresh["fresh"] is True
    assert fresh["fam"] == claims(app, tokens["access_token"])["fam"]


def test_a_step_up_with_a_wrong_or_used_code_is_refused(client, totp_user):
    _, secret, _ = totp_user
    tokens = _logged_in(client, secret)  # spends this step's code
    headers = bearer(tokens["access_token"])

    used = client.post(
        "/reauthenticate",
        json={"password": PASSWORD, "code": code(secret)},
        headers=headers,
    )
    wrong_password = client.post(
        "/reauthenticate",
        json={"password": "not the password", "code": code(secret)},
        headers=headers,
    )

    assert_error(used, 401, "invalid_code")
    assert_error(wrong_password, 401, "invalid_credentials")


# --- the OAuth 2.0 password grant ---------------------------------------------------


def test_the_password_grant_never_issues_tokens_on_the_password_alone(
    client, totp_user
):
    response = client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
    )

    body = assert_error(response, 400, "invalid_grant")
    assert "/login/mfa" in body["error_description"]
    assert "second factor" in body["error_description"]
    assert "access_token" not in body


def test_logging_out_everywhere_ends_the_logins_waiting_for_a_code(client, totp_user):
    _, secret, codes = totp_user
    tokens = complete(
        client, mfa_token(client, "alice"), recovery_code=codes[0]
    ).get_json()
    waiting = mfa_token(client, "alice")  # a thief with the password, say

    client.post("/logout/all", headers=bearer(tokens["access_token"]))

    assert_error(complete(client, waiting, code=code(secret)), 401, "invalid_mfa_token")


def test_a_password_change_keeps_the_factors_the_fresh_token_proved(
    app, client, totp_user
):
    _, secret, _ = totp_user
    tokens = _logged_in(client, secret)

    changed = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=bearer(tokens["access_token"]),
    )

    assert changed.status_code == 200
    assert claims(app, changed.get_json()["access_token"])["amr"] == ["pwd", "otp"]
