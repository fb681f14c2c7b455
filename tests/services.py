"""Real PostgreSQL and Redis for the tests that need them, and the programs the
tests run (chromium, nginx, redis-server).

On a developer's machine without them those tests skip, saying why; with CI set
they fail instead, so CI can never go green without having run them.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unavailable(service: str, reason: str) -> None:
    """Skip locally, fail in CI."""
    message = f"{service} is not reachable ({reason})."
    if os.environ.get("CI"):
        pytest.fail(message + " CI must run these tests: start the service.")
    pytest.skip(message + " Start it to run these tests.")


def program(*names: str, package: str, tests: str) -> str:
    """The path of the first of `names` on PATH or in /usr/sbin; skips `tests`
    locally without it, fails in CI."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin")
        if path is not None:
            return path
    message = f"{names[0]} is not installed (apt-get install {package})."
    if os.environ.get("CI"):
        pytest.fail(f"{message} CI must run {tests}.")
    pytest.skip(message)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a throw-away PostgreSQL database and yield its URL."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        admin.dispose()
        unavailable(f"PostgreSQL at {make_url(POSTGRES_URL).host}", str(exc)[:200])
    try:
        url = make_url(POSTGRES_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_namespace() -> Iterator[tuple[str, str, redis.Redis]]:
    """Yield (url, key prefix, client) for a throw-away key namespace in Redis."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        unavailable(f"Redis at {REDIS_URL}", str(exc)[:200])
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    try:
        yield REDIS_URL, prefix, client
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def problems() -> dict[str, str | None]:
    """Each service and why it cannot be used (None when it answers)."""
    found: dict[str, str | None] = {}
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        found[f"PostgreSQL at {make_url(POSTGRES_URL).host}"] = None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        found[f"PostgreSQL at {make_url(POSTGRES_URL).host}"] = str(exc)[:200]
    finally:
        engine.dispose()
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        found[f"Redis at {REDIS_URL}"] = None
    except redis.RedisError as exc:
        found[f"Redis at {REDIS_URL}"] = str(exc)[:200]
    finally:
        client.close()
    return found


if __name__ == "__main__":
    # scripts/test.sh asks before a full run: exit 1 when a service is missing.
    missing = {name: why for name, why in problems().items() if why}
    for name, why in missing.items():
        print(f"    {name} is not reachable ({why}): its tests will skip.")
    raise SystemExit(1 if missing else 0)
