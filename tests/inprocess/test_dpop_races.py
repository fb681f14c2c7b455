"""Races on DPoP (RFC 9449), ROUNDS rounds each in one run, on every revocation
store (memory, and the stores workers share: the database on SQLite and on
PostgreSQL, Redis). One proof sent by several threads at once is accepted once
(§11.1: its `jti` is spent by one atomic write that one request wins), at a
protected route, /refresh, /token and /login; and a thief hammering a session
with its stolen tokens and his own key, while its owner refreshes it, is never
served, and never makes the owner refused.

Each thread has its own test client and all wait at a barrier, so the requests
overlap (as in test_mfa_races.race).
"""

import threading
from collections.abc import Callable
from functools import partial

import pytest
from flask import Flask

from tests.dpop import ProofKey
from tests.helpers import PASSWORD, RACE_ROUNDS, at_once, records
from tests.inprocess.test_dpop import SESSIONS, get_sessions, refresh

ROUNDS = RACE_ROUNDS
THREADS = 5
USED_BEFORE = "This DPoP proof was used before: make a new one for every request."
# What the thief may be answered: refused for his key, wherever he goes.
THIEF_REFUSALS = {(401, "invalid_token"), (400, "invalid_grant")}


@pytest.fixture
def app_config(app_config, backend) -> dict:
    return {**app_config, **backend}


def race(app: Flask, method: str, path: str, **kwargs) -> list[tuple[int, dict]]:
    """One request (`kwargs`: its headers, body) sent by THREADS threads at once,
    one test client each: the (status, body) answers."""

    def send(client) -> tuple[int, dict]:
        response = client.open(path, method=method, **kwargs)
        return response.status_code, response.get_json()

    clients = [app.test_client() for _ in range(THREADS)]
    return at_once([partial(send, client) for client in clients], timeout=30)


def served_once(answers: list[tuple[int, dict]], status: int, label: str) -> dict:
    """Exactly one answer is a 200; every other is the refusal of a replayed proof
    (401 at a route, 400 where tokens are issued): the 200's body."""
    won = [body for code, body in answers if code == 200]
    assert len(won) == 1, (label, answers)
    lost = [
        (code, body["error"], body["message"]) for code, body in answers if code != 200
    ]
    assert set(lost) == {(status, "invalid_dpop_proof", USED_BEFORE)}, (label, lost)
    return won[0]


def test_one_proof_sent_side_by_side_is_served_once(app, bound, key):
    token = bound["access_token"]
    for round_number in range(ROUNDS):
        headers = key.headers("GET", SESSIONS, token)

        answers = race(app, "GET", SESSIONS, headers=headers)

        won = served_once(answers, 401, f"round {round_number}")
        assert [entry["current"] for entry in won] == [True]


def test_one_refresh_proof_sent_side_by_side_refreshes_once(app, client, bound, key):
    """Within the refresh grace, a second rotation of one token would be a retry
    and answer a pair too: only the proof, spent once, makes this one 200."""
    tokens = bound
    for round_number in range(ROUNDS):
        headers = key.headers("POST", "/refresh", tokens["refresh_token"])

        answers = race(app, "POST", "/refresh", headers=headers)

        tokens = served_once(answers, 401, f"round {round_number}")
        assert tokens["token_type"] == "DPoP"
        assert get_sessions(client, key, tokens["access_token"]).status_code == 200


def test_one_proof_at_the_token_endpoint_side_by_side_grants_once(
    app, client, bound, key
):
    tokens = bound
    for round_number in range(ROUNDS):
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        headers = {"DPoP": key.proof("POST", "/token")}

        answers = race(app, "POST", "/token", data=form, headers=headers)

        tokens = served_once(answers, 400, f"round {round_number}")
        assert get_sessions(client, key, tokens["access_token"]).status_code == 200


def test_one_login_proof_sent_side_by_side_starts_one_session(app, client, bound, key):
    """A login proof replayed with the password (a phished one, say) binds no
    second session to the key."""
    credentials = {"username": "alice", "password": PASSWORD}
    for round_number in range(ROUNDS):
        headers = {"DPoP": key.proof("POST", "/login")}

        answers = race(app, "POST", "/login", json=credentials, headers=headers)

        served_once(answers, 400, f"round {round_number}")
        listed = get_sessions(client, key, bound["access_token"])
        assert len(listed.get_json()) == round_number + 2, f"round {round_number}"


# --- the owner and the thief, side by side --------------------------------------------


def thief_requests(thief: ProofKey, tokens: dict) -> list[Callable]:
    """Every use the thief makes of the latest tokens he stole, with his own key."""
    access, refresh_token = tokens["access_token"], tokens["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return [
        lambda c: c.get(SESSIONS, headers=thief.headers("GET", SESSIONS, access)),
        lambda c: c.post(
            "/refresh", headers=thief.headers("POST", "/refresh", refresh_token)
        ),
        lambda c: c.post(
            "/token", data=form, headers={"DPoP": thief.proof("POST", "/token")}
        ),
        lambda c: c.post("/logout", headers=thief.headers("POST", "/logout", access)),
    ]


def test_a_thief_looping_with_the_stolen_tokens_never_gets_in_the_owners_way(
    app, client, bound, key, caplog
):
    """The thief steals each pair the moment alice gets it and uses it in a loop
    (routes, /refresh, /token, /logout) while she refreshes ROUNDS times: he is
    refused every time, audited every time, and she is never refused."""
    thief = ProofKey()
    stolen = {"tokens": bound}  # replaced whole: the thief reads one pair
    started, stop = threading.Event(), threading.Event()
    answers: list[tuple[int, str]] = []
    crashed: list[BaseException] = []

    def loot() -> None:
        thief_client = app.test_client()
        try:
            while not stop.is_set():
                for send in thief_requests(thief, stolen["tokens"]):
                    response = send(thief_client)
                    body = response.get_json()
                    error = body.get("error") if isinstance(body, dict) else None
                    answers.append((response.status_code, str(error)))
                started.set()
        except BaseException as exc:  # the main thread reports it
            crashed.append(exc)
            started.set()

    looter = threading.Thread(target=loot, daemon=True)
    looter.start()
    assert started.wait(10)
    try:
        tokens = bound
        for round_number in range(ROUNDS):
            response = refresh(client, key, tokens["refresh_token"])
            assert response.status_code == 200, (round_number, response.get_json())
            tokens = response.get_json()
            stolen["tokens"] = tokens
            listed = get_sessions(client, key, tokens["access_token"])
            assert listed.status_code == 200, (round_number, listed.get_json())
    finally:
        stop.set()
        looter.join(30)
    assert not looter.is_alive()

    assert crashed == []
    assert len(answers) >= 4
    assert set(answers) <= THIEF_REFUSALS, set(answers)
    assert len(records(caplog, "api.audit", "dpop_key_mismatch")) == len(answers)
    listed = get_sessions(client, key, tokens["access_token"])
    assert [entry["current"] for entry in listed.get_json()] == [True]
