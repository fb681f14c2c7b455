"""Passkeys on a live server (issue 26): the production entry point with four
sync workers on PostgreSQL, with the Redis revocation store and with the
database store, each request on its own connection so requests spread over the
workers (gunicorn's access log names the worker, `%(p)s`, of each).

A challenge is spent in the database every worker shares: an assertion that
logged in through one worker is refused by every other, and one assertion sent
side by side to several workers logs in once, ROUNDS rounds each in one run.
PUBLIC_URL is an IP address in production_env, which names no RP ID: the
relying party is set as a browser would reach the server, on localhost.
"""

from collections.abc import Iterator

import pytest

from tests.authenticator import SoftAuthenticator
from tests.helpers import RACE_ROUNDS, TOKEN_KEYS
from tests.live.test_mfa_workers import (
    WORKERS,
    Server,
    post,
    side_by_side,
    wait_for_pids,
    workers_on_postgresql,
)
from tests.passkeys import ORIGIN
from tests.servers import login, register

ROUNDS = RACE_ROUNDS
THREADS = 5
LOGIN = "/login/passkey"
RELYING_PARTY = {"WEBAUTHN_RP_ID": "localhost", "WEBAUTHN_ORIGINS": ORIGIN}


@pytest.fixture(scope="module", params=["redis", "database-postgresql"])
def server(request, tmp_path_factory) -> Iterator[Server]:
    """Four workers with passkeys on, for every test of the module (each test
    has its own users)."""
    folder = tmp_path_factory.mktemp(f"passkeys-{request.param}")
    with workers_on_postgresql(folder, request.param, **RELYING_PARTY) as server:
        yield server


def passkey_user(base: str, username: str) -> SoftAuthenticator:
    """A new account with one passkey, registered in a password login of its own
    (ended after): the device holding it."""
    register(base, username)
    token = login(base, username)["access_token"]
    options = post(base, "/me/passkeys/options", {}, token)
    assert options.status == 200, options.body
    device = SoftAuthenticator(origin=ORIGIN)
    body = {"name": "laptop", "credential": device.create(options.body)}
    created = post(base, "/me/passkeys", body, token)
    assert created.status == 201, created.body
    assert post(base, "/logout", {}, token).status == 200
    return device


def assertion(base: str, device: SoftAuthenticator) -> dict:
    """The device's answer to new login options."""
    options = post(base, "/login/passkey/options", {})
    assert options.status == 200, options.body
    return device.get(options.body)


def test_an_assertion_that_logged_in_is_refused_by_every_worker(server):
    device = passkey_user(server.base, "alice")
    refused_by: set[str] = set()
    for round_number in range(ROUNDS):
        credential = assertion(server.base, device)
        offset = server.offset()
        first = post(server.base, LOGIN, {"credential": credential})
        assert first.status == 200, first.body
        (accepted_by,) = wait_for_pids(server, offset, 1, LOGIN)
        offset = server.offset()

        replies = side_by_side(
            server.base, [{"credential": credential}] * WORKERS, LOGIN
        )

        label = (round_number, accepted_by, [(r.status, r.body) for r in replies])
        assert all(
            (r.status, r.error) == (401, "challenge_expired") for r in replies
        ), label
        refused_by |= set(wait_for_pids(server, offset, WORKERS, LOGIN))
    assert refused_by == server.workers(), (refused_by, server.workers())


def test_one_assertion_side_by_side_on_several_workers_logs_in_once(server):
    device = passkey_user(server.base, "bob")
    offset = server.offset()
    for round_number in range(ROUNDS):
        credential = assertion(server.base, device)

        replies = side_by_side(
            server.base, [{"credential": credential}] * THREADS, LOGIN
        )

        label = (round_number, [(r.status, r.error) for r in replies])
        won = [r.body for r in replies if r.status == 200]
        assert len(won) == 1 and set(won[0]) == TOKEN_KEYS, label
        lost = {(r.status, r.error) for r in replies if r.status != 200}
        assert lost == {(401, "challenge_expired")}, label
    answered_by = wait_for_pids(server, offset, ROUNDS * THREADS, LOGIN)
    assert len(set(answered_by)) > 1, answered_by
