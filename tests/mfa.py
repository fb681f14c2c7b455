"""TOTP for tests: codes of a given step, and an account enrolled in one call
(in process, or against a live server).

A code is good once per account, for its step and the one before; `enrol` confirms
with the previous step's code, so the current step's code is left for a login.
"""

import time
from dataclasses import dataclass

import pyotp

from tests import servers
from tests.helpers import PASSWORD, bearer

STEP = 30


@dataclass(frozen=True)
class TotpUser:
    """An account with TOTP on, as the live tests make one."""

    username: str
    secret: str
    recovery_codes: list[str]


def code(secret: str, steps_ago: int = 0) -> str:
    """The TOTP code of the step `steps_ago` steps before the current one."""
    return pyotp.TOTP(secret).at(time.time() - steps_ago * STEP)


def wait_for_time_left(seconds: float) -> None:
    """Return once at least `seconds` are left in the current step (at once, or
    at the start of the next one)."""
    left = STEP - time.time() % STEP
    if left < seconds:
        time.sleep(left)


def code_with_time_left(secret: str, steps_ago: int = 0, seconds: float = 2) -> str:
    """`code(secret, steps_ago)` with at least `seconds` left in the step: a
    previous step's code still good when it arrives, after a few requests."""
    wait_for_time_left(seconds)
    return code(secret, steps_ago)


def wrong_code(secret: str) -> str:
    """Six digits that are no code of the secret in the steps around now (so
    wrong even if the step changes meanwhile)."""
    near = {code(secret, steps_ago) for steps_ago in (-2, -1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def enrol_live(
    base: str, username: str, password: str = PASSWORD
) -> tuple[str, list[str]]:
    """`enrol` against a live server at `base`, in a login of its own (ended
    after): the secret and the recovery codes."""
    # The previous step's code must arrive within this step (and the token, of a
    # server with 2-second access tokens, before it expires): no wait in between.
    wait_for_time_left(3)
    token = servers.login(base, username, password)["access_token"]
    started = servers.request(base, "POST", "/me/mfa/totp", token=token)
    assert started.status == 201, started.body
    secret = started.body["secret"]
    confirmed = servers.request(
        base,
        "POST",
        "/me/mfa/totp/confirm",
        token=token,
        body={"code": code(secret, steps_ago=1)},
    )
    assert confirmed.status == 200, confirmed.body
    assert servers.request(base, "POST", "/logout", token=token).status == 200
    return secret, confirmed.body["recovery_codes"]


def enrol(client, access_token: str) -> tuple[str, list[str]]:
    """Turn TOTP on for the token's user (the token must be fresh): the secret
    and the recovery codes."""
    started = client.post("/me/mfa/totp", headers=bearer(access_token))
    assert started.status_code == 201, started.get_json()
    secret = started.get_json()["secret"]
    confirmed = client.post(
        "/me/mfa/totp/confirm",
        json={"code": code(secret, steps_ago=1)},
        headers=bearer(access_token),
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    return secret, confirmed.get_json()["recovery_codes"]


def mfa_token(client, username: str, password: str = PASSWORD, **extra) -> str:
    """POST /login for an account with TOTP: the `mfa_token` it answers."""
    response = client.post(
        "/login", json={"username": username, "password": password, **extra}
    )
    body = response.get_json()
    assert response.status_code == 401 and body["error"] == "mfa_required", body
    return body["mfa_token"]


def totp_account(auth, client, username: str) -> tuple[int, str, list[str]]:
    """A new account with TOTP on and its enrolment session ended: its id, secret
    and recovery codes (the previous step's code is spent, this step's is not)."""
    user_id, tokens = auth.user(username)
    secret, codes = enrol(client, tokens["access_token"])
    client.post("/logout", headers=bearer(tokens["access_token"]))
    return user_id, secret, codes


def complete(client, token: str, **factor):
    """POST /login/mfa with `token` and `code=` or `recovery_code=`."""
    return client.post("/login/mfa", json={"mfa_token": token, **factor})
