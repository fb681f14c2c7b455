"""Races on the second factor (issue 25), ROUNDS rounds each in one run, on every
revocation store: threads that send one code, one recovery code or one
`mfa_token` side by side get one login between them, and wrong codes sent side by
side get no more attempts than MFA_TOKEN_MAX_FAILURES.

Each thread has its own test client (each request its own app context), and all
of them wait at a barrier, so the requests overlap. A TOTP code is good once per
account: before each round of TOTP codes, the account's last used step is
forgotten in the database (as a new account's), so this step's code and the
previous one are both unused, without waiting 30 seconds per round.
"""

from functools import partial

import pytest
from flask import Flask

from core import db
from models import TotpFactorModel
from tests.helpers import RACE_ROUNDS, assert_error, at_once, bearer
from tests.mfa import code, mfa_token, totp_account, wrong_code

ROUNDS = RACE_ROUNDS
THREADS = 5
# The answers a losing thread may get: its code (or recovery code) was spent by
# the winner, or its waiting login was.
LOST = {"invalid_code", "invalid_mfa_token"}


@pytest.fixture
def app_config(app_config, backend) -> dict:
    return {**app_config, **backend}


@pytest.fixture
def alice(auth, client) -> tuple[int, str, list[str]]:
    """alice, with TOTP on: id, secret, recovery codes."""
    return totp_account(auth, client, "alice")


def race(
    app: Flask, bodies: list[dict | None], path: str = "/login/mfa", **kwargs
) -> list[tuple[int, dict]]:
    """POST `path` with each body at once (and `kwargs`, e.g. headers), one
    thread and client each: the (status, body) answers, in the order of `bodies`."""

    def send(client, body: dict | None) -> tuple[int, dict]:
        response = client.post(path, json=body, **kwargs)
        return response.status_code, response.get_json()

    sends = [partial(send, app.test_client(), body) for body in bodies]
    return at_once(sends, timeout=30)


def forget_used_steps(app: Flask, user_id: int) -> None:
    """As if no TOTP code had been used on the account yet."""
    with app.app_context():
        factor = db.session.get(TotpFactorModel, user_id)
        factor.last_step = None
        db.session.commit()


def one_login(answers: list[tuple[int, dict]], label: str) -> dict:
    """Exactly one answer is a token pair, every other a refusal of a loser: the
    pair."""
    won = [body for status, body in answers if status == 200]
    assert len(won) == 1, (label, answers)
    lost = [(status, body["error"]) for status, body in answers if status != 200]
    assert all(status == 401 and error in LOST for status, error in lost), (
        label,
        lost,
    )
    return won[0]


def sessions_of(client, tokens: dict) -> list[dict]:
    response = client.get("/me/sessions", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def end(client, tokens: dict) -> None:
    """Log the round's winner out, so the next round starts with no session."""
    response = client.post("/logout", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("tokens", ["one-mfa-token", "an-mfa-token-each"])
def test_one_totp_code_sent_side_by_side_logs_in_once(app, client, alice, tokens):
    """With one waiting login, and with one per thread (then only the code's
    single use stands between the threads and as many sessions)."""
    user_id, secret, _ = alice
    for round_number in range(ROUNDS):
        forget_used_steps(app, user_id)
        shared = mfa_token(client, "alice")
        waiting = [
            shared if tokens == "one-mfa-token" else mfa_token(client, "alice")
            for _ in range(THREADS)
        ]
        current = code(secret)

        answers = race(app, [{"mfa_token": t, "code": current} for t in waiting])

        winner = one_login(answers, f"round {round_number}")
        assert [s["current"] for s in sessions_of(client, winner)] == [True]
        end(client, winner)


@pytest.mark.parametrize("tokens", ["one-mfa-token", "an-mfa-token-each"])
def test_one_recovery_code_sent_side_by_side_logs_in_once(app, client, alice, tokens):
    _, _, codes = alice
    for round_number in range(ROUNDS):
        shared = mfa_token(client, "alice")
        waiting = [
            shared if tokens == "one-mfa-token" else mfa_token(client, "alice")
            for _ in range(THREADS)
        ]
        recovery_code = codes[round_number % len(codes)]

        answers = race(
            app, [{"mfa_token": t, "recovery_code": recovery_code} for t in waiting]
        )

        winner = one_login(answers, f"round {round_number}")
        left = client.get("/me/mfa", headers=bearer(winner["access_token"]))
        assert left.get_json()["recovery_codes_left"] == 9 - round_number % 10
        if round_number % len(codes) == len(codes) - 1:  # all spent: a new set
            renewed = client.post(
                "/me/mfa/recovery-codes", headers=bearer(winner["access_token"])
            )
            codes = renewed.get_json()["recovery_codes"]
        end(client, winner)


def test_one_mfa_token_with_a_recovery_code_per_thread_logs_in_once(app, client, alice):
    """Every code is good: the waiting login is used once, and only the winner's
    code is spent (a code is spent in the transaction that ends the waiting
    login, so a losing thread's is not)."""
    _, _, codes = alice
    for round_number in range(ROUNDS):
        token = mfa_token(client, "alice")
        answers = race(
            app, [{"mfa_token": token, "recovery_code": c} for c in codes[:THREADS]]
        )

        winner = one_login(answers, f"round {round_number}")
        assert {body["error"] for status, body in answers if status != 200} == {
            "invalid_mfa_token"
        }
        left = client.get("/me/mfa", headers=bearer(winner["access_token"]))
        assert left.get_json()["recovery_codes_left"] == 9
        codes = client.post(
            "/me/mfa/recovery-codes", headers=bearer(winner["access_token"])
        ).get_json()["recovery_codes"]
        end(client, winner)


def test_this_steps_and_the_previous_steps_codes_on_one_token_make_one_session(
    app, client, alice
):
    user_id, secret, _ = alice
    for round_number in range(ROUNDS):
        forget_used_steps(app, user_id)
        token = mfa_token(client, "alice")
        both = [code(secret), code(secret, steps_ago=1)]
        bodies = [{"mfa_token": token, "code": both[i % 2]} for i in range(THREADS)]

        answers = race(app, bodies)

        winner = one_login(answers, f"round {round_number}")
        assert [s["current"] for s in sessions_of(client, winner)] == [True]
        end(client, winner)


def test_wrong_codes_side_by_side_get_no_more_tries_than_the_limit(app, client, alice):
    _, secret, _ = alice
    limit = app.config["MFA_TOKEN_MAX_FAILURES"]
    threads = limit + 3
    for round_number in range(ROUNDS):
        token = mfa_token(client, "alice")

        answers = race(
            app, [{"mfa_token": token, "code": wrong_code(secret)}] * threads
        )

        label = f"round {round_number}: {answers}"
        errors = [body["error"] for _, body in answers]
        assert {status for status, _ in answers} == {401}, label
        assert errors.count("invalid_code") == limit, label
        assert errors.count("invalid_mfa_token") == threads - limit, label
        # And the waiting login is gone, even for the right code.
        late = client.post(
            "/login/mfa", json={"mfa_token": token, "code": code(secret)}
        )
        assert_error(late, 401, "invalid_mfa_token")


# --- the owner's own requests side by side (a double submit, two tabs) -------------


def test_renewals_side_by_side_leave_one_set_of_recovery_codes(app, client, alice):
    """Each renewal answers a new set; whichever came last is the only one left
    (not the union of the sets: codes the owner never kept would still work)."""
    _, _, codes = alice
    tokens = client.post(
        "/login/mfa",
        json={"mfa_token": mfa_token(client, "alice"), "recovery_code": codes[0]},
    ).get_json()
    headers = bearer(tokens["access_token"])
    for round_number in range(ROUNDS):
        answers = race(app, [None] * 3, "/me/mfa/recovery-codes", headers=headers)

        assert [status for status, _ in answers] == [200] * 3, answers
        left = client.get("/me/mfa", headers=headers).get_json()
        assert left == {"totp": True, "recovery_codes_left": 10}, round_number


def test_confirmations_side_by_side_turn_totp_on_once(app, client, auth):
    _, tokens = auth.user("bob")
    headers = bearer(tokens["access_token"])
    for round_number in range(ROUNDS):
        secret = client.post("/me/mfa/totp", headers=headers).get_json()["secret"]
        both = [code(secret), code(secret, steps_ago=1)]

        answers = race(
            app,
            [{"code": c} for c in both * 2],
            "/me/mfa/totp/confirm",
            headers=headers,
        )

        label = (round_number, answers)
        assert sorted(status for status, _ in answers)[0] == 200, label
        assert [status for status, _ in answers].count(200) == 1, label
        assert all(
            (status, body.get("error"))
            in {(400, "invalid_code"), (409, "no_pending_enrolment")}
            for status, body in answers
            if status != 200
        ), label
        left = client.get("/me/mfa", headers=headers).get_json()
        assert left == {"totp": True, "recovery_codes_left": 10}, label
        assert client.delete("/me/mfa/totp", headers=headers).status_code == 200
