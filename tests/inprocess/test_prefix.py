"""Mounted under a path prefix: behind a trusted proxy's X-Forwarded-Prefix, or
with the server's SCRIPT_NAME, every URL the API hands out is under the prefix
(the OpenAPI document, Swagger UI, the cookies, discovery, /demo). A prefix the
client sends itself, with no trusted proxy, changes nothing.
"""

import re
from textwrap import dedent

import pytest

from tests.helpers import PASSWORD, REPO, set_cookies
from tests.proxy import LOCATION

PREFIX = "/api"
# How a mount path reaches the app: (settings, what each request carries, the
# prefix the app must then use).
MOUNTS = {
    "x-forwarded-prefix": (
        {"TRUSTED_PROXIES": 1},
        {"headers": {"X-Forwarded-Prefix": PREFIX}},
        PREFIX,
    ),
    # As gunicorn sets it from a SCRIPT_NAME environment variable. (Not through
    # environ_base: werkzeug's EnvironBuilder writes its own SCRIPT_NAME over it.)
    "script-name": ({}, {"environ_overrides": {"SCRIPT_NAME": PREFIX}}, PREFIX),
    # Sent by the client, with no proxy the settings trust: ignored.
    "forged-header": ({}, {"headers": {"X-Forwarded-Prefix": PREFIX}}, ""),
}
COOKIE_LOGIN = {"username": "alice", "password": PASSWORD, "token_delivery": "cookie"}
TOKEN_COOKIES = (
    "access_token_cookie",
    "csrf_access_token",
    "refresh_token_cookie",
    "csrf_refresh_token",
)
# The refresh cookie goes to /refresh only; its CSRF value is read by the page's
# JavaScript, so it lives at the root (of the mount) with the access cookies.
PATHS = {
    "access_token_cookie": "/",
    "csrf_access_token": "/",
    "refresh_token_cookie": "/refresh",
    "csrf_refresh_token": "/",
}


@pytest.fixture(params=sorted(MOUNTS))
def mount(request) -> str:
    return request.param


@pytest.fixture
def app_config(app_config, mount) -> dict:
    return {**app_config, **MOUNTS[mount][0]}


@pytest.fixture
def prefix(mount) -> str:
    """The path prefix the app must use for this mount ("" for none)."""
    return MOUNTS[mount][2]


@pytest.fixture
def send(app, mount):
    """A request through the mount, on a client without a cookie jar (cookies are
    sent as given): send(method, path, headers=..., json=...)."""
    client = app.test_client(use_cookies=False)
    carried = MOUNTS[mount][1]

    def send(method: str, path: str, headers: dict | None = None, **options):
        return client.open(
            path,
            method=method,
            headers={**carried.get("headers", {}), **(headers or {})},
            environ_overrides=carried.get("environ_overrides"),
            **options,
        )

    return send


def _path(line: str) -> str:
    return re.search(r"Path=([^;]+)", line).group(1)


def _cookie_header(response) -> str:
    """A Cookie header that sends back every cookie the response set."""
    return "; ".join(line.split(";", 1)[0] for line in set_cookies(response).values())


def _text(response) -> str:
    """A 200 response's body (the file it came from closed)."""
    with response:
        assert response.status_code == 200, response.status
        return response.get_data(as_text=True)


def _sources(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_openapi_document_names_the_prefix_as_its_server(send, prefix):
    spec = send("GET", "/openapi.json").get_json()

    # Without a prefix, no servers: OpenAPI's default server is "/".
    assert spec.get("servers") == ([{"url": prefix}] if prefix else None)
    # Paths stay relative to the server: Try it out sends GET /api/me.
    assert "/me" in spec["paths"] and f"{PREFIX}/me" not in spec["paths"]
    password = spec["components"]["securitySchemes"]["oauth2"]["flows"]["password"]
    # Swagger UI resolves these against the server URL, so they carry the prefix.
    assert password["tokenUrl"] == password["refreshUrl"] == f"{prefix}/token"


def test_the_document_without_a_prefix_stays_as_it_was(app, send):
    send("GET", "/openapi.json")  # a prefixed document first: no trace of it after
    spec = app.test_client().get("/openapi.json").get_json()

    assert "servers" not in spec  # OpenAPI's default server: "/"
    password = spec["components"]["securitySchemes"]["oauth2"]["flows"]["password"]
    assert password["tokenUrl"] == password["refreshUrl"] == "/token"


def test_swagger_ui_and_its_assets_are_under_the_prefix(send, prefix):
    response = send("GET", "/swagger-ui")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'data-spec-url="{prefix}/openapi.json"' in html
    sources = _sources(html)
    assert len(sources) == 5, sources  # stylesheet, icon and three scripts
    for source in sources:
        assert source.startswith((f"{prefix}/swagger-ui-assets/", f"{prefix}/static/"))
        asset = send("GET", source.removeprefix(prefix))
        assert asset.status_code == 200 and len(asset.data) > 200, source
        asset.close()


def test_the_cookies_are_set_refreshed_and_cleared_under_the_prefix(auth, send, prefix):
    auth.register("alice")

    login = send("POST", "/login", json=COOKIE_LOGIN)
    assert login.status_code == 200, login.get_json()
    cookies = set_cookies(login)
    assert sorted(cookies) == sorted(TOKEN_COOKIES)
    assert {name: _path(line) for name, line in cookies.items()} == {
        name: prefix + path for name, path in PATHS.items()
    }
    assert "HttpOnly" in cookies["refresh_token_cookie"]
    assert "HttpOnly" not in cookies["csrf_refresh_token"]

    csrf = login.headers.getlist("Set-Cookie")
    [refresh_csrf] = [c for c in csrf if c.startswith("csrf_refresh_token=")]
    refreshed = send(
        "POST",
        "/refresh",
        headers={
            "Cookie": _cookie_header(login),
            "X-CSRF-TOKEN": refresh_csrf.split(";")[0].split("=", 1)[1],
        },
    )
    assert refreshed.status_code == 200, refreshed.get_json()
    assert {name: _path(line) for name, line in set_cookies(refreshed).items()} == {
        name: prefix + path for name, path in PATHS.items()
    }

    access_csrf = set_cookies(refreshed)["csrf_access_token"].split(";")[0]
    logout = send(
        "POST",
        "/logout",
        headers={
            "Cookie": _cookie_header(refreshed),
            "X-CSRF-TOKEN": access_csrf.split("=", 1)[1],
        },
    )
    assert logout.status_code == 200, logout.get_json()
    cleared = set_cookies(logout)
    # Unset at the paths they were set at, or the browser keeps them.
    assert {name: _path(line) for name, line in cleared.items()} == {
        name: prefix + path for name, path in PATHS.items()
    }
    assert all("Expires=Thu, 01 Jan 1970" in line for line in cleared.values())


def test_the_discovery_documents_name_the_prefixed_endpoints(send, prefix):
    metadata = send("GET", "/.well-known/oauth-authorization-server").get_json()

    assert metadata["token_endpoint"] == f"http://localhost{prefix}/token"
    assert metadata["revocation_endpoint"] == f"http://localhost{prefix}/revoke"
    assert metadata["jwks_uri"] == f"http://localhost{prefix}/.well-known/jwks.json"
    assert send("GET", "/.well-known/jwks.json").status_code == 200


def test_the_demo_page_and_its_modules_load_under_the_prefix(send):
    html, demo = _text(send("GET", "/demo")), _text(send("GET", "/demo/demo.js"))

    # Relative to <prefix>/demo: <prefix>/demo/demo.css and <prefix>/demo/demo.js.
    assert _sources(html) == ["demo/demo.css", "#", "demo/demo.js"]
    assert 'from "./auth-client.js"' in demo
    assert 'new URL("..", import.meta.url)' in demo  # the API: <prefix>/
    # No request of its own to the host's root (api.fetch paths are the API's).
    assert not re.search(r"""(?<![.\w])fetch\(\s*["'`]/""", demo)
    assert _text(send("GET", "/demo/auth-client.js")).startswith("// auth-client.js")
    assert _text(send("GET", "/demo/demo.css"))


def test_the_deployment_guide_shows_the_nginx_config_the_tests_run():
    guide = (REPO / "docs" / "deployment.md").read_text()
    [snippet] = re.findall(r"```nginx\n(.*?)```", guide, re.DOTALL)

    assert snippet == dedent(LOCATION.replace("UPSTREAM", "127.0.0.1:8000"))
