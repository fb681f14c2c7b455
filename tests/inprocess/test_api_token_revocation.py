"""Revoking API tokens, on every revocation store: one by one (DELETE, /logout,
/revoke), all of them by a new password or a deleted account, none by logging out
everywhere; and the limit of 20 a user under racing creations."""

import threading

import pytest

from core import db
from models import ApiTokenModel
from models.api_token import MAX_API_TOKENS
from tests.helpers import NEW_PASSWORD, PASSWORD, assert_error, bearer
from tests.inprocess.test_api_tokens import as_tokens, create, created, listed
from tests.inprocess.test_sessions import assert_revoked, works


@pytest.fixture
def app_config(request, app_config, backend):
    """The app on each revocation store in turn."""
    return {**app_config, **backend}


def test_deleting_one_revokes_it_at_once(auth, client):
    _, tokens = auth.user("alice")
    doomed = created(client, tokens, "doomed")
    kept = created(client, tokens, "kept")
    assert works(client, as_tokens(doomed))

    response = client.delete(
        f"/me/api-tokens/{doomed['id']}", headers=bearer(tokens["access_token"])
    )

    assert response.status_code == 200
    assert response.get_json() == {"message": "API token revoked."}
    assert_revoked(client.get("/me", headers=bearer(doomed["token"])))
    assert [row["id"] for row in listed(client, tokens)] == [kept["id"]]
    assert works(client, as_tokens(kept)) and works(client, tokens)
    again = client.delete(
        f"/me/api-tokens/{doomed['id']}", headers=bearer(tokens["access_token"])
    )
    assert_error(again, 404, "not_found", "API token not found.")


def test_another_users_token_is_not_found_and_stays(auth, client):
    _, alice = auth.user("alice")
    _, bob = auth.user("bob")
    bobs = created(client, bob)

    for token_id in (bobs["id"], bobs["id"] + 1000):
        response = client.delete(
            f"/me/api-tokens/{token_id}", headers=bearer(alice["access_token"])
        )
        assert_error(response, 404, "not_found", "API token not found.")
    assert works(client, as_tokens(bobs))
    assert [row["id"] for row in listed(client, bob)] == [bobs["id"]]


def test_an_api_token_may_delete_itself(auth, client):
    _, tokens = auth.user("alice")
    api_token = created(client, tokens)

    response = client.delete(
        f"/me/api-tokens/{api_token['id']}", headers=bearer(api_token["token"])
    )

    assert response.status_code == 200
    assert_revoked(client.get("/me", headers=bearer(api_token["token"])))


@pytest.mark.parametrize("route", ["/logout", "/revoke"])
def test_logout_or_revoke_with_an_api_token_revokes_it(auth, client, route):
    _, tokens = auth.user("alice")
    api_token = created(client, tokens)

    if route == "/logout":
        response = client.post("/logout", headers=bearer(api_token["token"]))
    else:
        response = client.post("/revoke", data={"token": api_token["token"]})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert_revoked(client.get("/me", headers=bearer(api_token["token"])))
    assert listed(client, tokens) == []
    assert works(client, tokens)  # the session that made it goes on


def test_logging_out_everywhere_leaves_api_tokens_alone(auth, client):
    _, tokens = auth.user("alice")
    api_token = created(client, tokens)

    response = client.post("/logout/all", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert_revoked(client.get("/me", headers=bearer(tokens["access_token"])))
    assert works(client, as_tokens(api_token))
    assert [row["id"] for row in listed(client, as_tokens(api_token))] == [
        api_token["id"]
    ]


def test_a_new_password_revokes_every_api_token(auth, client):
    _, tokens = auth.user("alice")
    _, bob = auth.user("bob")
    mine = [created(client, tokens, f"script {n}") for n in range(3)]
    bobs = created(client, bob)

    response = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200, response.get_json()
    new_tokens = response.get_json()
    for api_token in mine:
        assert_revoked(client.get("/me", headers=bearer(api_token["token"])))
    assert listed(client, new_tokens) == []
    assert works(client, as_tokens(bobs))
    # New ones may be made at once, with the new session's fresh token.
    assert works(client, as_tokens(created(client, new_tokens, "after")))


def test_deleting_the_account_revokes_its_api_tokens(app, auth, client):
    user_id, tokens = auth.user("alice")
    api_token = created(client, tokens)

    response = client.delete(f"/user/{user_id}", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert_revoked(client.get("/me", headers=bearer(api_token["token"])))
    with app.app_context():
        assert db.session.scalars(db.select(ApiTokenModel)).all() == []


@pytest.mark.parametrize(
    "backend",
    ["database-sqlite", pytest.param("database-postgresql", marks=pytest.mark.live)],
    indirect=True,
)
def test_racing_creations_never_pass_the_limit(app, auth, client):
    _, tokens = auth.user("alice")
    for n in range(MAX_API_TOKENS - 3):
        created(client, tokens, f"made before {n}")
    count = 6  # for the last 3 slots (few threads: each holds two connections)
    barrier = threading.Barrier(count)
    statuses: list[int] = [0] * count

    def worker(index: int) -> None:
        barrier.wait()
        response = create(app.test_client(), tokens, f"racer {index}")
        statuses[index] = response.status_code

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201] * 3 + [409] * 3
    assert len(listed(client, tokens)) == MAX_API_TOKENS
