"""Deployment, live: the readiness probe through outages of the database and of
Redis, and the entrypoint (migrate, then gunicorn, then a graceful stop). The
probes' answers, gunicorn's settings, the Dockerfile and the compose file are
checked in process, in tests/inprocess/test_deploy.py.

Outages are real: a private redis-server on a spare port is stopped and started
again, and a throw-away PostgreSQL database refuses connections for a while.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from blocklist import RedisBlocklist, RevocationStoreUnavailable
from core import db
from models import StoreModel
from tests import servers
from tests.helpers import MFA_KEY, AuthActions, assert_error, bearer
from tests.servers import BIN, REPO, base_url, free_port, request
from tests.services import POSTGRES_URL, postgres_database


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class PrivateRedis:
    """A redis-server of the test's own, on a spare port, to stop and restart."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed; CI must run this test.")
            pytest.skip("redis-server is not installed.")
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(self._answers), "the private redis-server did not start"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


@pytest.fixture
def private_redis(tmp_path):
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    yield redis_server
    redis_server.stop()


def test_readyz_follows_redis_going_away_and_coming_back(app_config, private_redis):
    app = create_app(
        {
            **app_config,
            "BLOCKLIST_BACKEND": "redis",
            "REDIS_URL": private_redis.url,
            "REDIS_SOCKET_TIMEOUT": 0.5,
        }
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    _, tokens = AuthActions(app, client).user()
    try:
        assert client.get("/readyz").status_code == 200

        private_redis.stop()
        down = client.get("/readyz")
        body = assert_error(
            down, 503, "service_unavailable", "Not ready: blocklist unavailable."
        )
        assert body["errors"] == {"database": "ok", "blocklist": "unavailable"}
        # Fail closed meanwhile: a valid token is not accepted unchecked.
        refused = client.get("/me", headers=bearer(tokens["access_token"]))
        assert_error(refused, 503, "service_unavailable")
        assert client.get("/healthz").status_code == 200

        private_redis.start()
        assert wait_until(lambda: client.get("/readyz").status_code == 200)
        assert (
            client.get("/me", headers=bearer(tokens["access_token"])).status_code == 200
        )
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_redis_restart_between_two_requests_goes_unseen(app_config, private_redis):
    """The lookup's own connection breaks when Redis restarts; the next request
    sends its command again on a new connection (blocklist.RedisBlocklist._read)."""
    app = create_app(
        {**app_config, "BLOCKLIST_BACKEND": "redis", "REDIS_URL": private_redis.url}
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    headers = bearer(AuthActions(app, client).user()[1]["access_token"])
    try:
        assert client.get("/me", headers=headers).status_code == 200

        private_redis.stop()
        private_redis.start()
        response = client.get("/me", headers=headers)

        assert response.status_code == 200
        assert response.get_json()["username"] == "alice"
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_timed_out_lookup_is_never_answered_by_its_late_reply(private_redis):
    """After a timeout the connection is closed: the reply that comes late must not
    be read as the answer to the next lookup."""
    client = redis.Redis.from_url(
        private_redis.url, socket_timeout=0.3, socket_connect_timeout=0.3
    )
    admin = redis.Redis.from_url(private_redis.url)
    try:
        blocklist = RedisBlocklist(client, prefix="timeout:")
        now = time.time()
        blocklist.revoke("revoked", now + 100)

        def revoked(jti: str) -> bool:
            return blocklist.is_token_revoked({"jti": jti, "sub": "1", "iat": now})

        assert revoked("kept") is False  # the lookup's connection is open
        admin.client_pause(1_000)  # every client's commands wait a second
        with pytest.raises(RevocationStoreUnavailable):
            revoked("kept")
        time.sleep(1.2)

        assert revoked("revoked") is True
        assert revoked("kept") is False
    finally:
        client.close()
        admin.close()


class FlakyPostgres:
    """A throw-away PostgreSQL database that can refuse connections for a while."""

    def __init__(self, url: str) -> None:
        self.name = make_url(url).database
        self.admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")

    def go_away(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false')
            )
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            )

    def come_back(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS true')
            )

    def dispose(self) -> None:
        self.come_back()
        self.admin.dispose()


@pytest.fixture
def flaky_postgres(app_config):
    with postgres_database() as url:
        flaky = FlakyPostgres(url)
        app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            db.create_all()
        try:
            yield app, flaky
        finally:
            with app.app_context():
                db.engine.dispose()
            flaky.dispose()


def test_a_database_that_goes_away_mid_run(flaky_postgres):
    """503 in the envelope while it is gone, nothing half-written, and recovery."""
    app, flaky = flaky_postgres
    client = app.test_client()
    headers = bearer(AuthActions(app, client).user()[1]["access_token"])
    assert (
        client.post("/store", json={"name": "Before"}, headers=headers).status_code
        == 201
    )
    assert client.get("/readyz").status_code == 200

    flaky.go_away()
    for response in (
        client.get("/store", headers=headers),
        client.post("/store", json={"name": "During"}, headers=headers),
        client.post("/login", json={"username": "alice", "password": "x" * 12}),
    ):
        assert_error(
            response, 503, "service_unavailable", "The database is unavailable."
        )
        assert "Traceback" not in response.get_data(as_text=True)
    down = client.get("/readyz")
    body = assert_error(down, 503, "service_unavailable")
    assert body["errors"]["database"] == "unavailable"

    flaky.come_back()
    assert wait_until(lambda: client.get("/readyz").status_code == 200)
    listing = client.get("/store", headers=headers)
    assert listing.status_code == 200
    assert [store["name"] for store in listing.get_json()] == ["Before"]
    with app.app_context():
        names = db.session.scalars(db.select(StoreModel.name)).all()
    assert names == ["Before"]


# --- the entrypoint -------------------------------------------------------------


def test_the_entrypoint_migrates_then_serves_and_stops_gracefully(tmp_path):
    port = free_port()
    database = tmp_path / "entrypoint.db"
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{database}",
        "TRUSTED_HOSTS": "127.0.0.1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [str(REPO / "docker-entrypoint.sh")],
        cwd=tmp_path,  # the script finds its own folder
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        servers.wait_until_ready(
            process,
            lambda: request(base_url(port), "GET", "/readyz", timeout=1).status == 200,
            lambda: (tmp_path / "server.log").read_text(),
            deadline=30,
        )
        engine = create_engine(f"sqlite:///{database}")
        with engine.connect() as connection:
            version = connection.execute(
                text("SELECT version_num FROM alembic_version")
            )
            # The newest migration: the entrypoint ran them all.
            assert (
                version.scalar()
                == ScriptDirectory(str(REPO / "migrations")).get_current_head()
            )
        engine.dispose()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert "Running upgrade" in output
    # gunicorn's own lines are JSON (gunicorn.conf.py).
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(
        entry["level"] == "INFO" and entry["logger"].startswith("gunicorn")
        for entry in entries
    ), output
