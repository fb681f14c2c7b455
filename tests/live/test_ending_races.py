"""Ending every session beats a refresh in flight, on a live server (issue 22, #1).

As the attack found it: the production entry point with four sync workers on
PostgreSQL, a thief refreshing a stolen refresh token in a loop (each request on
its own connection, so the requests spread over the workers) while the owner
logs out everywhere or changes the password through another worker. After that
answer no token the thief ever got is accepted, the thief's loop is refused with
401 token_revoked, and the owner's list of sessions holds only what the owner
started since. ROUNDS rounds per ending and revocation store, in one run.
"""

import threading
from collections.abc import Iterator

import pytest

from tests.helpers import NEW_PASSWORD, PASSWORD, RACE_ROUNDS
from tests.servers import live_server, production_env, register, request
from tests.services import postgres_database, redis_namespace

ROUNDS = RACE_ROUNDS
WORKERS = 4
HEAD_START = 2  # refreshes the thief makes before the owner acts
AFTER = 100  # refreshes the thief tries at most once the owner has an answer


@pytest.fixture(params=["redis", "database-postgresql"])
def server(request, tmp_path) -> Iterator[str]:
    """A production server with four workers on PostgreSQL and each shared revocation
    store."""
    with postgres_database() as database_url:
        env = production_env(database_url, WORKERS)
        if request.param == "redis":
            with redis_namespace() as (url, prefix, _client):
                env.update(
                    BLOCKLIST_BACKEND="redis", REDIS_URL=url, REDIS_KEY_PREFIX=prefix
                )
                with live_server(env, tmp_path / "server.log", workers=WORKERS) as base:
                    yield base
        else:
            env["BLOCKLIST_BACKEND"] = "database"
            with live_server(env, tmp_path / "server.log", workers=WORKERS) as base:
                yield base


class Thief(threading.Thread):
    """Refreshes one chain in a loop until refused; keeps every pair it got."""

    def __init__(self, base: str, tokens: dict) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.pairs = [tokens]
        self.refusal: tuple[int, str | None] | None = None
        self.head_start = threading.Event()
        self.owner_answered = threading.Event()

    def run(self) -> None:
        after = 0
        while after < AFTER:
            reply = request(
                self.base, "POST", "/refresh", token=self.pairs[-1]["refresh_token"]
            )
            if reply.status != 200:
                self.refusal = (reply.status, reply.error)
                return
            self.pairs.append(reply.body)
            if len(self.pairs) > HEAD_START:
                self.head_start.set()
            if self.owner_answered.is_set():
                after += 1


def log_in(base: str, username: str, password: str = PASSWORD) -> dict:
    reply = request(
        base, "POST", "/login", body={"username": username, "password": password}
    )
    assert reply.status == 200, reply.body
    return reply.body


def end_everything(base: str, ending: str, owner: dict) -> dict:
    """The owner's ending; the session the owner holds afterwards."""
    if ending == "logout-all":
        reply = request(base, "POST", "/logout/all", token=owner["access_token"])
        assert reply.status == 200, reply.body
        return None
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    reply = request(
        base, "PUT", "/user/password", token=owner["access_token"], body=body
    )
    assert reply.status == 200, reply.body
    return reply.body


@pytest.mark.parametrize("ending", ["logout-all", "password-change"])
def test_no_refresh_in_flight_survives_the_end_of_every_session(server, ending):
    for round_number in range(ROUNDS):
        username = f"owner{round_number}"
        register(server, username)
        thief = Thief(server, log_in(server, username))
        owner = log_in(server, username)
        thief.start()
        assert thief.head_start.wait(20), thief.refusal

        kept = end_everything(server, ending, owner)
        thief.owner_answered.set()
        thief.join(60)

        label = f"round {round_number}: {len(thief.pairs)} pairs"
        assert not thief.is_alive(), label
        assert thief.refusal == (401, "token_revoked"), label
        for pair in thief.pairs:
            me = request(server, "GET", "/me", token=pair["access_token"])
            assert (me.status, me.error) == (401, "token_revoked"), label
            again = request(server, "POST", "/refresh", token=pair["refresh_token"])
            assert (again.status, again.error) == (401, "token_revoked"), label
        held = kept or log_in(
            server, username, NEW_PASSWORD if ending == "password-change" else PASSWORD
        )
        listed = request(server, "GET", "/me/sessions", token=held["access_token"])
        assert listed.status == 200, listed.body
        assert [entry["current"] for entry in listed.body] == [True], label
