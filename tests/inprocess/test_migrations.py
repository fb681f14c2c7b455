"""Migrations build exactly the models' schema, and come back down cleanly."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app import create_app
from core import db
from tests.helpers import TEST_SETTINGS
from tests.services import postgres_database

TABLES = {
    "users",
    "stores",
    "items",
    "tags",
    "items_tags",
    "token_blocklist",
    "sessions",
    "api_tokens",
    "totp_factors",
    "recovery_codes",
    "mfa_tokens",
    "passkeys",
    "webauthn_challenges",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.live)])
def database_url(request, tmp_path):
    """An empty database of each supported kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        with postgres_database() as url:
            yield url


def _diff(app) -> list:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        return compare_metadata(context, db.metadata)


# SQLite cannot reflect the expression index; the next test checks it by behaviour.
@pytest.mark.filterwarnings("ignore:autogenerate skipping:UserWarning")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_upgrade_builds_the_model_schema_and_downgrade_removes_it(database_url):
    app = create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert tables == TABLES | {"alembic_version"}
        assert _diff(app) == []

        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
        upgrade()
        assert set(inspect(db.engine).get_table_names()) >= TABLES
        db.engine.dispose()


def test_migrated_schema_enforces_case_insensitive_usernames(database_url):
    """The functional unique index on lower(username) is the only guard."""
    app = create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": database_url})
    client = app.test_client()
    with app.app_context():
        upgrade()
    body = {"username": "Mixed.Case", "password": "long enough password"}
    assert client.post("/register", json=body).status_code == 201
    duplicate = client.post("/register", json={**body, "username": "mixed.case"})
    assert duplicate.status_code == 409
    assert duplicate.get_json()["error"] == "username_taken"
    with app.app_context():
        db.engine.dispose()
