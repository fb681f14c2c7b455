"""Behind a real nginx under /api (tests/proxy.py, docs/deployment.md): gunicorn
with TRUSTED_PROXIES=1 hands out URLs and cookies under the prefix, at nginx's
address, and cookie mode's refresh works through it. Without a proxy, gunicorn's
SCRIPT_NAME mounts the API the same way."""

import os
import secrets
from collections.abc import Iterator

import pytest
import requests

from tests import servers
from tests.helpers import PASSWORD
from tests.proxy import PREFIX, nginx
from tests.servers import HOST, free_port


def _env(tmp) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "development",
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp / 'proxy.db'}",
        "BLOCKLIST_BACKEND": "database",
        "RATELIMIT_ENABLED": "false",
        "AUTH_COOKIE_SECURE": "false",  # plain http on loopback
        "HOST": HOST,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
    }


@pytest.fixture(scope="module")
def proxied(tmp_path_factory) -> Iterator[str]:
    """nginx in front of a live gunicorn: the site's base URL (the API at /api)."""
    tmp = tmp_path_factory.mktemp("proxy")
    env = {**_env(tmp), "TRUSTED_PROXIES": "1"}
    with servers.live_server(env, tmp / "gunicorn.log") as upstream:
        with nginx(tmp / "nginx", upstream) as site:
            yield site


def test_the_openapi_document_through_nginx_names_the_prefix(proxied):
    reply = servers.request(proxied + PREFIX, "GET", "/openapi.json")

    assert reply.status == 200, reply.body
    assert reply.body["servers"] == [{"url": PREFIX}]
    password = reply.body["components"]["securitySchemes"]["oauth2"]["flows"]
    assert password["password"]["tokenUrl"] == f"{PREFIX}/token"


def test_the_server_metadata_names_nginxs_address(proxied):
    reply = servers.request(
        proxied + PREFIX, "GET", "/.well-known/oauth-authorization-server"
    )

    assert reply.status == 200, reply.body
    assert reply.body["token_endpoint"] == f"{proxied}{PREFIX}/token"
    assert reply.body["jwks_uri"] == f"{proxied}{PREFIX}/.well-known/jwks.json"


def test_what_a_client_forwards_through_nginx_forges_nothing(proxied):
    """nginx sets -Proto, -Host and -Prefix itself and appends to -For: a client's
    own values never reach the app as the last hop."""
    forged = {
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "//evil.example",
        "X-Forwarded-For": "<script>",
    }
    api = proxied + PREFIX
    timeout = servers.REQUEST_TIMEOUT

    metadata = requests.get(
        f"{api}/.well-known/oauth-authorization-server", headers=forged, timeout=timeout
    )
    spec = requests.get(f"{api}/openapi.json", headers=forged, timeout=timeout)
    evil = requests.get(
        f"{api}/openapi.json", headers={"Host": "evil.example"}, timeout=timeout
    )

    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["token_endpoint"] == f"{api}/token"
    assert spec.json()["servers"] == [{"url": PREFIX}]
    # The Host nginx was sent is the one it forwards: not a trusted one.
    assert evil.status_code == 400, evil.text
    assert evil.json()["error"] == "untrusted_host"


def test_cookie_mode_logs_in_and_refreshes_through_nginx(proxied):
    api = proxied + PREFIX
    username = f"user_{secrets.token_hex(4)}"
    servers.register(api, username)
    with requests.Session() as browser:  # a cookie jar that honours the paths
        login = browser.post(
            f"{api}/login",
            json={
                "username": username,
                "password": PASSWORD,
                "token_delivery": "cookie",
            },
            timeout=servers.REQUEST_TIMEOUT,
        )
        assert login.status_code == 200, login.text
        paths = {cookie.name: cookie.path for cookie in browser.cookies}
        assert paths == {
            "access_token_cookie": f"{PREFIX}/",
            "csrf_access_token": f"{PREFIX}/",
            "refresh_token_cookie": f"{PREFIX}/refresh",
            "csrf_refresh_token": f"{PREFIX}/",
        }
        assert browser.get(f"{api}/me", timeout=5).json()["username"] == username

        refreshed = browser.post(
            f"{api}/refresh",
            headers={"X-CSRF-TOKEN": browser.cookies["csrf_refresh_token"]},
            timeout=servers.REQUEST_TIMEOUT,
        )

        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json() == {"token_type": "Bearer", "expires_in": 900}
        # The new pair replaced the old one at the same paths (one of each).
        assert {cookie.name: cookie.path for cookie in browser.cookies} == paths
        assert browser.get(f"{api}/me", timeout=5).json()["username"] == username


def test_gunicorn_with_a_script_name_serves_the_api_under_it(tmp_path):
    env = {**_env(tmp_path), "SCRIPT_NAME": PREFIX}
    log = tmp_path / "gunicorn.log"
    with servers.live_server(env, log, ready_path=f"{PREFIX}/healthz") as base:
        api = base + PREFIX
        spec = servers.request(api, "GET", "/openapi.json")
        metadata = servers.request(
            api, "GET", "/.well-known/oauth-authorization-server"
        )

    assert spec.status == 200 and spec.body["servers"] == [{"url": PREFIX}]
    assert metadata.body["token_endpoint"] == f"{api}/token"
