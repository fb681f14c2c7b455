"""The user check's per-worker cache (auth/user_cache.py): at most 2 seconds
behind the database, and never in the way of a deletion through the API, which
revokes the user's tokens in the revocation store first."""

import pytest

from app import create_app
from auth import user_cache
from core import ConfigError, db
from models import UserModel
from tests.helpers import TEST_SETTINGS, AuthActions, assert_error, bearer

USER_GONE = "The user of this token no longer exists."


class Clock:
    """time.monotonic for the cache, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(user_cache.time, "monotonic", clock)
    return clock


def _delete_row(app, user_id: int) -> None:
    """Delete the user straight in the database (no revocation, no API)."""
    with app.app_context():
        db.session.execute(db.delete(UserModel).where(UserModel.id == user_id))
        db.session.commit()


def _reads_of_users(app, monkeypatch) -> list[int]:
    """Count the user check's reads of the database."""
    reads: list[int] = []
    original = UserModel.subject.__func__

    def counting(cls, user_id):
        reads.append(user_id)
        return original(cls, user_id)

    monkeypatch.setattr(UserModel, "subject", classmethod(counting))
    return reads


def test_the_user_check_reads_the_database_once_per_two_seconds(
    app, auth, client, clock, monkeypatch
):
    _, tokens = auth.user("alice")
    reads = _reads_of_users(app, monkeypatch)
    headers = bearer(tokens["access_token"])

    for _ in range(5):
        assert client.get("/me", headers=headers).status_code == 200
    clock.now += 1.9
    assert client.get("/store", headers=headers).status_code == 200
    assert len(reads) == 1
    clock.now += 0.1
    assert client.get("/store", headers=headers).status_code == 200

    assert len(reads) == 2


def test_a_user_deleted_in_the_database_is_refused_within_two_seconds(
    app, auth, client, clock
):
    user_id, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    assert client.get("/store", headers=headers).status_code == 200
    _delete_row(app, user_id)

    # The documented lag: this worker read the user less than 2 s ago...
    clock.now += 1.9
    assert client.get("/store", headers=headers).status_code == 200
    # ...and not a moment longer.
    clock.now += 0.1
    response = client.get("/store", headers=headers)

    assert_error(response, 401, "invalid_token", USER_GONE)


def test_a_user_deleted_through_the_api_is_refused_on_the_next_request(
    app, auth, client, clock
):
    user_id, tokens = auth.user("alice")
    other = auth.login("alice")  # a second session, used after the deletion
    api = client.post(
        "/me/api-tokens",
        json={"name": "script"},
        headers=bearer(tokens["access_token"]),
    ).get_json()["token"]
    for token in (other["access_token"], api):
        assert client.get("/store", headers=bearer(token)).status_code == 200

    response = client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200

    for token in (other["access_token"], api):
        assert_error(client.get("/store", headers=bearer(token)), 401, "token_revoked")


@pytest.fixture
def shared_blocklist_config(app_config):
    app_config["BLOCKLIST_BACKEND"] = "database"
    return app_config


def test_a_user_deleted_through_the_api_is_refused_by_every_other_worker(
    shared_blocklist_config, auth, client, clock
):
    """Another app on the same database and revocation store stands for another
    worker: its cache still holds the user, and the revocation store refuses the
    token."""
    app_config = shared_blocklist_config
    user_id, tokens = auth.user("alice")
    other = auth.login("alice")
    worker = create_app(app_config)
    try:
        other_client = worker.test_client()
        headers = bearer(other["access_token"])
        assert other_client.get("/store", headers=headers).status_code == 200

        deleted = client.delete(
            f"/user/{user_id}", headers=bearer(tokens["access_token"])
        )
        assert deleted.status_code == 200

        assert_error(other_client.get("/store", headers=headers), 401, "token_revoked")
    finally:
        with worker.app_context():
            db.engine.dispose()


def test_a_cached_administrator_is_read_again_before_being_granted_anything(
    app, auth, client, clock, store
):
    admin_id, admin = auth.user("root", admin=True)
    headers = bearer(admin["access_token"])
    assert client.get("/store", headers=headers).status_code == 200  # now cached
    with app.app_context():
        db.session.get(UserModel, admin_id).is_admin = False
        db.session.commit()

    response = client.delete(f"/store/{store['id']}", headers=headers)

    assert_error(response, 403, "forbidden", "Administrator rights are required.")
    assert client.get(f"/store/{store['id']}", headers=headers).status_code == 200


@pytest.fixture
def uncached_config(app_config):
    app_config["USER_CHECK_CACHE_SECONDS"] = 0
    return app_config


def test_with_the_cache_off_every_request_reads_the_user(uncached_config, monkeypatch):
    app = create_app(uncached_config)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    user_id, tokens = AuthActions(app, client).user("alice")
    headers = bearer(tokens["access_token"])
    assert client.get("/store", headers=headers).status_code == 200
    _delete_row(app, user_id)

    assert_error(client.get("/store", headers=headers), 401, "invalid_token", USER_GONE)
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("seconds", [3, 60])
def test_the_cache_may_not_lag_more_than_two_seconds(seconds):
    with pytest.raises(ConfigError, match="USER_CHECK_CACHE_SECONDS may be 2"):
        create_app({**TEST_SETTINGS, "USER_CHECK_CACHE_SECONDS": seconds})


def test_the_cache_holds_a_bounded_number_of_users(clock):
    cache = user_cache.UserCheckCache(2, size=3)
    for user_id in range(1, 6):
        cache.put(user_id, (user_id, False))

    assert [cache.get(user_id) for user_id in range(1, 6)] == [
        None,
        None,
        (3, False),
        (4, False),
        (5, False),
    ]
    clock.now += 2
    assert cache.get(5) is None
