"""GET /me/sessions, DELETE /me/sessions/{id}, DELETE /me/sessions: a user sees
and ends their own sessions, and a session is listed exactly until it ends — on
every revocation store."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import event

from core import db
from models import SessionModel
from tests.dpop import ProofKey, bound_login
from tests.helpers import NEW_PASSWORD, PASSWORD, assert_error, bearer
from tests.inprocess.test_sessions import assert_revoked, works

FIELDS = {
    "id",
    "created_at",
    "last_used_at",
    "expires_at",
    "authenticated_at",
    "dpop_jkt",
    "user_agent",
    "ip_address",
    "current",
}


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


def family(app, token: str) -> str:
    with app.app_context():
        return decode_token(token)["fam"]


def sessions(client, tokens: dict) -> list[dict]:
    response = client.get("/me/sessions", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def login_from(client, user_agent: str, address: str = "127.0.0.1") -> dict:
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": user_agent},
        environ_base={"REMOTE_ADDR": address},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def audited(caplog, name: str) -> list:
    return [r for r in caplog.records if getattr(r, "event", "") == name]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_list_shows_each_login_newest_first(app, auth, client):
    auth.register("alice")
    phone = login_from(client, "Phone/1.0", "10.0.0.7")
    laptop = login_from(client, "Laptop/2.0", "10.0.0.8")

    listed = sessions(client, laptop)

    assert [s["id"] for s in listed] == [
        family(app, laptop["access_token"]),
        family(app, phone["access_token"]),
    ]
    assert all(set(s) == FIELDS for s in listed)
    newest, oldest = listed
    assert (newest["user_agent"], newest["ip_address"]) == ("Laptop/2.0", "10.0.0.8")
    assert (oldest["user_agent"], oldest["ip_address"]) == ("Phone/1.0", "10.0.0.7")
    assert [s["current"] for s in listed] == [True, False]
    assert [s["dpop_jkt"] for s in listed] == [None, None]  # bearer sessions
    assert [s["current"] for s in sessions(client, phone)] == [False, True]
    for entry in listed:
        created, ends = moment(entry["created_at"]), moment(entry["expires_at"])
        assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
        assert entry["last_used_at"] == entry["created_at"]
        assert abs(ends - created - timedelta(days=14)) < timedelta(seconds=5)


def test_a_refresh_moves_last_used_the_end_and_where_from(app, auth, client):
    auth.register("alice")
    first = login_from(client, "Phone/1.0", "10.0.0.7")
    (before,) = sessions(client, first)

    response = client.post(
        "/refresh",
        headers={**bearer(first["refresh_token"]), "User-Agent": "Phone/1.1"},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )

    assert response.status_code == 200
    (after,) = sessions(client, response.get_json())
    assert after["id"] == before["id"] and after["created_at"] == before["created_at"]
    assert moment(after["last_used_at"]) > moment(before["last_used_at"])
    assert moment(after["expires_at"]) > moment(before["expires_at"])
    assert (after["user_agent"], after["ip_address"]) == ("Phone/1.1", "10.0.0.9")


@pytest.mark.parametrize(
    "app_config", [{"TRUSTED_PROXIES": 1}], indirect=True, ids=["one-proxy"]
)
def test_the_address_is_the_clients_behind_trusted_proxies(auth, client):
    auth.register("alice")
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.5"},
    )

    (entry,) = sessions(client, response.get_json())

    assert entry["ip_address"] == "203.0.113.5"


def test_a_long_user_agent_is_cut_to_256_characters(auth, client):
    auth.register("alice")
    tokens = login_from(client, "x" * 1000)

    (entry,) = sessions(client, tokens)

    assert entry["user_agent"] == "x" * 256


@pytest.mark.parametrize(
    "app_config",
    [{"SESSION_MAX_AGE": timedelta(seconds=600)}],
    indirect=True,
    ids=["ten-minutes"],
)
def test_the_end_is_the_absolute_cap_when_it_comes_first(app, auth, client):
    _, tokens = auth.user("alice")

    (entry,) = sessions(client, tokens)

    with app.app_context():
        started = decode_token(tokens["access_token"])["fam_iat"]
    assert moment(entry["expires_at"]) == datetime.fromtimestamp(started + 600, UTC)


def test_ending_one_session_revokes_its_tokens(app, auth, client, caplog):
    _, phone = auth.user("alice")
    laptop = auth.login("alice")
    phone_id = family(app, phone["access_token"])

    with caplog.at_level(logging.INFO, logger="api.audit"):
        response = client.delete(
            f"/me/sessions/{phone_id}", headers=bearer(laptop["access_token"])
        )

    assert response.status_code == 200
    assert response.get_json() == {"message": "Session ended."}
    assert_revoked(client.get("/me", headers=bearer(phone["access_token"])))
    assert_revoked(auth.refresh(phone["refresh_token"]))
    assert works(client, laptop)
    assert [s["id"] for s in sessions(client, laptop)] == [
        family(app, laptop["access_token"])
    ]
    (event,) = [
        r for r in caplog.records if getattr(r, "event", "") == "session_revoked"
    ]
    assert event.family == phone_id


def test_ending_the_current_session_works_too(app, auth, client):
    _, tokens = auth.user("alice")

    response = client.delete(
        f"/me/sessions/{family(app, tokens['access_token'])}",
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200
    assert_revoked(client.get("/me", headers=bearer(tokens["access_token"])))


@pytest.mark.parametrize(
    "session_id",
    ["abc", "0" * 32, "x" * 300, "%00", "..%2f..%2fetc"],
    ids=["malformed", "unknown", "long", "nul", "dots"],
)
def test_an_unknown_or_malformed_id_is_not_found(auth, client, session_id):
    _, tokens = auth.user("alice")

    response = client.delete(
        f"/me/sessions/{session_id}", headers=bearer(tokens["access_token"])
    )

    assert_error(response, 404, "not_found")
    assert works(client, tokens)


def test_another_users_session_is_not_found_and_stays(app, auth, client):
    _, alice = auth.user("alice")
    _, bob = auth.user("bob")

    response = client.delete(
        f"/me/sessions/{family(app, alice['access_token'])}",
        headers=bearer(bob["access_token"]),
    )

    body = assert_error(response, 404, "not_found")
    assert body["message"] == "Session not found."
    assert works(client, alice)
    assert len(sessions(client, alice)) == 1


def test_ending_the_others_keeps_only_this_session(app, auth, client, caplog):
    _, first = auth.user("alice")
    second = auth.login("alice")
    current = auth.login("alice")
    _, bob = auth.user("bob")

    with caplog.at_level(logging.INFO, logger="api.audit"):
        response = client.delete(
            "/me/sessions", headers=bearer(current["access_token"])
        )

    assert response.status_code == 200
    assert response.get_json() == {"message": "Ended 2 other session(s)."}
    for ended in (first, second):
        assert_revoked(client.get("/me", headers=bearer(ended["access_token"])))
        assert_revoked(auth.refresh(ended["refresh_token"]))
    assert works(client, current) and works(client, bob)
    assert [s["current"] for s in sessions(client, current)] == [True]
    (event,) = [
        r
        for r in caplog.records
        if getattr(r, "event", "") == "sessions_revoked_others"
    ]
    assert event.count == 2


def test_the_sessions_api_needs_an_access_token(auth, client):
    _, tokens = auth.user("alice")
    for method, path in (
        ("get", "/me/sessions"),
        ("delete", "/me/sessions"),
        ("delete", "/me/sessions/abc"),
    ):
        assert_error(getattr(client, method)(path), 401, "authorization_required")
        refresh = bearer(tokens["refresh_token"])
        assert_error(
            getattr(client, method)(path, headers=refresh), 401, "invalid_token"
        )


# --- a session is listed until it ends ----------------------------------------------


def _ended_by_logout(auth, client, tokens):
    client.post("/logout", headers=bearer(tokens["access_token"]))


def _ended_by_revoke(auth, client, tokens):
    client.post("/revoke", data={"token": tokens["refresh_token"]})


def _ended_by_logout_all(auth, client, tokens):
    client.post("/logout/all", headers=bearer(tokens["access_token"]))


def _ended_by_reuse(auth, client, tokens):
    client.application.config["REFRESH_REUSE_GRACE_SECONDS"] = 0
    auth.refresh(tokens["refresh_token"])
    assert auth.refresh(tokens["refresh_token"]).status_code == 401


@pytest.mark.parametrize(
    "end",
    [_ended_by_logout, _ended_by_revoke, _ended_by_logout_all, _ended_by_reuse],
    ids=["logout", "revoke", "logout-all", "reuse-detection"],
)
def test_an_ended_session_leaves_the_list_at_once(app, auth, client, end):
    _, tokens = auth.user("alice")
    _, bob = auth.user("bob")  # another user: a new login, to read the list with
    assert len(sessions(client, tokens)) == 1

    end(auth, client, tokens)

    with app.app_context():
        rows = db.session.scalars(db.select(SessionModel.user_id)).all()
    assert rows == [int(decode_token_sub(app, bob))]


def decode_token_sub(app, tokens: dict) -> str:
    with app.app_context():
        return decode_token(tokens["access_token"])["sub"]


def test_a_password_change_leaves_only_the_new_session(auth, client):
    _, tokens = auth.user("alice")
    auth.login("alice")

    response = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200
    listed = sessions(client, response.get_json())
    assert [s["current"] for s in listed] == [True]


def bound_sessions(
    client, key: ProofKey, access_token: str
) -> list[tuple[bool, str | None]]:
    """(current, dpop_jkt) of each session, as a bound token of `key` lists them."""
    headers = key.headers("GET", "/me/sessions", access_token)
    response = client.get("/me/sessions", headers=headers)
    assert response.status_code == 200, response.get_json()
    return [(s["current"], s["dpop_jkt"]) for s in response.get_json()]


def test_a_bound_session_is_listed_with_its_keys_thumbprint(auth, client, key):
    """RFC 9449: a session whose tokens are bound to a key shows that key's
    thumbprint (their cnf.jkt), through its refreshes and into the new session of
    a password change; a bearer session shows null."""
    auth.register("alice")
    script = login_from(client, "Script/1.0")
    response = bound_login(client, key)
    assert response.status_code == 200, response.get_json()
    bound = response.get_json()

    assert bound_sessions(client, key, bound["access_token"]) == [
        (True, key.jkt),
        (False, None),
    ]
    assert [s["dpop_jkt"] for s in sessions(client, script)] == [key.jkt, None]

    passwords = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    headers = key.headers("PUT", "/user/password", bound["access_token"])
    changed = client.put("/user/password", json=passwords, headers=headers)
    assert changed.status_code == 200, changed.get_json()
    assert bound_sessions(client, key, changed.get_json()["access_token"]) == [
        (True, key.jkt)
    ]

    headers = key.headers("POST", "/refresh", changed.get_json()["refresh_token"])
    refreshed = client.post("/refresh", headers=headers)
    assert refreshed.status_code == 200, refreshed.get_json()
    assert bound_sessions(client, key, refreshed.get_json()["access_token"]) == [
        (True, key.jkt)
    ]


def test_deleting_the_account_deletes_its_sessions(app, auth, client):
    user_id, tokens = auth.user("alice")
    auth.login("alice")

    response = client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(db.select(SessionModel)).all() == []


def test_an_expired_session_is_not_listed_and_is_purged(app, auth, client):
    _, tokens = auth.user("alice")
    old = auth.login("alice")
    with app.app_context():
        db.session.execute(
            db.update(SessionModel)
            .where(SessionModel.id == decode_token(old["access_token"])["fam"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()

    assert [s["current"] for s in sessions(client, tokens)] == [True]

    result = app.test_cli_runner().invoke(args=["blocklist", "purge"])
    assert result.exit_code == 0, result.output
    assert "Purged 1 expired sessions." in result.output.splitlines()
    with app.app_context():
        assert len(db.session.scalars(db.select(SessionModel)).all()) == 1


@contextmanager
def recorded_statements(app) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs inside the block."""
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_an_ordinary_request_never_reads_the_sessions_table(app, auth, client):
    """The revocation check stays in the revocation store."""
    _, tokens = auth.user("alice")

    with recorded_statements(app) as statements:
        assert client.get("/store", headers=bearer(tokens["access_token"])).status_code
        assert client.get("/me", headers=bearer(tokens["access_token"])).status_code

    assert statements, "the check ran no statement at all?"
    assert not [s for s in statements if "sessions" in s.lower()]


def test_a_refresh_writes_the_session_row_with_one_statement(app, auth, client):
    _, tokens = auth.user("alice")

    with recorded_statements(app) as statements:
        assert auth.refresh(tokens["refresh_token"]).status_code == 200

    touching = [s for s in statements if "sessions" in s.lower()]
    assert len(touching) == 1 and touching[0].lstrip().upper().startswith("UPDATE")
