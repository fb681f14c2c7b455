"""POST/GET/DELETE /me/api-tokens: long-lived bearer tokens for scripts — shown
once, never fresh, never refreshed, at most 20 a user, used without a write on
most requests. Their revocation, on every revocation store:
test_api_token_revocation.py."""

from datetime import UTC, datetime, timedelta

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import event, update
from sqlalchemy.exc import IntegrityError, OperationalError

from auth.api_tokens import USE_RECORD_INTERVAL, UseRecorder
from core import db
from models import ApiTokenModel, UserModel
from models.api_token import MAX_API_TOKENS, SLOT_ATTEMPTS
from tests.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    TEST_SETTINGS,
    assert_error,
    bearer,
    create_store,
)
from tests.inprocess.test_sessions import works

LISTED = {"id", "name", "created_at", "expires_at", "last_used_at"}
CREATED = {"id", "name", "token", "created_at", "expires_at"}


@pytest.fixture
def app_config(request, app_config):
    """The base config, or what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


def create(client, tokens: dict, name: str = "backup", **fields):
    return client.post(
        "/me/api-tokens",
        json={"name": name, **fields},
        headers=bearer(tokens["access_token"]),
    )


def created(client, tokens: dict, name: str = "backup", **fields) -> dict:
    response = create(client, tokens, name, **fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def listed(client, tokens: dict) -> list[dict]:
    response = client.get("/me/api-tokens", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def as_tokens(api_token: dict) -> dict:
    """An API token in the shape the session helpers take."""
    return {"access_token": api_token["token"]}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def non_fresh(auth, tokens: dict) -> dict:
    response = auth.refresh(tokens["refresh_token"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_new_token_is_shown_once_and_works_as_a_bearer_token(app, auth, client):
    _, tokens = auth.user("alice")
    before = datetime.now(UTC)

    response = create(client, tokens, "nightly backup")

    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert set(body) == CREATED
    assert body["name"] == "nightly backup"
    assert before - timedelta(seconds=1) <= moment(body["created_at"])
    assert moment(body["expires_at"]) - moment(body["created_at"]) == timedelta(days=90)
    me = client.get("/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.get_json()["username"] == "alice"
    # The list never carries the secret.
    (row,) = listed(client, tokens)
    assert set(row) == LISTED
    assert {k: row[k] for k in CREATED - {"token"}} == {
        k: body[k] for k in CREATED - {"token"}
    }
    assert body["token"] not in str(listed(client, tokens))


def test_the_token_is_a_non_fresh_access_token_of_no_session(app, auth, client):
    user_id, tokens = auth.user("alice")
    token = created(client, tokens)["token"]

    with app.app_context():
        claims = decode_token(token)
    assert claims["type"] == "access"
    assert claims["fresh"] is False
    assert claims["token_use"] == "api"
    assert claims["sub"] == str(user_id)
    assert "fam" not in claims and "is_admin" not in claims
    assert claims["exp"] - claims["iat"] == pytest.approx(90 * 86400, abs=1)


@pytest.mark.parametrize("days", [1, 365])
def test_the_lifetime_may_be_chosen(auth, client, days):
    _, tokens = auth.user("alice")
    body = created(client, tokens, expires_in_days=days)
    lifetime = moment(body["expires_at"]) - moment(body["created_at"])
    assert lifetime == timedelta(days=days)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "expires_in_days": 366}, "expires_in_days"),
        ({"name": "x", "expires_in_days": "90"}, "expires_in_days"),
        ({"name": "x", "expires_in_days": 1.5}, "expires_in_days"),
        ({"name": "x", "expires_in_days": True}, "expires_in_days"),
        ({"name": "x", "expires_in_days": None}, "expires_in_days"),
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "a" * 81}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": "x", "scope": "all"}, "scope"),
    ],
)
def test_a_bad_request_is_422_and_makes_nothing(auth, client, body, field):
    _, tokens = auth.user("alice")
    response = client.post(
        "/me/api-tokens", json=body, headers=bearer(tokens["access_token"])
    )
    error = assert_error(response, 422, "validation_error")
    assert field in error["errors"]["json"]
    assert listed(client, tokens) == []


def test_making_one_needs_a_fresh_token(auth, client):
    _, tokens = auth.user("alice")
    refreshed = non_fresh(auth, tokens)

    assert_error(create(client, refreshed), 401, "fresh_token_required")
    assert_error(
        client.post("/me/api-tokens", json={"name": "x"}), 401, "authorization_required"
    )
    assert listed(client, tokens) == []


def test_an_api_token_cannot_make_api_tokens(auth, client):
    _, tokens = auth.user("alice")
    api_token = as_tokens(created(client, tokens))

    assert_error(create(client, api_token, "child"), 401, "fresh_token_required")
    assert [row["name"] for row in listed(client, tokens)] == ["backup"]


def test_an_api_token_is_never_fresh(auth, client):
    user_id, tokens = auth.user("alice")
    store = create_store(client, bearer(tokens["access_token"]), "Corner shop")
    api_token = created(client, tokens)["token"]

    # Every non-fresh operation takes it...
    response = client.post("/store", json={"name": "Kiosk"}, headers=bearer(api_token))
    assert response.status_code == 201, response.get_json()
    assert (
        client.get(f"/store/{store['id']}", headers=bearer(api_token)).status_code
        == 200
    )
    # ...no fresh-only one does.
    item = {"name": "Chair", "price": 1.0, "store_id": store["id"]}
    fresh_only = [
        client.post("/item", json=item, headers=bearer(api_token)),
        client.put(
            "/user/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(api_token),
        ),
        client.delete(f"/user/{user_id}", headers=bearer(api_token)),
    ]
    for response in fresh_only:
        assert_error(response, 401, "fresh_token_required", "The token is not fresh.")
    assert works(client, tokens)


def test_an_api_token_is_never_refreshed(auth, client):
    _, tokens = auth.user("alice")
    api_token = created(client, tokens)["token"]

    assert_error(
        auth.refresh(api_token),
        401,
        "invalid_token",
        "An access token was sent where a refresh token is required.",
    )
    response = client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": api_token}
    )
    body = assert_error(response, 400, "invalid_grant")
    assert body["error_description"] == (
        "An access token was sent where a refresh token is required."
    )
    assert works(client, as_tokens({"token": api_token}))


def test_the_list_is_the_callers_newest_first(auth, client):
    _, alice = auth.user("alice")
    _, bob = auth.user("bob")
    first = created(client, alice, "first")
    second = created(client, alice, "second")
    created(client, bob, "bob's")

    assert [row["id"] for row in listed(client, alice)] == [second["id"], first["id"]]
    assert [row["name"] for row in listed(client, bob)] == ["bob's"]
    assert all(row["last_used_at"] is None for row in listed(client, alice))


def test_an_api_token_lists_its_own_user_s_tokens(auth, client):
    _, tokens = auth.user("alice")
    api_token = as_tokens(created(client, tokens))
    assert [row["name"] for row in listed(client, api_token)] == ["backup"]


def test_at_most_twenty_a_user(auth, client):
    _, tokens = auth.user("alice")
    _, bob = auth.user("bob")
    made = [created(client, tokens, f"script {n}") for n in range(MAX_API_TOKENS)]

    response = create(client, tokens, "one too many")

    assert_error(
        response,
        409,
        "too_many_tokens",
        "You already have 20 API tokens, the most allowed: delete one first.",
    )
    assert len(listed(client, tokens)) == MAX_API_TOKENS
    assert create(client, bob).status_code == 201  # per user
    client.delete(
        f"/me/api-tokens/{made[0]['id']}", headers=bearer(tokens["access_token"])
    )
    assert works(client, as_tokens(created(client, tokens, "in the freed slot")))


def test_an_expired_token_frees_its_slot_and_is_not_listed(app, auth, client):
    _, tokens = auth.user("alice")
    made = [created(client, tokens, f"script {n}") for n in range(MAX_API_TOKENS)]
    with app.app_context():
        db.session.execute(
            update(ApiTokenModel)
            .where(ApiTokenModel.id == made[5]["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()

    assert made[5]["id"] not in [row["id"] for row in listed(client, tokens)]
    assert len(listed(client, tokens)) == MAX_API_TOKENS - 1
    assert create(client, tokens, "replacement").status_code == 201
    assert_error(create(client, tokens, "too many"), 409, "too_many_tokens")

    result = app.test_cli_runner().invoke(args=["blocklist", "purge"])
    assert "Purged 0 expired API tokens." in result.output  # freed at creation


def test_the_purge_command_deletes_expired_tokens(app, auth, client):
    _, tokens = auth.user("alice")
    old = created(client, tokens, "old")
    new = created(client, tokens, "new")
    with app.app_context():
        db.session.execute(
            update(ApiTokenModel)
            .where(ApiTokenModel.id == old["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["blocklist", "purge"])

    assert result.exit_code == 0, result.output
    assert "Purged 1 expired API tokens." in result.output.splitlines()
    with app.app_context():
        rows = db.session.scalars(db.select(ApiTokenModel.id)).all()
    assert rows == [new["id"]]


def statements_on_api_tokens(app) -> list[str]:
    """A live list of the statements run against api_tokens."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def watch(_conn, _cursor, statement, *_args):
        if "api_tokens" in statement:
            seen.append(statement.split()[0].upper())

    return seen


def last_used(client, tokens: dict) -> datetime | None:
    (row,) = listed(client, tokens)
    return None if row["last_used_at"] is None else moment(row["last_used_at"])


def test_last_use_is_recorded_at_most_once_a_minute(app, auth, client):
    _, tokens = auth.user("alice")
    api_token = as_tokens(created(client, tokens))
    assert last_used(client, tokens) is None
    seen = statements_on_api_tokens(app)

    before = datetime.now(UTC)
    for _ in range(5):
        assert works(client, api_token)

    assert seen == ["UPDATE"]  # one write for five requests
    assert before - timedelta(seconds=1) <= last_used(client, tokens)
    # Session tokens never touch the table.
    seen.clear()
    for _ in range(3):
        assert works(client, tokens)
    assert seen == []


def test_the_recorder_lets_one_write_through_a_minute():
    now = [1000.0]
    recorder = UseRecorder(USE_RECORD_INTERVAL, clock=lambda: now[0])

    assert recorder.due("a")
    assert not recorder.due("a")
    assert recorder.due("b")  # per token
    now[0] += 59
    assert not recorder.due("a")
    now[0] += 1
    assert recorder.due("a")


def test_the_update_skips_a_row_written_less_than_a_minute_ago(app, auth, client):
    """Several workers each let one write through a minute; the UPDATE itself keeps
    the row to one write a minute."""
    _, tokens = auth.user("alice")
    api_token = created(client, tokens)
    with app.app_context():
        jti = decode_token(api_token["token"])["jti"]

    def set_last_used(moment_: datetime) -> None:
        with app.app_context():
            db.session.execute(
                update(ApiTokenModel)
                .where(ApiTokenModel.jti == jti)
                .values(last_used_at=moment_)
            )
            db.session.commit()

    recent = datetime.now(UTC) - timedelta(seconds=30)
    set_last_used(recent)
    with app.app_context():
        ApiTokenModel.record_use(jti, USE_RECORD_INTERVAL)
    assert last_used(client, tokens) == recent

    set_last_used(recent - timedelta(minutes=1))
    with app.app_context():
        ApiTokenModel.record_use(jti, USE_RECORD_INTERVAL)
    assert last_used(client, tokens) > recent


def test_a_failed_use_record_does_not_fail_the_request(app, auth, client, caplog):
    _, tokens = auth.user("alice")
    api_token = as_tokens(created(client, tokens))
    with app.app_context():
        engine = db.engine

    def refuse(_conn, _cursor, statement, *_args):
        if statement.startswith("UPDATE api_tokens"):
            raise OperationalError(statement, {}, Exception("disk full"))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        assert works(client, api_token)
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    assert "Could not record the use of an API token" in caplog.text
    assert last_used(client, tokens) is None


def test_administrator_rights_are_the_databases(app, auth, client, store):
    admin_id, admin = auth.user("root", admin=True)
    bob_id, bob = auth.user("bob")
    api_token = created(client, admin)["token"]
    assert client.get(f"/user/{bob_id}", headers=bearer(api_token)).status_code == 200

    with app.app_context():
        db.session.get(UserModel, admin_id).is_admin = False
        db.session.commit()

    # Demoted: neither the API token nor the session's token keeps the rights.
    for token in (api_token, admin["access_token"]):
        response = client.delete(f"/store/{store['id']}", headers=bearer(token))
        assert_error(response, 403, "forbidden", "Administrator rights are required.")
        response = client.get(f"/user/{bob_id}", headers=bearer(token))
        assert_error(
            response, 403, "forbidden", "You may only act on your own account."
        )
    assert works(client, bob)


@pytest.mark.parametrize(
    "app_config",
    [
        {
            **TEST_SETTINGS,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_API_TOKENS": "2 per minute",
        }
    ],
    indirect=True,
)
def test_making_them_is_rate_limited_and_only_made_ones_count(auth, client):
    _, tokens = auth.user("alice")
    for _ in range(3):  # refused ones do not count
        assert create(client, tokens, "").status_code == 422
    created(client, tokens, "one")
    created(client, tokens, "two")

    response = create(client, tokens, "three")

    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert [row["name"] for row in listed(client, tokens)] == ["two", "one"]


def test_a_creation_that_loses_the_race_for_its_slot_tries_again(
    app, auth, client, monkeypatch
):
    """A concurrent creation that took the same free slot makes our commit fail on
    the unique (user_id, slot) pair: the creation tries again, and after
    SLOT_ATTEMPTS such losses says so (409). (Real races: the racing test in
    test_api_token_revocation.py, on SQLite and PostgreSQL.)"""
    _, tokens = auth.user("alice")
    real_commit = db.session.commit
    losses = {"left": 1}

    def commit_losing_the_race() -> None:
        if losses["left"] and any(isinstance(o, ApiTokenModel) for o in db.session.new):
            losses["left"] -= 1
            raise IntegrityError(
                "INSERT INTO api_tokens ...", {}, Exception("UNIQUE constraint failed")
            )
        real_commit()

    monkeypatch.setattr(db.session, "commit", commit_losing_the_race)
    body = created(client, tokens, "mine")  # lost once, then won
    assert losses["left"] == 0
    losses["left"] = SLOT_ATTEMPTS
    response = create(client, tokens, "unlucky")

    assert_error(
        response,
        409,
        "too_many_tokens",
        "API tokens are being created too fast: try again.",
    )
    monkeypatch.undo()
    assert [row["name"] for row in listed(client, tokens)] == ["mine"]
    assert works(client, as_tokens(body))


def test_the_recorder_forgets_tokens_not_used_lately():
    now = [0.0]
    recorder = UseRecorder(USE_RECORD_INTERVAL, clock=lambda: now[0])
    for n in range(10_001):
        recorder.due(f"old-{n}")
    now[0] += 61

    assert recorder.due("new")  # prunes the ones older than a minute
    assert len(recorder._written) == 1
    assert recorder.due("old-1")  # forgotten: due again
