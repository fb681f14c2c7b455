"""Real PostgreSQL (and later Redis) for the tests that need them.

On a developer's machine without them those tests skip, saying why; with CI set
they fail instead, so CI can never go green without having run them.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def unavailable(service: str, reason: str) -> None:
    """Skip locally, fail in CI."""
    message = f"{service} is not reachable ({reason})."
    if os.environ.get("CI"):
        pytest.fail(message + " CI must run these tests: start the service.")
    pytest.skip(message + " Start it to run these tests.")


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
