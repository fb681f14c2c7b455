"""Ending every session is final, even against a refresh in flight (issue 22, #1).

A thief holding a refresh token refreshes in a loop while the owner logs out
everywhere, changes the password or deletes the account. Once that answer is in,
no token of a session that existed before it is accepted: not the thief's latest
pair, not a pair minted by a refresh that passed its check just before the mark
(the mark is compared with the session's start, `fam_iat`, which no refresh
changes). Each ending is raced ROUNDS times on every revocation store: a race
that held once proves little.
"""

import threading
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import NEW_PASSWORD, PASSWORD, RACE_ROUNDS, bearer

ROUNDS = RACE_ROUNDS
# Refreshes the thief makes before the owner acts, and at most after.
HEAD_START = 2
AFTER = 200


@pytest.fixture
def app_config(app_config, backend):
    return {**app_config, **backend}


class Thief(threading.Thread):
    """Refreshes one chain in a loop until refused (or stopped); keeps every pair."""

    def __init__(self, app: Flask, tokens: dict) -> None:
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.pairs = [tokens]
        self.refused: dict | None = None
        self.started_refreshing = threading.Event()
        self.owner_answered = threading.Event()

    def run(self) -> None:
        after = 0
        while after < AFTER:
            response = self.client.post(
                "/refresh", headers=bearer(self.pairs[-1]["refresh_token"])
            )
            if response.status_code != 200:
                self.refused = {**response.get_json(), "http": response.status_code}
                return
            self.pairs.append(response.get_json())
            if len(self.pairs) > HEAD_START:
                self.started_refreshing.set()
            if self.owner_answered.is_set():
                after += 1


def logout_everywhere(client: FlaskClient, tokens: dict) -> dict | None:
    response = client.post("/logout/all", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()
    return None


def change_password(client: FlaskClient, tokens: dict) -> dict | None:
    response = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # the new session's pair


def delete_account(client: FlaskClient, tokens: dict) -> dict | None:
    me = client.get("/me", headers=bearer(tokens["access_token"])).get_json()
    response = client.delete(
        f"/user/{me['id']}", headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200, response.get_json()
    return None


ENDINGS: dict[str, Callable[[FlaskClient, dict], dict | None]] = {
    "logout-all": logout_everywhere,
    "password-change": change_password,
    "account-deletion": delete_account,
}


def refused(response, ending: str) -> bool:
    """A 401 that says the session ended (a deleted user's token may also be
    refused because its user is gone)."""
    expected = {"token_revoked"}
    if ending == "account-deletion":
        expected.add("invalid_token")
    return response.status_code == 401 and response.get_json()["error"] in expected


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_refresh_in_flight_never_outlives_the_end_of_every_session(
    app, auth, client, ending
):
    for round_number in range(ROUNDS):
        username = f"owner{round_number}"
        _, stolen = auth.user(username)
        owner = auth.login(username)
        thief = Thief(app, stolen)
        thief.start()
        assert thief.started_refreshing.wait(10), thief.refused

        new_pair = ENDINGS[ending](client, owner)
        thief.owner_answered.set()
        thief.join(30)

        assert not thief.is_alive()
        label = f"round {round_number}: {len(thief.pairs)} pairs"
        # The loop itself was stopped by the ending, with the session's answer.
        assert thief.refused is not None, label
        assert thief.refused["http"] == 401, (label, thief.refused)
        assert thief.refused["error"] in ("token_revoked", "invalid_token"), label
        for pair in thief.pairs:
            me = client.get("/me", headers=bearer(pair["access_token"]))
            assert refused(me, ending), (label, me.get_json())
            again = client.post("/refresh", headers=bearer(pair["refresh_token"]))
            assert refused(again, ending), (label, again.get_json())
        if new_pair is not None:
            # Only the session the password change started is left, and listed.
            listed = client.get(
                "/me/sessions", headers=bearer(new_pair["access_token"])
            )
            assert listed.status_code == 200
            assert [s["current"] for s in listed.get_json()] == [True], label
