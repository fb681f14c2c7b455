"""Off-the-shelf OAuth 2.0 client libraries against POST /token on a live gunicorn:
Authlib and requests-oauthlib log in with the password grant and, once the
2-second access token has expired, refresh by themselves with the refresh_token
grant (RFC 6749 §4.3, §6)."""

import os
import secrets
import time
from collections.abc import Iterator

import pytest
import requests_oauthlib
from authlib.integrations.requests_client import OAuth2Session
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient

from tests import servers
from tests.helpers import PASSWORD
from tests.servers import HOST, free_port

ACCESS_LIFETIME = 2


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    """A live server with 2-second access tokens and a registered user."""
    tmp = tmp_path_factory.mktemp("oauth-clients")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "development",
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp / 'oauth.db'}",
        "BLOCKLIST_BACKEND": "database",
        "HOST": HOST,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "JWT_ACCESS_TOKEN_EXPIRES": str(ACCESS_LIFETIME),
        # The default 5 s leeway would keep "expired" tokens valid for 7 s.
        "JWT_DECODE_LEEWAY": "0",
        "RATELIMIT_ENABLED": "false",
    }
    with servers.live_server(env, tmp / "gunicorn.log", workers=2) as url:
        servers.register(url, "alice")
        yield url


def assert_refreshes_by_itself(session, base_url, first: dict, updates: list) -> None:
    """A library session logged in with `first`: it works, and once the access
    token has expired the next request goes through after one refresh of its own,
    which handed the library (`updates`) a new pair."""
    assert first["token_type"] == "Bearer" and first["refresh_token"]
    assert session.get(f"{base_url}/me").json()["username"] == "alice"

    time.sleep(ACCESS_LIFETIME + 0.5)
    me = session.get(f"{base_url}/me")

    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    assert len(updates) == 1
    assert updates[0]["access_token"] != first["access_token"]
    assert updates[0]["refresh_token"] != first["refresh_token"]


def test_authlib_refreshes_by_itself(base_url):
    updates: list[dict] = []
    session = OAuth2Session(
        client_id="authlib-test",
        token_endpoint=f"{base_url}/token",
        update_token=lambda token, refresh_token=None, access_token=None: (
            updates.append(token)
        ),
        # Refresh only once the token has expired (Authlib's default is 60 s early).
        leeway=0,
    )
    first = session.fetch_token(
        f"{base_url}/token", username="alice", password=PASSWORD, grant_type="password"
    )
    assert_refreshes_by_itself(session, base_url, first, updates)


def test_requests_oauthlib_refreshes_by_itself(base_url, monkeypatch):
    # Plain http on loopback: oauthlib insists on https otherwise.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    updates: list[dict] = []
    session = requests_oauthlib.OAuth2Session(
        client=LegacyApplicationClient(client_id="oauthlib-test"),
        auto_refresh_url=f"{base_url}/token",
        auto_refresh_kwargs={"client_id": "oauthlib-test"},
        token_updater=updates.append,
    )
    first = session.fetch_token(
        f"{base_url}/token", username="alice", password=PASSWORD
    )
    assert_refreshes_by_itself(session, base_url, first, updates)


def test_a_refused_refresh_surfaces_as_invalid_grant(base_url, monkeypatch):
    """A library's refresh of a revoked session fails with the RFC code it knows."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    session = requests_oauthlib.OAuth2Session(
        client=LegacyApplicationClient(client_id="oauthlib-test")
    )
    tokens = session.fetch_token(
        f"{base_url}/token", username="alice", password=PASSWORD
    )
    revoked = servers.request(
        base_url, "POST", "/revoke", body={"token": tokens["refresh_token"]}
    )
    assert revoked.status == 200, revoked.body

    with pytest.raises(InvalidGrantError):
        session.refresh_token(
            f"{base_url}/token", refresh_token=tokens["refresh_token"]
        )
