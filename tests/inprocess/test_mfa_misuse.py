"""The second factor misused (issue 25), where the revocation store plays no part:
bodies that are not what a client sends (each refused in the envelope, never a
500), wrong codes that spend the failed-login budgets as wrong passwords do,
another account's token on the /me/mfa routes, and secrets in the logs.
"""

import logging
import re

import pytest

from tests.helpers import PASSWORD, assert_error, bearer
from tests.mfa import code, complete, mfa_token, totp_account, wrong_code

A_TOKEN = "x" * 43  # the shape of an mfa_token; no waiting login has it
A_RECOVERY_CODE = "abcd-efgh-ijkl-mnop"
SIX_DIGITS = "Must be 6 digits (0-9)."
NOT_A_RECOVERY_CODE = "Must be a recovery code: xxxx-xxxx-xxxx-xxxx."
NOT_NULL = "Field may not be null."
NOT_A_STRING = "Not a valid string."
TOKEN_LENGTH = "Length must be between 1 and 128."
MISSING = "Missing data for required field."
BUDGETS = {
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_LOGIN": "100 per minute",
    "RATELIMIT_REGISTER": "100 per minute",
    "RATELIMIT_LOGIN_USERNAME": "3 per minute",
    "RATELIMIT_LOGIN_USERNAME_TOTAL": "100 per hour",
}
THIEF = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def app_config(request, app_config) -> dict:
    """The suite's settings, with a test's own (`indirect` parameters) on top."""
    return {**app_config, **getattr(request, "param", {})}


@pytest.fixture
def alice(auth, client) -> tuple[int, str, list[str]]:
    """alice, with TOTP on: id, secret, recovery codes."""
    return totp_account(auth, client, "alice")


# --- bodies that are not what a client sends ----------------------------------------

CODE_CASES = {
    "five digits": ("12345", {"code": [SIX_DIGITS]}),
    "seven digits": ("1234567", {"code": [SIX_DIGITS]}),
    "a space inside": ("12 3456", {"code": [SIX_DIGITS]}),
    "a space before": (" 123456", {"code": [SIX_DIGITS]}),
    "a newline after": ("123456\n", {"code": [SIX_DIGITS]}),
    "fullwidth digits": ("１２３４５６", {"code": [SIX_DIGITS]}),
    "Arabic-Indic digits": ("١٢٣٤٥٦", {"code": [SIX_DIGITS]}),
    "10,000 digits": ("1" * 10_000, {"code": [SIX_DIGITS]}),
    "null": (None, {"code": [NOT_NULL]}),
    "a number": (123456, {"code": [NOT_A_STRING]}),
    "a recovery code": (A_RECOVERY_CODE, {"code": [SIX_DIGITS]}),
}
BODY_CASES = {
    "a code as recovery_code": (
        {"mfa_token": A_TOKEN, "recovery_code": "123456"},
        {"recovery_code": [NOT_A_RECOVERY_CODE]},
    ),
    "a null recovery_code": (
        {"mfa_token": A_TOKEN, "recovery_code": None},
        {"recovery_code": [NOT_NULL]},
    ),
    "both": (
        {"mfa_token": A_TOKEN, "code": "123456", "recovery_code": A_RECOVERY_CODE},
        {"recovery_code": ["Send a code or a recovery_code, not both."]},
    ),
    "neither": ({"mfa_token": A_TOKEN}, {"code": ["Send a code or a recovery_code."]}),
    "an mfa_token of 10,000 characters": (
        {"mfa_token": "x" * 10_000, "code": "123456"},
        {"mfa_token": [TOKEN_LENGTH]},
    ),
    "an empty mfa_token": (
        {"mfa_token": "", "code": "123456"},
        {"mfa_token": [TOKEN_LENGTH]},
    ),
    "a null mfa_token": (
        {"mfa_token": None, "code": "123456"},
        {"mfa_token": [NOT_NULL]},
    ),
    "a number as mfa_token": (
        {"mfa_token": 12345, "code": "123456"},
        {"mfa_token": [NOT_A_STRING]},
    ),
    "no mfa_token": ({"code": "123456"}, {"mfa_token": [MISSING]}),
    "a field of /login's": (
        {"mfa_token": A_TOKEN, "code": "123456", "password": PASSWORD},
        {"password": ["Unknown field."]},
    ),
    "a JSON array": (
        [{"mfa_token": A_TOKEN, "code": "123456"}],
        {"_schema": ["Invalid input type."]},
    ),
    "a JSON string": ("123456", {"_schema": ["Invalid input type."]}),
}


def assert_invalid(response, errors: dict) -> None:
    """422 in the envelope, naming each wrong field of the JSON body."""
    body = assert_error(response, 422, "validation_error")
    assert body["message"] == "The request failed validation."
    assert body["errors"] == {"json": errors}


@pytest.mark.parametrize(("value", "errors"), CODE_CASES.values(), ids=CODE_CASES)
def test_a_code_that_is_not_six_ascii_digits_is_refused_at_login_mfa(
    client, value, errors
):
    response = complete(client, A_TOKEN, code=value)

    assert_invalid(response, errors)


@pytest.mark.parametrize(("body", "errors"), BODY_CASES.values(), ids=BODY_CASES)
def test_a_second_step_that_is_not_a_token_and_one_code_is_refused(
    client, body, errors
):
    assert_invalid(client.post("/login/mfa", json=body), errors)


@pytest.mark.parametrize(
    "path", ["/login/mfa", "/reauthenticate", "/me/mfa/totp/confirm"]
)
def test_a_body_that_is_not_json_is_a_bad_request(auth, client, path):
    headers = bearer(auth.user("bob")[1]["access_token"])

    response = client.post(
        path, data='{"code": "123456"', content_type="application/json", headers=headers
    )

    body = assert_error(
        response, 400, "bad_request", "The request body is not valid JSON."
    )
    assert body["errors"] == {"json": ["Invalid JSON body."]}


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        CODE_CASES[name]
        for name in ("five digits", "fullwidth digits", "null", "a recovery code")
    ],
    ids=["five digits", "fullwidth digits", "null", "a recovery code"],
)
@pytest.mark.parametrize("path", ["/reauthenticate", "/me/mfa/totp/confirm"])
def test_the_same_codes_are_refused_at_the_step_up_and_the_confirmation(
    auth, client, path, value, errors
):
    _, tokens = auth.user("bob")
    body = (
        {"code": value}
        if path.endswith("confirm")
        else {"password": PASSWORD, "code": value}
    )

    response = client.post(path, json=body, headers=bearer(tokens["access_token"]))

    assert_invalid(response, errors)


def test_a_step_up_with_both_codes_is_refused(auth, client):
    _, tokens = auth.user("bob")
    body = {"password": PASSWORD, "code": "123456", "recovery_code": A_RECOVERY_CODE}

    response = client.post(
        "/reauthenticate", json=body, headers=bearer(tokens["access_token"])
    )

    assert_invalid(
        response, {"recovery_code": ["Send a code or a recovery_code, not both."]}
    )


def test_refused_bodies_cost_the_waiting_login_no_attempt(client, alice):
    _, secret, _ = alice
    token = mfa_token(client, "alice")
    for value, _ in CODE_CASES.values():
        assert complete(client, token, code=value).status_code == 422

    assert complete(client, token, code=code(secret)).status_code == 200


# --- the failed-login budgets -------------------------------------------------------


@pytest.mark.parametrize("app_config", [BUDGETS], indirect=True)
def test_wrong_codes_at_login_mfa_spend_the_username_budget(app, alice):
    _, secret, _ = alice
    thief = app.test_client()
    token = mfa_token(thief, "alice")
    for _ in range(3):
        response = thief.post(
            "/login/mfa",
            json={"mfa_token": token, "code": wrong_code(secret)},
            environ_base=THIEF,
        )
        assert_error(response, 401, "invalid_code")

    right = thief.post(
        "/login/mfa",
        json={"mfa_token": token, "code": code(secret)},
        environ_base=THIEF,
    )
    at_login = thief.post(
        "/login", json={"username": "alice", "password": PASSWORD}, environ_base=THIEF
    )

    assert_error(right, 429, "rate_limited")
    assert_error(at_login, 429, "rate_limited")  # one budget for both routes
    # Elsewhere the owner is asked for the code, as before.
    assert_error(
        app.test_client().post(
            "/login", json={"username": "alice", "password": PASSWORD}
        ),
        401,
        "mfa_required",
    )


@pytest.mark.parametrize("app_config", [BUDGETS], indirect=True)
def test_wrong_codes_at_a_step_up_spend_the_username_budget(app, client, alice):
    """A thief with a stolen access token guessing codes, from elsewhere."""
    _, secret, codes = alice
    stolen = complete(client, mfa_token(client, "alice"), recovery_code=codes[0])
    headers = bearer(stolen.get_json()["access_token"])
    thief = app.test_client()
    guess = {"password": PASSWORD, "code": wrong_code(secret)}
    for _ in range(3):
        response = thief.post(
            "/reauthenticate", json=guess, headers=headers, environ_base=THIEF
        )
        assert_error(response, 401, "invalid_code")

    right = thief.post(
        "/reauthenticate",
        json={"password": PASSWORD, "code": code(secret)},
        headers=headers,
        environ_base=THIEF,
    )
    at_login = thief.post(
        "/login", json={"username": "alice", "password": PASSWORD}, environ_base=THIEF
    )

    assert_error(right, 429, "rate_limited")
    assert_error(at_login, 429, "rate_limited")  # one budget for both routes
    # The owner's device, which logged in before, is not locked out.
    owner = client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert_error(owner, 401, "mfa_required")


@pytest.mark.parametrize("app_config", [BUDGETS], indirect=True)
def test_a_right_password_that_asks_for_a_code_spends_nothing(app, client, alice):
    _, _, codes = alice
    thief = app.test_client()
    for _ in range(6):
        asked = thief.post(
            "/login",
            json={"username": "alice", "password": PASSWORD},
            environ_base=THIEF,
        )
        assert_error(asked, 401, "mfa_required")
    tokens = complete(
        client, mfa_token(client, "alice"), recovery_code=codes[0]
    ).get_json()
    for _ in range(6):
        asked = client.post(
            "/reauthenticate",
            json={"password": PASSWORD},
            headers=bearer(tokens["access_token"]),
        )
        assert_error(asked, 401, "mfa_required")

    # The budget is whole: three wrong passwords, then the fourth attempt is refused.
    wrong = {"username": "alice", "password": "not the password"}
    for _ in range(3):
        assert_error(
            thief.post("/login", json=wrong, environ_base=THIEF),
            401,
            "invalid_credentials",
        )
    assert_error(
        thief.post("/login", json=wrong, environ_base=THIEF), 429, "rate_limited"
    )


@pytest.mark.parametrize("app_config", [BUDGETS], indirect=True)
def test_forged_mfa_tokens_spend_no_account_budget(app, alice):
    _, secret, _ = alice
    stranger = app.test_client()
    for i in range(10):
        response = stranger.post(
            "/login/mfa",
            json={"mfa_token": f"{A_TOKEN[:-2]}{i:02}", "code": "123456"},
            environ_base=THIEF,
        )
        assert_error(response, 401, "invalid_mfa_token")

    token = mfa_token(stranger, "alice")
    owner = stranger.post(
        "/login/mfa",
        json={"mfa_token": token, "code": code(secret)},
        environ_base=THIEF,
    )
    assert owner.status_code == 200, owner.get_json()


# --- every /me route acts on the caller ---------------------------------------------


def status(client, access_token: str) -> dict:
    response = client.get("/me/mfa", headers=bearer(access_token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_another_users_token_reads_and_changes_only_its_own_factors(
    app, auth, client, alice
):
    alice_id, secret, codes = alice
    _, bob = auth.user("bob")
    root_id, root = auth.user("root", admin=True)
    mine = complete(
        client, mfa_token(client, "alice"), recovery_code=codes[0]
    ).get_json()

    for other in (bob, root):
        headers = bearer(other["access_token"])
        assert status(client, other["access_token"]) == {
            "totp": False,
            "recovery_codes_left": 0,
        }
        assert_error(
            client.delete("/me/mfa/totp", headers=headers), 409, "totp_not_enabled"
        )
        assert_error(
            client.post("/me/mfa/recovery-codes", headers=headers),
            409,
            "totp_not_enabled",
        )
        confirm = client.post(
            "/me/mfa/totp/confirm", json={"code": code(secret)}, headers=headers
        )
        assert_error(confirm, 409, "no_pending_enrolment")
    # Bob's enrolment is bob's: alice's code does not confirm it.
    bobs = client.post("/me/mfa/totp", headers=bearer(bob["access_token"])).get_json()
    assert bobs["secret"] != secret and "alice" not in bobs["otpauth_uri"]
    if code(bobs["secret"]) != code(secret):
        confirm = client.post(
            "/me/mfa/totp/confirm",
            json={"code": code(secret)},
            headers=bearer(bob["access_token"]),
        )
        assert_error(confirm, 400, "invalid_code")
    # An administrator reads alice's account, never her factors.
    shown = client.get(f"/user/{alice_id}", headers=bearer(root["access_token"]))
    assert shown.get_json() == {"id": alice_id, "username": "alice", "is_admin": False}

    assert status(client, mine["access_token"]) == {
        "totp": True,
        "recovery_codes_left": 9,
    }
    response = complete(client, mfa_token(client, "alice"), code=code(secret))
    assert response.status_code == 200, response.get_json()


def test_no_route_names_another_users_factors(client):
    paths = client.get("/openapi.json").get_json()["paths"]

    mfa_paths = sorted(p for p in paths if "mfa" in p or "recovery" in p)

    assert mfa_paths == [
        "/login/mfa",
        "/me/mfa",
        "/me/mfa/recovery-codes",
        "/me/mfa/totp",
        "/me/mfa/totp/confirm",
    ]


# --- secrets never logged -----------------------------------------------------------


def test_no_secret_code_or_token_of_the_flow_is_ever_logged(auth, client, caplog):
    caplog.set_level(logging.DEBUG)
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    started = client.post("/me/mfa/totp", headers=headers).get_json()
    secret = started["secret"]
    first = code(secret, steps_ago=1)
    codes = client.post("/me/mfa/totp/confirm", json={"code": first}, headers=headers)
    codes = codes.get_json()["recovery_codes"]
    token = mfa_token(client, "alice")
    complete(client, token, code=wrong_code(secret))
    second = code(secret)
    logged_in = complete(client, token, code=second).get_json()
    headers = bearer(logged_in["access_token"])
    client.post(
        "/reauthenticate",
        json={"password": PASSWORD, "recovery_code": codes[0]},
        headers=headers,
    )
    renewed = client.post("/me/mfa/recovery-codes", headers=headers).get_json()[
        "recovery_codes"
    ]
    shown = client.get("/me/mfa", headers=headers)
    client.delete("/me/mfa/totp", headers=headers)

    assert set(shown.get_json()) == {"totp", "recovery_codes_left"}
    texts = [
        " ".join([record.getMessage(), *map(str, vars(record).values())])
        for record in caplog.records
    ]
    assert len(texts) > 10
    kept_secret = [secret, token, PASSWORD, *codes, *renewed]
    kept_secret += [c.replace("-", "") for c in codes + renewed]
    for text in texts:
        assert not [s for s in kept_secret if s in text], text
        for six_digits in (first, second):
            assert not re.search(rf"(?<!\d){six_digits}(?!\d)", text), text
