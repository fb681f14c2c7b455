"""Step-up inside the session on a live server (issue 24): the production entry
point with four workers on PostgreSQL and Redis, one connection per request so
requests spread over the workers.

Any number of step-ups keep one session; the challenge and the step-up's fresh
token hold on every worker; a refresh racing a step-up (another tab) leaves one
chain, ROUNDS times in one run.
"""

import re
import threading
from collections.abc import Iterator

import pytest

from tests.helpers import PASSWORD, RACE_ROUNDS
from tests.servers import live_server, production_env, register, request
from tests.services import postgres_database, redis_namespace

WORKERS = 4
ROUNDS = RACE_ROUNDS
STEP_UPS = 5
CHALLENGE = re.compile(r'error="insufficient_user_authentication".*max_age="900"')


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    with postgres_database() as database_url, redis_namespace() as (url, prefix, _):
        env = production_env(
            database_url,
            WORKERS,
            BLOCKLIST_BACKEND="redis",
            REDIS_URL=url,
            REDIS_KEY_PREFIX=prefix,
        )
        with live_server(env, tmp_path / "server.log", workers=WORKERS) as base:
            yield base


def log_in(base: str, username: str) -> dict:
    body = {"username": username, "password": PASSWORD}
    reply = request(base, "POST", "/login", body=body)
    assert reply.status == 200, reply.body
    return reply.body


def step_up(base: str, access_token: str) -> dict:
    reply = request(
        base,
        "POST",
        "/reauthenticate",
        token=access_token,
        body={"password": PASSWORD},
    )
    assert reply.status == 200, reply.body
    return reply.body


def session_count(base: str, access_token: str) -> int:
    reply = request(base, "GET", "/me/sessions", token=access_token)
    assert reply.status == 200, reply.body
    return len(reply.body)


def test_step_ups_keep_one_session_on_every_worker(server):
    register(server, "alice")
    pair = log_in(server, "alice")
    store = request(
        server, "POST", "/store", token=pair["access_token"], body={"name": "Shop"}
    ).body
    item = {"name": "Chair", "price": 1.5, "store_id": store["id"]}

    for round_number in range(STEP_UPS):
        refreshed = request(server, "POST", "/refresh", token=pair["refresh_token"])
        assert refreshed.status == 200, refreshed.body
        stale = refreshed.body["access_token"]
        for _ in range(WORKERS):
            refused = request(server, "POST", "/item", token=stale, body=item)
            assert (refused.status, refused.error) == (401, "fresh_token_required")
            assert CHALLENGE.search(refused.headers["www-authenticate"])

        pair = step_up(server, stale)
        for _ in range(WORKERS):
            created = request(
                server, "POST", "/item", token=pair["access_token"], body=item
            )
            assert created.status == 201, (round_number, created.body)
        assert session_count(server, pair["access_token"]) == 1, round_number


def test_a_refresh_racing_a_step_up_leaves_one_chain(server):
    register(server, "bob")
    pair = log_in(server, "bob")
    for round_number in range(ROUNDS):
        barrier = threading.Barrier(2)
        raced: list = []

        def refresh(token: str, barrier: threading.Barrier, answers: list) -> None:
            barrier.wait()
            answers.append(request(server, "POST", "/refresh", token=token))

        racer = threading.Thread(
            target=refresh, args=(pair["refresh_token"], barrier, raced)
        )
        racer.start()
        barrier.wait()
        stepped = step_up(server, pair["access_token"])
        racer.join(30)

        assert raced[0].status == 200, (round_number, raced[0].body)
        # The step-up's refresh token goes on; the session is listed once.
        after = request(server, "POST", "/refresh", token=stepped["refresh_token"])
        assert after.status == 200, (round_number, after.body)
        pair = after.body
        assert session_count(server, pair["access_token"]) == 1, round_number
