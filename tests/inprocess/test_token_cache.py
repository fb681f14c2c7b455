"""The verified-claims cache skips re-verifying a token, never the checks that
matter per request: expiry, revocation, and the per-app signing key.
"""

import time
from datetime import timedelta

import jwt
import pytest

from app import create_app
from auth.claims_cache import CACHE_EXTENSION, VerifiedClaimsCache
from core import db
from tests.helpers import assert_error, bearer

HEADER = {"alg": "HS256", "typ": "JWT"}


def test_a_cached_token_still_expires():
    cache = VerifiedClaimsCache(size=10, leeway=0)
    claims = {"exp": time.time() + 0.05, "sub": "1"}
    cache.put("token", HEADER, claims)
    assert cache.get("token") == (HEADER, claims)
    time.sleep(0.06)
    assert cache.get("token") is None
    assert "token" not in cache._entries


def test_the_cache_is_bounded_and_keeps_the_recently_used():
    cache = VerifiedClaimsCache(size=3, leeway=0)
    later = time.time() + 60
    for name in "abc":
        cache.put(name, HEADER, {"exp": later})
    cache.get("a")
    cache.put("d", HEADER, {"exp": later})
    # b, the least recently used, made room for d.
    assert [name for name in "abcd" if cache.get(name)] == ["a", "c", "d"]


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


def test_a_cached_token_is_not_parsed_again(app, auth, client, monkeypatch):
    """Neither its claims nor its header: Flask-JWT-Extended's second look at the
    header is served from the cache too (see jwt_manager.py)."""
    _, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    assert client.get("/me", headers=headers).status_code == 200
    parsed = []
    real_header, real_decode = jwt.get_unverified_header, jwt.decode
    monkeypatch.setattr(
        jwt, "get_unverified_header", lambda t: parsed.append(t) or real_header(t)
    )
    monkeypatch.setattr(
        jwt, "decode", lambda t, *a, **k: parsed.append(t) or real_decode(t, *a, **k)
    )

    response = client.get("/me", headers=headers)

    assert response.status_code == 200
    assert response.get_json()["username"] == "alice"
    assert parsed == []


def test_an_uncached_token_is_verified_in_full(app, auth, client, monkeypatch):
    _, tokens = auth.user("alice")
    app.extensions[CACHE_EXTENSION]._entries.clear()
    parsed = []
    real_decode = jwt.decode
    monkeypatch.setattr(
        jwt, "decode", lambda t, *a, **k: parsed.append(t) or real_decode(t, *a, **k)
    )

    response = client.get("/me", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert tokens["access_token"] in parsed
