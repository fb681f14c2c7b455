"""Revocations hold across real gunicorn workers and across a server restart.

Each test runs the production entry point (`gunicorn "app:create_app()"`, four
sync workers, APP_ENV=production) as a subprocess on loopback, on one shared
revocation store: the database backend on SQLite and on PostgreSQL, and Redis.
It logs out, replays the revoked access and refresh tokens from several threads
(one connection per request, so the requests spread over the workers) until the
access log shows that every worker has refused at least one, then restarts the
server on the same revocation store and replays again.
"""

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests import servers
from tests.helpers import MFA_KEY
from tests.servers import HOST, Reply, booted_workers, free_port, migrate, request
from tests.services import postgres_database, redis_namespace

WORKERS = 4
THREADS = 8
BATCH = 40  # replays per batch, half GET /me, half POST /refresh
MAX_REPLAYS = 400  # per phase: stop once every worker was seen, at the latest here
REPLAY_DEADLINE = 30.0  # seconds, same phase
FIRST_REPLAYS = 40  # at least, before the restart
RESTART_REPLAYS = 40  # at least, after it
START_DEADLINE = 20.0
BLOCKLISTS = ["database-sqlite", "database-postgresql", "redis"]

ACCESS_LINE = re.compile(r"^<(\d+)> (\d{3}) (\S+) (\S+)")


def server_env(database_url: str, backend: str, redis=None) -> dict:
    """Every setting explicit: a developer's .env cannot change what is tested."""
    url, prefix = redis or ("", "stores-api:")
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "TRUSTED_HOSTS": HOST,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "BLOCKLIST_BACKEND": backend,
        "REDIS_URL": url,
        "REDIS_KEY_PREFIX": prefix,
        "JWT_ACCESS_TOKEN_EXPIRES": "900",
        "JWT_REFRESH_TOKEN_EXPIRES": "2592000",
        "REFRESH_REUSE_GRACE_SECONDS": "10",
        # Hundreds of requests from one address: keep a future limiter out of it.
        "RATELIMIT_ENABLED": "false",
    }


@dataclass
class Server:
    """A running gunicorn: its port, logs and booted worker pids."""

    port: int
    process: subprocess.Popen
    access_log: Path
    error_log: Path
    workers: set[str] = field(default_factory=set)

    @property
    def base(self) -> str:
        return servers.base_url(self.port)

    def log_tail(self) -> str:
        return self.error_log.read_text(errors="replace")[-3000:]

    def access_lines(self, offset: int) -> list[tuple[str, str, str, str]]:
        """(pid, status, method, path) of every access log line after `offset`."""
        with self.access_log.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        # gunicorn.conf.py writes gunicorn's logs as JSON: the line is the message.
        messages = [json.loads(line)["message"] for line in lines if line.strip()]
        return [m.groups() for m in map(ACCESS_LINE.match, messages) if m]

    def access_offset(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0


def _wait_until_ready(server: Server, workers: int) -> None:
    """Poll until the API answers and all workers have booted (bounded)."""
    answered = False

    def ready() -> bool:
        nonlocal answered
        if not answered:
            answered = request(server.base, "GET", "/openapi.json").status == 200
        server.workers = booted_workers(server.error_log)
        return answered and len(server.workers) >= workers

    servers.wait_until_ready(
        server.process,
        ready,
        lambda: (
            f"(answered={answered}, workers={sorted(server.workers)})\n"
            f"{server.log_tail()}"
        ),
        START_DEADLINE,
    )


@contextmanager
def gunicorn(
    env: dict, tmp_path: Path, name: str, workers: int = WORKERS
) -> Iterator[Server]:
    """Run gunicorn with `workers` sync workers on a free loopback port, its access
    log naming the worker of each request; always stop it."""
    port = free_port()
    access_log = tmp_path / f"{name}-access.log"
    error_log = tmp_path / f"{name}-stderr.log"
    args = [
        "--workers",
        str(workers),
        "--bind",
        f"{HOST}:{port}",
        "--access-logfile",
        str(access_log),
        "--access-logformat",
        "%(p)s %(s)s %(r)s",
    ]
    with servers.gunicorn(
        env, tmp_path / f"{name}-stdout.log", error_log, args=args
    ) as process:
        server = Server(port, process, access_log, error_log)
        _wait_until_ready(server, workers)
        yield server


@dataclass
class Replays:
    """What a round of replays of revoked tokens got back."""

    sent: int = 0
    accepted: int = 0
    outcomes: dict[tuple[int, str], int] = field(default_factory=dict)
    pids: set[str] = field(default_factory=set)

    def add(self, reply: Reply) -> None:
        self.sent += 1
        if reply.status < 400:
            self.accepted += 1
        error = (reply.body or {}).get("error", repr(reply.body)[:80])
        key = (reply.status, error)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


def _replay_batch(server: Server, tokens: dict, count: int) -> list[Reply]:
    """`count` replays, alternating GET /me and POST /refresh, from THREADS."""

    def one(i: int) -> Reply:
        if i % 2:
            return request(
                server.base, "POST", "/refresh", token=tokens["refresh_token"]
            )
        return request(server.base, "GET", "/me", token=tokens["access_token"])

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(one, range(count)))


def _logged_pids(server: Server, offset: int, expected: int) -> set[str]:
    """Worker pids that served the replays after `offset` (waits for the log)."""
    deadline = time.monotonic() + 5.0
    while True:
        lines = [
            line
            for line in server.access_lines(offset)
            if (line[2], line[3]) in (("GET", "/me"), ("POST", "/refresh"))
        ]
        if len(lines) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == expected, f"{len(lines)} replays logged, {expected} sent"
    return {pid for pid, *_ in lines}


def replay(server: Server, tokens: dict, minimum: int) -> Replays:
    """Replay revoked tokens in bounded batches: at least `minimum` of them, and
    on until every worker has refused one (at most MAX_REPLAYS, REPLAY_DEADLINE).
    """
    result = Replays()
    offset = server.access_offset()
    deadline = time.monotonic() + REPLAY_DEADLINE
    while result.sent < MAX_REPLAYS and time.monotonic() < deadline:
        count = min(BATCH, MAX_REPLAYS - result.sent)
        for reply in _replay_batch(server, tokens, count):
            result.add(reply)
        result.pids = _logged_pids(server, offset, result.sent)
        if result.sent >= minimum and result.pids >= server.workers:
            break
    return result


@contextmanager
def blocklist_env(blocklist: str, tmp_path: Path) -> Iterator[tuple[dict, object]]:
    """(server environment, a way to count stored revocations) for one revocation
    store."""
    sqlite_url = f"sqlite:///{tmp_path / 'app.db'}"
    if blocklist == "redis":
        with redis_namespace() as (url, prefix, client):
            yield (
                server_env(sqlite_url, "redis", (url, prefix)),
                lambda: len(list(client.scan_iter(match=f"{prefix}blocklist:*"))),
            )
        return
    if blocklist == "database-sqlite":
        yield server_env(sqlite_url, "database"), lambda: _table_rows(sqlite_url)
        return
    with postgres_database() as url:
        yield server_env(url, "database"), lambda: _table_rows(url)


def _table_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT COUNT(*) FROM token_blocklist")
            ).scalar_one()
    finally:
        engine.dispose()


def _assert_all_refused(result: Replays, server: Server, where: str) -> None:
    """No replay accepted, every one a 401 token_revoked, and every worker seen."""
    figures = f"{where}: {result.sent} replays, outcomes {result.outcomes}"
    assert result.accepted == 0, figures
    assert result.outcomes == {(401, "token_revoked"): result.sent}, figures
    assert result.pids == server.workers, (
        f"{figures}; served by workers {sorted(result.pids)} "
        f"of {sorted(server.workers)}"
    )


def _figures(result: Replays) -> str:
    pids = " ".join(sorted(result.pids, key=int))
    return (
        f"{result.accepted}/{result.sent} accepted "
        f"across {len(result.pids)} workers (pids {pids})"
    )


@pytest.mark.parametrize(
    ("blocklist", "preload"),
    [(blocklist, False) for blocklist in BLOCKLISTS]
    # Workers forked from a master that built the app (GUNICORN_PRELOAD=1): each
    # must still open its own database connections.
    + [pytest.param("database-postgresql", True, id="database-postgresql-preload")],
)
def test_revoked_tokens_refused_by_every_worker_and_after_restart(
    blocklist, preload, tmp_path
):
    """Every gunicorn worker, and a restarted server, refuse logged-out tokens."""
    with blocklist_env(blocklist, tmp_path) as (env, stored_revocations):
        env["GUNICORN_PRELOAD"] = "1" if preload else "0"
        migrate(env)
        with gunicorn(env, tmp_path, "first") as server:
            _, tokens = servers.sign_up(server.base, "alice")
            me = request(server.base, "GET", "/me", token=tokens["access_token"])
            assert me.status == 200, me.body
            reply = request(
                server.base, "POST", "/logout", token=tokens["access_token"]
            )
            assert reply.status == 200, reply.body
            assert stored_revocations() > 0, "no revocation in the revocation store"

            before = replay(server, tokens, FIRST_REPLAYS)
            _assert_all_refused(before, server, "across workers")
            first_workers = set(server.workers)

        with gunicorn(env, tmp_path, "restarted") as server:
            assert not server.workers & first_workers, "not a fresh set of workers"
            after = replay(server, tokens, RESTART_REPLAYS)
            _assert_all_refused(after, server, "after restart")
            fresh = servers.login(server.base, "alice")
            me = request(server.base, "GET", "/me", token=fresh["access_token"])
            assert me.status == 200, me.body

    print(
        f"\n{blocklist}: replays {_figures(before)}; after restart {_figures(after)}; "
        "a fresh login after restart works (200)"
    )


@pytest.mark.parametrize("blocklist", BLOCKLISTS)
def test_sessions_are_the_same_on_every_worker_and_end_on_every_worker(
    blocklist, tmp_path
):
    """The session list is read from the database by whichever worker answers; a
    session ended on one worker (DELETE /me/sessions/{id}, or POST /revoke with
    one of its tokens) is refused by every worker."""
    with blocklist_env(blocklist, tmp_path) as (env, _stored):
        migrate(env)
        with gunicorn(env, tmp_path, "sessions") as server:
            _, current = servers.sign_up(server.base, "alice")
            phone = servers.login(server.base, "alice")
            laptop = servers.login(server.base, "alice")

            listings = _listings(server, current, 3 * WORKERS)
            assert len({tuple(ids) for ids in listings}) == 1, listings
            assert len(listings[0]) == 3

            phone_id = next(
                entry["id"]
                for entry in request(
                    server.base, "GET", "/me/sessions", token=phone["access_token"]
                ).body
                if entry["current"]
            )
            ended = request(
                server.base,
                "DELETE",
                f"/me/sessions/{phone_id}",
                token=current["access_token"],
            )
            assert ended.status == 200, ended.body
            _assert_all_refused(
                replay(server, phone, FIRST_REPLAYS), server, "ended session"
            )

            revoked = request(
                server.base, "POST", "/revoke", body={"token": laptop["refresh_token"]}
            )
            assert (revoked.status, revoked.body) == (
                200,
                {"message": "The token is revoked."},
            )
            _assert_all_refused(
                replay(server, laptop, FIRST_REPLAYS), server, "revoked session"
            )

            after = _listings(server, current, 2 * WORKERS)
            assert {len(ids) for ids in after} == {1}, after


def _listings(server: Server, tokens: dict, count: int) -> list[list[str]]:
    """GET /me/sessions `count` times from THREADS: the ids each answer listed."""

    def one(_: int) -> list[str]:
        reply = request(
            server.base, "GET", "/me/sessions", token=tokens["access_token"]
        )
        assert reply.status == 200, reply.body
        return [entry["id"] for entry in reply.body]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(one, range(count)))


def _warm_every_worker(server: Server, access_token: str) -> None:
    """GET /me until every worker has answered 200 for the token: each worker's
    user cache then holds the user (auth/user_cache.py)."""
    offset = server.access_offset()
    sent = 0
    while sent < MAX_REPLAYS:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            replies = list(
                pool.map(
                    lambda _: request(server.base, "GET", "/me", token=access_token),
                    range(BATCH),
                )
            )
        assert {reply.status for reply in replies} == {200}
        sent += BATCH
        lines = [
            pid
            for pid, status, method, path in server.access_lines(offset)
            if (method, path, status) == ("GET", "/me", "200")
        ]
        if set(lines) >= server.workers:
            return
    pytest.fail(f"{sent} requests reached only workers {sorted(set(lines))}")


@pytest.mark.parametrize("blocklist", ["database-sqlite", "redis"])
def test_a_user_deleted_through_the_api_is_refused_at_once_by_every_worker(
    blocklist, tmp_path
):
    """Every worker has the user in its user cache (for up to 2 s); the deletion
    revokes the user's tokens in the revocation store first, so none of them waits
    for it."""
    with blocklist_env(blocklist, tmp_path) as (env, _):
        migrate(env)
        with gunicorn(env, tmp_path, "deletion") as server:
            user, deleting = servers.sign_up(server.base, "alice")
            other = servers.login(server.base, "alice")
            _warm_every_worker(server, other["access_token"])

            deleted = request(
                server.base,
                "DELETE",
                f"/user/{user['id']}",
                token=deleting["access_token"],
            )
            assert deleted.status == 200, deleted.body

            refused = replay(server, other, FIRST_REPLAYS)
            _assert_all_refused(refused, server, "after the deletion")
