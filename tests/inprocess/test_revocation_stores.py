"""The shared revocation stores (database on SQLite and PostgreSQL, Redis):
they survive restarts, expire what they hold, and fail closed.
"""

import os
import threading
import time

import pytest
from flask_jwt_extended import decode_token

from app import create_app
from blocklist import DatabaseBlocklist, RedisBlocklist, Rotation
from core import db
from tests.helpers import AuthActions, assert_error, bearer
from tests.services import redis_namespace

REVOKED = "The token has been revoked."


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


class TestAcrossRestarts:
    @pytest.fixture
    def app_config(self, app_config, shared_backend):
        return {**app_config, **shared_backend}

    def test_revocations_survive_a_restart(self, app_config, auth, client):
        """A new process on the same revocation store still refuses what was revoked."""
        _, tokens = auth.user("alice")
        _, other = auth.user("bob")
        logout = client.post("/logout", headers=bearer(tokens["access_token"]))
        assert logout.status_code == 200
        logout_all = client.post("/logout/all", headers=bearer(other["access_token"]))
        assert logout_all.status_code == 200

        restarted = create_app(app_config)
        try:
            again = restarted.test_client()
            for token in (tokens["access_token"], other["access_token"]):
                response = again.get("/me", headers=bearer(token))
                assert_error(response, 401, "token_revoked", REVOKED)
            for token in (tokens["refresh_token"], other["refresh_token"]):
                response = again.post("/refresh", headers=bearer(token))
                assert_error(response, 401, "token_revoked", REVOKED)
        finally:
            _dispose(restarted)

    def test_a_rotation_on_one_instance_is_known_to_another(self, app_config, auth):
        """Reuse detection works when the replay reaches another instance."""
        _, tokens = auth.user("alice")
        assert auth.refresh(tokens["refresh_token"]).status_code == 200

        other = create_app({**app_config, "REFRESH_REUSE_GRACE_SECONDS": 0})
        try:
            replay = other.test_client().post(
                "/refresh", headers=bearer(tokens["refresh_token"])
            )
            assert_error(replay, 401, "token_revoked", REVOKED)
        finally:
            _dispose(other)


def test_the_memory_blocklist_is_per_process_by_design(app_config, auth, client):
    """What the README warns about: another process does not see revocations."""
    _, tokens = auth.user("alice")
    client.post("/logout", headers=bearer(tokens["access_token"]))
    assert client.get("/me", headers=bearer(tokens["access_token"])).status_code == 401

    other = create_app(app_config)
    try:
        response = other.test_client().get(
            "/me", headers=bearer(tokens["access_token"])
        )
        assert response.status_code == 200
    finally:
        _dispose(other)


# --- fail closed ----------------------------------------------------------------


@pytest.fixture
def unreachable_redis(app_config):
    """Redis configured on a port where nothing listens."""
    return {
        **app_config,
        "BLOCKLIST_BACKEND": "redis",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "REDIS_SOCKET_TIMEOUT": 0.5,
    }


def test_an_unreachable_redis_refuses_protected_requests_with_503(unreachable_redis):
    app = create_app(unreachable_redis)
    try:
        with app.app_context():
            db.create_all()
        client = app.test_client()
        _, tokens = AuthActions(app, client).user()

        for response in (
            client.get("/me", headers=bearer(tokens["access_token"])),
            client.get("/store", headers=bearer(tokens["access_token"])),
            client.post("/refresh", headers=bearer(tokens["refresh_token"])),
            client.post("/logout", headers=bearer(tokens["access_token"])),
            # Never "200, revoked" when the revocation could not be stored.
            client.post("/revoke", data={"token": tokens["refresh_token"]}),
            client.get("/me/sessions", headers=bearer(tokens["access_token"])),
        ):
            assert_error(
                response,
                503,
                "service_unavailable",
                "The revocation store is unavailable.",
            )
    finally:
        _dispose(app)


@pytest.fixture
def database_blocklist(app_config, database_backend):
    """The app with the database revocation store (SQLite, PostgreSQL)."""
    return {**app_config, **database_backend}


def test_a_broken_database_blocklist_refuses_with_503(database_blocklist):
    app = create_app(database_blocklist)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    _, tokens = AuthActions(app, client).user()
    with app.app_context():
        db.session.execute(db.text("DROP TABLE token_blocklist"))
        db.session.commit()

    response = client.get("/me", headers=bearer(tokens["access_token"]))

    assert_error(response, 503, "service_unavailable")
    assert response.get_json()["message"] == "The revocation store is unavailable."
    _dispose(app)


def test_the_request_check_answers_as_a_blocklist_transaction_does(database_blocklist):
    """The per-request check runs on the driver's cursor with the statement
    compiled per dialect; its answers are those of the SQLAlchemy statement."""
    app = create_app(database_blocklist)
    try:
        with app.app_context():
            db.create_all()
            blocklist = app.extensions["blocklist"]
            now = time.time()
            blocklist.revoke("revoked-jti", now + 100)
            blocklist.revoke_family("revoked-family", now + 100)
            blocklist.revoke_user("7", now - 5, now + 100)
            blocklist.revoke("expired-jti", now - 1)
            questions = [
                (jti, family, user)
                for jti in ("revoked-jti", "expired-jti", "other-jti")
                for family in ("revoked-family", "other-family", None)
                for user in ("7", "8")
            ]
            through_transactions = [blocklist._lookup(*q) for q in questions]
            with db.engine.connect() as connection:
                blocklist._reader = lambda: connection
                through_driver = [blocklist._lookup(*q) for q in questions]

        assert through_driver == through_transactions
        assert through_driver[0] == (True, True, pytest.approx(now - 5))
        assert (False, False, None) in through_driver
    finally:
        _dispose(app)


# --- expiry ---------------------------------------------------------------------


@pytest.mark.live
def test_redis_keys_expire_with_the_tokens_remaining_lifetime():
    with redis_namespace() as (_url, prefix, client):
        blocklist = RedisBlocklist(client, prefix=prefix)
        now = time.time()
        blocklist.revoke("short", now + 100)
        blocklist.revoke_family("family", now + 5000)
        blocklist.revoke_user("7", now, now + 3000)
        assert blocklist.mark_rotated("refresh", Rotation(now, "next"), now + 200)

        assert 95 <= client.ttl(f"{prefix}jti:short") <= 100
        assert 4995 <= client.ttl(f"{prefix}family:family") <= 5000
        assert 2995 <= client.ttl(f"{prefix}user:7") <= 3000
        assert 195 <= client.ttl(f"{prefix}rotation:refresh") <= 200
        # Revoking again never shortens an entry; a later user mark wins.
        blocklist.revoke("short", now + 50)
        assert client.ttl(f"{prefix}jti:short") >= 95
        blocklist.revoke_user("7", now + 1, now + 3001)
        blocklist.revoke_user("7", now - 1, now + 10)
        assert float(client.get(f"{prefix}user:7")) == pytest.approx(now + 1)
        assert client.ttl(f"{prefix}user:7") >= 2995


@pytest.mark.live
def test_a_revoked_access_token_expires_from_redis_with_the_token(app_config, auth):
    """The key lives as long as the token has left, not a fixed access lifetime."""
    with redis_namespace() as (url, prefix, client):
        config = {
            **app_config,
            "BLOCKLIST_BACKEND": "redis",
            "REDIS_URL": url,
            "REDIS_KEY_PREFIX": prefix,
        }
        app = create_app(config)
        try:
            with app.app_context():
                db.create_all()
            http = app.test_client()
            _, tokens = AuthActions(app, http).user()
            with app.app_context():
                claims = decode_token(tokens["access_token"])
            http.post("/logout", headers=bearer(tokens["access_token"]))

            ttl = client.ttl(f"{prefix}blocklist:jti:{claims['jti']}")
            # The token's remaining lifetime, plus the 5-second decode leeway.
            remaining = claims["exp"] - time.time()
            assert remaining <= ttl <= remaining + 5 + 1
        finally:
            _dispose(app)


@pytest.mark.live
def test_each_thread_and_each_forked_worker_has_its_own_redis_connection():
    """The per-request lookup keeps a connection per thread, made in the process
    that uses it: a forked worker never reads from its parent's socket."""
    with redis_namespace() as (_url, prefix, client):
        blocklist = RedisBlocklist(client, prefix=prefix)
        mine = blocklist._read("CLIENT", "ID")
        # Kept from one command to the next.
        assert blocklist._read("CLIENT", "ID") == mine
        in_thread: list[int] = []
        thread = threading.Thread(
            target=lambda: in_thread.append(blocklist._read("CLIENT", "ID"))
        )
        thread.start()
        thread.join()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its connection's id, and nothing else
            try:
                os.write(write_end, str(blocklist._read("CLIENT", "ID")).encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        in_child = int(os.read(read_end, 64))
        os.close(read_end)
        os.close(write_end)

        assert len({mine, in_thread[0], in_child}) == 3
        assert blocklist._read("CLIENT", "ID") == mine


def test_the_database_blocklist_purges_expired_rows(app):
    clock = FakeClock()
    with app.app_context():
        blocklist = DatabaseBlocklist(lambda: db.engine, clock=clock, purge_every=1000)
        for i in range(10):
            blocklist.revoke(f"old-{i}", clock.now + 10)
        blocklist.revoke_family("family", clock.now + 100)
        blocklist.revoke_user("1", clock.now, clock.now + 100)
        blocklist.mark_rotated("r", Rotation(clock.now, "n"), clock.now + 10)
        clock.now += 11

        assert not blocklist.is_token_revoked({"jti": "old-0", "sub": "2", "iat": 0.0})
        assert blocklist.get_rotation("r") is None
        assert blocklist.purge_expired() == 11
        assert db.session.scalar(db.text("SELECT count(*) FROM token_blocklist")) == 2


def test_the_database_blocklist_purges_opportunistically(app):
    clock = FakeClock()
    with app.app_context():
        blocklist = DatabaseBlocklist(lambda: db.engine, clock=clock, purge_every=5)
        for i in range(4):
            blocklist.revoke(f"old-{i}", clock.now + 1)
        clock.now += 2
        blocklist.revoke("live", clock.now + 100)  # the fifth write purges

        assert db.session.scalar(db.text("SELECT count(*) FROM token_blocklist")) == 1


def test_the_purge_command(database_blocklist):
    app = create_app(database_blocklist)
    with app.app_context():
        db.create_all()
        blocklist = app.extensions["blocklist"]
        blocklist.revoke("expired", time.time() - 10)
        blocklist.revoke("live", time.time() + 100)

    result = app.test_cli_runner().invoke(args=["blocklist", "purge"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Purged 1 expired entries.",
        "Purged 0 expired sessions.",
        "Purged 0 expired API tokens.",
    ]
    with app.app_context():
        assert blocklist.is_token_revoked({"jti": "live", "sub": "1", "iat": 0.0})
    _dispose(app)
