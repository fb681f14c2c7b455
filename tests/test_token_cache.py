"""The verified-claims cache skips re-verifying a token, never the checks that
matter per request: expiry, revocation, and the per-app signing key.
"""

import time
from datetime import timedelta

import pytest

from app import create_app
from extensions import db
from jwt_manager import CACHE_EXTENSION, VerifiedClaimsCache
from tests.helpers import assert_error, bearer


def test_a_cached_token_still_expires():
    cache = VerifiedClaimsCache(size=10, leeway=0)
    cache.put("token", {"exp": time.time() + 0.05, "sub": "1"})
    assert cache.get("token") == {"exp": cache._entries["token"]["exp"], "sub": "1"}
    time.sleep(0.06)
    assert cache.get("token") is None
    assert "token" not in cache._entries


def test_the_cache_is_bounded_and_keeps_the_recently_used():
    cache = VerifiedClaimsCache(size=3, leeway=0)
    later = time.time() + 60
    for name in "abc":
        cache.put(name, {"exp": later})
    cache.get("a")
    cache.put("d", {"exp": later})
    assert list(cache._entries) == ["c", "a", "d"]


def test_a_cached_token_is_still_checked_for_revocation(app, auth, client):
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    assert client.get("/me", headers=headers).status_code == 200
    assert tokens["access_token"] in app.extensions[CACHE_EXTENSION]._entries

    assert client.post("/logout", headers=headers).status_code == 200

    assert_error(client.get("/me", headers=headers), 401, "token_revoked")


@pytest.fixture
def app_config(request, app_config):
    return {**app_config, **getattr(request, "param", {})}


@pytest.mark.parametrize("app_config", [{"JWT_DECODE_LEEWAY": 0}], indirect=True)
def test_a_cached_token_is_refused_once_expired(app, auth, client):
    token = auth.access_token("1", expires_delta=timedelta(seconds=1))
    auth.register("alice")
    assert client.get("/store", headers=bearer(token)).status_code == 200
    time.sleep(1.1 + app.config["JWT_DECODE_LEEWAY"])

    assert_error(client.get("/store", headers=bearer(token)), 401, "token_expired")


def test_the_cache_belongs_to_one_app(app_config, auth, client):
    _, tokens = auth.user("alice")
    assert client.get("/me", headers=bearer(tokens["access_token"])).status_code == 200

    other = create_app({**app_config, "JWT_SECRET_KEY": "another-secret-key-" * 3})
    try:
        response = other.test_client().get(
            "/store", headers=bearer(tokens["access_token"])
        )
        assert_error(response, 401, "invalid_token")
    finally:
        with other.app_context():
            db.engine.dispose()
