"""The second factor on a live server (issue 25): the production entry point with
four sync workers on PostgreSQL, with the Redis revocation store and with the
database store, each request on its own connection so requests spread over the
workers (gunicorn's access log names the worker, `%(p)s`, of each).

What makes a code, a recovery code and an `mfa_token` single-use is in the
database every worker shares: a code used through one worker is refused through
every other, and requests side by side on several workers get one login between
them, ROUNDS rounds each in one run; wrong codes side by side get no more tries
than MFA_TOKEN_MAX_FAILURES.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import RACE_ROUNDS, at_once
from tests.mfa import code, wrong_code
from tests.servers import (
    NO_CONTROL_SOCKET,
    PASSWORD,
    Reply,
    booted_workers,
    live_server,
    production_env,
    register,
    request,
)
from tests.services import postgres_database, redis_namespace

WORKERS = 4
ROUNDS = RACE_ROUNDS
THREADS = 5
MAX_FAILURES = 5  # MFA_TOKEN_MAX_FAILURES, the default
LOST = {"invalid_code", "invalid_mfa_token"}


@dataclass
class Server:
    base: str
    log: Path  # gunicorn's own log: the booted workers
    access: Path  # one line per request: "<pid> status request-line"

    def workers(self) -> set[str]:
        return booted_workers(self.log)

    def offset(self) -> int:
        return self.access.stat().st_size if self.access.exists() else 0

    def pids(self, offset: int, path: str) -> list[str]:
        """The workers that answered POST `path` in the lines after `offset`."""
        with self.access.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        messages = [json.loads(line)["message"] for line in lines if line.strip()]
        return [
            m.split()[0].strip("<>")
            for m in messages
            if m.split()[2:4] == ["POST", path]
        ]


@contextmanager
def workers_on_postgresql(
    folder: Path, store: str, **settings: str
) -> Iterator[Server]:
    """A production server: four workers on a new PostgreSQL database and the
    `store` revocation store ("redis" or "database-postgresql"), with `settings`
    on top of production_env's."""
    log, access = folder / "server.log", folder / "access.log"
    args = [
        *NO_CONTROL_SOCKET,
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(p)s %(s)s %(r)s",
    ]
    with postgres_database() as database_url:
        env = production_env(database_url, WORKERS, **settings)
        if store == "redis":
            with redis_namespace() as (url, prefix, _client):
                env.update(
                    BLOCKLIST_BACKEND="redis", REDIS_URL=url, REDIS_KEY_PREFIX=prefix
                )
                with live_server(env, log, workers=WORKERS, args=args) as base:
                    yield Server(base, log, access)
        else:
            env["BLOCKLIST_BACKEND"] = "database"
            with live_server(env, log, workers=WORKERS, args=args) as base:
                yield Server(base, log, access)


@pytest.fixture(scope="module", params=["redis", "database-postgresql"])
def server(request, tmp_path_factory) -> Iterator[Server]:
    """A production server: four workers on PostgreSQL and a shared revocation
    store, for every test of the module (each test has its own users)."""
    folder = tmp_path_factory.mktemp(f"mfa-{request.param}")
    with workers_on_postgresql(folder, request.param) as server:
        yield server


def post(base: str, path: str, body: dict, token: str | None = None) -> Reply:
    return request(base, "POST", path, body=body, token=token)


def enrolled(base: str, username: str) -> tuple[str, list[str]]:
    """A new account with TOTP on (the previous step's code spent) and no
    session: its secret and recovery codes."""
    register(base, username)
    login = post(base, "/login", {"username": username, "password": PASSWORD})
    assert login.status == 200, login.body
    token = login.body["access_token"]
    started = post(base, "/me/mfa/totp", {}, token)
    assert started.status == 201, started.body
    secret = started.body["secret"]
    confirmed = post(base, "/me/mfa/totp/confirm", {"code": code(secret, 1)}, token)
    assert confirmed.status == 200, confirmed.body
    assert post(base, "/logout", {}, token).status == 200
    return secret, confirmed.body["recovery_codes"]


def waiting(base: str, username: str) -> str:
    """A right password's answer: the mfa_token."""
    reply = post(base, "/login", {"username": username, "password": PASSWORD})
    assert (reply.status, reply.error) == (401, "mfa_required"), reply.body
    return reply.body["mfa_token"]


def side_by_side(
    base: str, bodies: list[dict], path: str = "/login/mfa"
) -> list[Reply]:
    """POST `path` with each body at once, a thread and a connection each."""
    return at_once([partial(post, base, path, body) for body in bodies])


def one_login(replies: list[Reply], label: str) -> dict:
    """Exactly one token pair; every other reply a loser's 401: the pair."""
    won = [reply.body for reply in replies if reply.status == 200]
    assert len(won) == 1, (label, [(r.status, r.body) for r in replies])
    lost = [(r.status, r.error) for r in replies if r.status != 200]
    assert all(s == 401 and e in LOST for s, e in lost), (label, lost)
    return won[0]


def new_codes(base: str, tokens: dict) -> list[str]:
    """A new set of recovery codes with the winner's fresh token; then log out."""
    renewed = post(base, "/me/mfa/recovery-codes", {}, tokens["access_token"])
    assert renewed.status == 200, renewed.body
    assert post(base, "/logout", {}, tokens["access_token"]).status == 200
    return renewed.body["recovery_codes"]


def test_a_code_used_through_one_worker_is_refused_by_every_worker(server):
    secret, _ = enrolled(server.base, "alice")
    used = code(secret)
    first = post(
        server.base,
        "/login/mfa",
        {"mfa_token": waiting(server.base, "alice"), "code": used},
    )
    assert first.status == 200, first.body
    offset = server.offset()

    served: set[str] = set()
    for round_number in range(ROUNDS):
        tokens = [waiting(server.base, "alice") for _ in range(WORKERS)]
        replies = side_by_side(
            server.base, [{"mfa_token": t, "code": used} for t in tokens]
        )
        for reply in replies:
            assert (reply.status, reply.error) == (401, "invalid_code"), (
                round_number,
                reply.body,
            )
        served = set(wait_for_pids(server, offset, len(tokens) * (round_number + 1)))
        if served >= server.workers():
            break
    assert served == server.workers(), (served, server.workers())


def wait_for_pids(
    server: Server, offset: int, expected: int, path: str = "/login/mfa"
) -> list[str]:
    """The workers of the POST `path` answers after `offset`, once `expected` of
    them are logged (each worker writes its line after answering)."""
    deadline = time.monotonic() + 5.0
    while True:
        pids = server.pids(offset, path)
        if len(pids) >= expected or time.monotonic() > deadline:
            assert len(pids) == expected, (pids, expected)
            return pids
        time.sleep(0.05)


def test_an_mfa_token_is_single_use_across_workers(server):
    """Every thread has a good recovery code of its own: only the waiting login's
    single use stands between them and as many sessions."""
    _, codes = enrolled(server.base, "bob")
    offset = server.offset()
    for round_number in range(ROUNDS):
        token = waiting(server.base, "bob")
        replies = side_by_side(
            server.base,
            [{"mfa_token": token, "recovery_code": c} for c in codes[:THREADS]],
        )

        winner = one_login(replies, f"round {round_number}")
        assert {r.error for r in replies if r.status != 200} == {"invalid_mfa_token"}
        codes = new_codes(server.base, winner)
    assert len(set(server.pids(offset, "/login/mfa"))) > 1


def test_one_recovery_code_logs_in_once_across_workers(server):
    _, codes = enrolled(server.base, "carol")
    offset = server.offset()
    for round_number in range(ROUNDS):
        tokens = [waiting(server.base, "carol") for _ in range(THREADS)]
        recovery_code = codes[round_number % len(codes)]
        replies = side_by_side(
            server.base,
            [{"mfa_token": t, "recovery_code": recovery_code} for t in tokens],
        )

        winner = one_login(replies, f"round {round_number}")
        assert {r.error for r in replies if r.status != 200} == {"invalid_code"}
        status = request(server.base, "GET", "/me/mfa", token=winner["access_token"])
        assert status.body == {
            "totp": True,
            "recovery_codes_left": 9 - round_number % 10,
        }
        if round_number % len(codes) == len(codes) - 1:
            codes = new_codes(server.base, winner)
        else:
            assert (
                post(server.base, "/logout", {}, winner["access_token"]).status == 200
            )
    assert len(set(server.pids(offset, "/login/mfa"))) > 1


def test_wrong_codes_across_workers_kill_the_waiting_login(server):
    secret, _ = enrolled(server.base, "dave")
    offset = server.offset()
    threads = MAX_FAILURES + 3
    for round_number in range(ROUNDS):
        token = waiting(server.base, "dave")
        replies = side_by_side(
            server.base, [{"mfa_token": token, "code": wrong_code(secret)}] * threads
        )

        label = (round_number, [(r.status, r.error) for r in replies])
        assert {r.status for r in replies} == {401}, label
        errors = [r.error for r in replies]
        assert errors.count("invalid_code") == MAX_FAILURES, label
        assert errors.count("invalid_mfa_token") == threads - MAX_FAILURES, label
        late = post(
            server.base, "/login/mfa", {"mfa_token": token, "code": code(secret)}
        )
        assert (late.status, late.error) == (401, "invalid_mfa_token"), label
    assert len(set(server.pids(offset, "/login/mfa"))) > 1
