"""Live servers for the tests: devtools/servers.py (free ports, one HTTP helper,
migrations, gunicorn), with the test user's password as the default and a server
that does not come up failing the test."""

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools import servers
from devtools.servers import (
    BIN,
    HOST,
    NO_CONTROL_SOCKET,
    REPO,
    REQUEST_TIMEOUT,
    START_DEADLINE,
    STOP_TIMEOUT,
    NotReady,
    Reply,
    base_url,
    booted_workers,
    free_port,
    gunicorn,
    migrate,
    request,
    serving,
    stop,
)
from tests.helpers import MFA_KEY, PASSWORD

__all__ = [
    "BIN",
    "HOST",
    "NO_CONTROL_SOCKET",
    "PASSWORD",
    "REPO",
    "REQUEST_TIMEOUT",
    "START_DEADLINE",
    "STOP_TIMEOUT",
    "Reply",
    "base_url",
    "booted_workers",
    "demo_server",
    "free_port",
    "gunicorn",
    "live_server",
    "login",
    "migrate",
    "register",
    "request",
    "sign_up",
    "stop",
    "wait_until_ready",
]


def production_env(database_url: str, workers: int, **settings: str) -> dict:
    """The environment of a production server on a free loopback port, every
    setting explicit (a developer's .env cannot change what is tested): its own
    signing key, `workers` sync workers, no rate limits or metrics, and `settings`
    on top (the revocation store, for one)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "PUBLIC_URL": "http://127.0.0.1",
        "TRUSTED_HOSTS": "127.0.0.1",
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(workers),
        "RATELIMIT_ENABLED": "false",
        "METRICS_ENABLED": "false",
        **settings,
    }


def register(base: str, username: str, password: str = PASSWORD) -> dict:
    """POST /register, asserting 201; the user as answered."""
    return servers.register(base, username, password)


def login(base: str, username: str, password: str = PASSWORD) -> dict:
    """POST /login, asserting 200; the token pair."""
    return servers.login(base, username, password)


def sign_up(base: str, username: str, password: str = PASSWORD) -> tuple[dict, dict]:
    """Register and log in: (the user, the token pair)."""
    return servers.sign_up(base, username, password)


@contextmanager
def failing_the_test() -> Iterator[None]:
    """A server that exits early or does not come up in time fails the test, with
    its log's tail."""
    try:
        yield
    except NotReady as error:
        reason = str(error)
    else:
        return
    pytest.fail(reason)


def wait_until_ready(*args, **kwargs) -> None:
    """devtools.servers.wait_until_ready (process, ready, describe, deadline,
    interval), failing the test if gunicorn exits or time runs out."""
    with failing_the_test():
        servers.wait_until_ready(*args, **kwargs)


@contextmanager
def live_server(
    env: dict,
    log: Path,
    *,
    ready_path: str = "/healthz",
    workers: int = 0,
    args: Sequence[str] = NO_CONTROL_SOCKET,
    deadline: float = START_DEADLINE,
) -> Iterator[str]:
    """Migrate, run gunicorn on env["PORT"] (stdout and stderr to `log`), wait
    until `ready_path` answers 200 and `workers` workers have booted; yield the
    base URL. The server is always stopped."""
    migrate(env)
    options = {"ready_path": ready_path, "workers": workers, "args": args}
    with failing_the_test(), serving(env, log, deadline=deadline, **options):
        yield base_url(int(env["PORT"]))


@contextmanager
def demo_server(folder: Path, **settings: str) -> Iterator[int]:
    """The server the curl clients are shown against (clients/curl/demo.sh, the
    README's walkthrough): gunicorn with two workers on a fresh SQLite database in
    `folder`, the database revocation store, two-second access tokens, no rate
    limits, and `settings` on top; yields its port."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "development",
        "JWT_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "DATABASE_URL": f"sqlite:///{folder / 'demo.db'}",
        "HOST": HOST,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "JWT_ACCESS_TOKEN_EXPIRES": "2",
        "JWT_REFRESH_TOKEN_EXPIRES": "3600",
        "JWT_DECODE_LEEWAY": "5",
        "RATELIMIT_ENABLED": "false",
        "BLOCKLIST_BACKEND": "database",
        "REDIS_URL": "",
        **settings,
    }
    with live_server(env, folder / "gunicorn.log"):
        yield port
