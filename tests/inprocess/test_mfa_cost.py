"""What the second factor costs an account that has none: nothing at its login.

A POST /login of an account without TOTP issues exactly the SQL statements it
issued before the feature: LOGIN_STATEMENTS = 2 (the user's row by username,
then the new session's row), and none of them reads the feature's tables.

Measured on 76a7bfa (main before issue 25), in a temporary worktree of that
commit (`git worktree add --detach /tmp/base-76a7bfa 76a7bfa`), with a
SQLAlchemy `before_cursor_execute` listener on `db.engine` around one POST /login
of a registered user (the same settings as TEST_SETTINGS): 2 statements with the
memory and the database revocation stores on SQLite, and 2 with the database
store on PostgreSQL; `SELECT users...` and `INSERT INTO sessions...` each time,
for a first login from a new client and for a later one alike. On 6fb4107 (the
feature) the same script counts 2, the SELECT naming one more column
(`users.totp_enabled`).
"""

import pytest

from tests.helpers import PASSWORD, TOKEN_KEYS, bearer, statements
from tests.mfa import enrol

LOGIN_STATEMENTS = 2
FEATURE_TABLES = ("totp_factors", "recovery_codes", "mfa_tokens")


@pytest.fixture
def app_config(app_config, backend) -> dict:
    return {**app_config, **backend}


def login(client, username: str):
    return client.post("/login", json={"username": username, "password": PASSWORD})


def test_a_login_without_totp_costs_what_it_did_before_the_feature(app, auth):
    auth.register("bob")

    for client in (app.test_client(), app.test_client()):  # a first login, and another
        with statements(app) as seen:
            response = login(client, "bob")

        assert response.status_code == 200, response.get_json()
        assert set(response.get_json()) == TOKEN_KEYS
        assert len(seen) == LOGIN_STATEMENTS, seen
        assert seen[0].lstrip().upper().startswith("SELECT"), seen
        assert "FROM users" in seen[0] and "INSERT INTO sessions" in seen[1], seen
        touched = [s for s in seen for table in FEATURE_TABLES if table in s]
        assert touched == [], touched


def test_the_listener_sees_the_feature_tables_when_a_login_uses_them(app, auth):
    """The check above can fail: an account with TOTP reaches mfa_tokens."""
    _, tokens = auth.user("alice")
    client = app.test_client()
    enrol(client, tokens["access_token"])
    client.post("/logout", headers=bearer(tokens["access_token"]))

    with statements(app) as seen:
        response = login(client, "alice")

    assert response.status_code == 401
    assert response.get_json()["error"] == "mfa_required"
    assert any("mfa_tokens" in s for s in seen), seen
    assert len(seen) > LOGIN_STATEMENTS
