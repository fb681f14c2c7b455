"""Behind a trusted proxy, a forwarded value is believed only when it is what its
header means: an IPv4/IPv6 address in X-Forwarded-For, `http` or `https` in
X-Forwarded-Proto, a path in X-Forwarded-Prefix. Anything else is ignored, and
the connection's own value stays (issue 22, findings 3 and 6): it never becomes a
URL, a session's address or a log line.
"""

import logging
import re

import pytest
from gunicorn.config import Config

from tests.helpers import PASSWORD, REPO, bearer

METADATA = "/.well-known/oauth-authorization-server"
PEER = "127.0.0.1"  # the test client's REMOTE_ADDR
LONG = "1" * 300
NOT_ADDRESSES = [
    "<script>alert(1)</script>",
    LONG,
    "1.2.3.4, <script>",  # only the last hop counts, and it is no address
    "fe80::1%eth0",  # a zone id names the proxy's own link
    "fe80::1%<script>",  # ...and Python's ipaddress keeps any text there
    "203.0.113.5:4711",
    "[2001:db8::1]",
    "01.2.3.4",
    "unknown",
    "_hidden",  # RFC 7239 §6.3's obfuscated identifier: not an address either
]
ADDRESSES = {
    "203.0.113.5": "203.0.113.5",
    "2001:db8::1": "2001:db8::1",
    "::ffff:192.0.2.1": "::ffff:192.0.2.1",
    "<script>, 203.0.113.5": "203.0.113.5",  # the proxy's hop is the last one
}
NOT_PATHS = [
    "//evil.example",
    "https://evil.example",
    "https://evil.example/api",
    "evil.example",
    "/api//evil.example",
    "/\\evil.example",
    "/../api",
    "/api/..",
    "/a b",
    "/api?x=1",
    "/api#x",
    "/%2F%2Fevil.example",
    '/"><script>',
]


@pytest.fixture
def app_config(request, app_config) -> dict:
    """One trusted proxy; the address tests on SQLite and PostgreSQL (whose column
    of 45 characters refused 300 of them: a 500)."""
    revocation_backend = {}
    if "database_backend" in request.fixturenames:
        revocation_backend = request.getfixturevalue("database_backend")
    return {**app_config, **revocation_backend, "TRUSTED_PROXIES": 1}


def login_from(client, forwarded_for: str) -> dict:
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def clients_logged(caplog) -> set[str]:
    return {r.client for r in caplog.records if r.name.startswith("api.")}


@pytest.mark.parametrize("forwarded_for", NOT_ADDRESSES)
def test_a_forwarded_for_that_is_no_address_is_never_stored_or_logged(
    database_backend, auth, client, caplog, forwarded_for
):
    auth.register("alice")
    caplog.set_level(logging.INFO)

    tokens = login_from(client, forwarded_for)

    response = client.get("/me/sessions", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()
    assert [s["ip_address"] for s in response.get_json()] == [PEER]
    assert clients_logged(caplog) == {PEER}
    logged = " ".join(str(vars(r)) for r in caplog.records)
    assert "<script>" not in logged and LONG not in logged


@pytest.mark.parametrize("forwarded_for, address", sorted(ADDRESSES.items()))
def test_a_forwarded_address_is_the_clients(
    auth, client, caplog, forwarded_for, address
):
    auth.register("alice")
    caplog.set_level(logging.INFO)

    tokens = login_from(client, forwarded_for)

    response = client.get("/me/sessions", headers=bearer(tokens["access_token"]))
    assert [s["ip_address"] for s in response.get_json()] == [address]
    (success,) = [
        r for r in caplog.records if getattr(r, "event", "") == "login_success"
    ]
    assert success.client == address


@pytest.mark.parametrize(
    "proto, scheme",
    [
        ("https", "https"),
        ("HTTPS", "https"),  # RFC 3986 §3.1: schemes are case-insensitive
        ("http, https", "https"),  # the last hop
        ("javascript", "http"),
        ("https://evil.example", "http"),
        ("ftp", "http"),
        ("https, ftp", "http"),
    ],
)
def test_a_forwarded_scheme_is_http_or_https_or_ignored(client, proto, scheme):
    response = client.get(METADATA, headers={"X-Forwarded-Proto": proto})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["token_endpoint"] == f"{scheme}://localhost/token"
    assert ("Strict-Transport-Security" in response.headers) is (scheme == "https")


@pytest.mark.parametrize("prefix", NOT_PATHS)
def test_a_forwarded_prefix_that_is_no_path_is_ignored(auth, client, prefix):
    forged = {"X-Forwarded-Prefix": prefix}

    spec = client.get("/openapi.json", headers=forged).get_json()
    assert "servers" not in spec  # the root, as without a prefix
    flow = spec["components"]["securitySchemes"]["oauth2"]["flows"]["password"]
    assert flow["tokenUrl"] == "/token"

    page = client.get("/swagger-ui", headers=forged).get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(sources) == 5
    assert all(s.startswith(("/swagger-ui-assets/", "/static/")) for s in sources)
    assert 'data-spec-url="/openapi.json"' in page

    metadata = client.get(METADATA, headers=forged).get_json()
    assert metadata["token_endpoint"] == "http://localhost/token"

    auth.register("alice")
    login = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, "token_delivery": "cookie"},
        headers=forged,
    )
    assert login.status_code == 200, login.get_json()
    paths = {
        re.search(r"Path=([^;]+)", c).group(1)
        for c in login.headers.getlist("Set-Cookie")
    }
    assert paths == {"/", "/refresh"}


@pytest.mark.parametrize(
    "prefix, mounted",
    [
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/v1/stores-api", "/v1/stores-api"),
        ("/", ""),
    ],
)
def test_a_forwarded_path_is_the_mount_path(client, prefix, mounted):
    spec = client.get(
        "/openapi.json", headers={"X-Forwarded-Prefix": prefix}
    ).get_json()
    metadata = client.get(METADATA, headers={"X-Forwarded-Prefix": prefix}).get_json()

    assert spec.get("servers") == ([{"url": mounted}] if mounted else None)
    assert metadata["token_endpoint"] == f"http://localhost{mounted}/token"


@pytest.mark.parametrize("proxies", ["0", "1", "2"])
def test_gunicorn_believes_no_forwarded_header_whatever_trusted_proxies(
    monkeypatch, tmp_path, proxies
):
    """gunicorn's defaults trust loopback (and Unix socket) peers' scheme headers
    and SCRIPT_NAME/PATH_INFO headers; the app's ProxyFix alone reads them."""
    monkeypatch.setenv("TRUSTED_PROXIES", proxies)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # none made
    settings: dict = {}
    exec((REPO / "gunicorn.conf.py").read_text(), settings)
    config = Config()
    for name in ("forwarded_allow_ips", "secure_scheme_headers", "forwarder_headers"):
        config.set(name, settings[name])

    assert config.forwarded_allow_ips == []
    assert config.secure_scheme_headers == {}
    assert config.forwarder_headers == []
