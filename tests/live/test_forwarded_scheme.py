"""gunicorn follows TRUSTED_PROXIES (issue 22, finding 4): gunicorn itself believes
no forwarded header (gunicorn.conf.py), so with TRUSTED_PROXIES=0 none of the
scheme headers gunicorn knows makes a request https, from loopback or anywhere;
with TRUSTED_PROXIES=1 the app's ProxyFix reads X-Forwarded-Proto from the proxy.

Each server is the production entry point on loopback (`gunicorn "app:create_app()"`
with gunicorn.conf.py), talked to with requests.
"""

import os
import secrets
from collections.abc import Iterator

import pytest
import requests

from tests import servers
from tests.helpers import MFA_KEY
from tests.servers import HOST, free_port

METADATA = "/.well-known/oauth-authorization-server"
HSTS = "Strict-Transport-Security"
# gunicorn's default secure_scheme_headers: each made a request https.
SCHEME_HEADERS = [
    {"X-Forwarded-Proto": "https"},
    {"X-Forwarded-Ssl": "on"},
    {"X-Forwarded-Protocol": "ssl"},
]


def _env(tmp, proxies: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "TRUSTED_HOSTS": HOST,
        "TRUSTED_PROXIES": str(proxies),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp / 'scheme.db'}",
        "BLOCKLIST_BACKEND": "database",
        "METRICS_TOKEN": secrets.token_urlsafe(16),
        "RATELIMIT_ENABLED": "false",
        "HOST": HOST,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
    }


def _server(tmp_path_factory, proxies: int) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp(f"scheme-{proxies}")
    with servers.live_server(_env(tmp, proxies), tmp / "gunicorn.log") as base:
        yield base


@pytest.fixture(scope="module")
def direct(tmp_path_factory) -> Iterator[str]:
    """The base URL of a live gunicorn with TRUSTED_PROXIES=0."""
    yield from _server(tmp_path_factory, 0)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory) -> Iterator[str]:
    """The base URL of a live gunicorn with TRUSTED_PROXIES=1."""
    yield from _server(tmp_path_factory, 1)


@pytest.fixture(params=["direct", "proxied"])
def server(request) -> str:
    """Each of the two servers in turn."""
    return request.getfixturevalue(request.param)


def metadata(base: str, headers: dict[str, str]) -> requests.Response:
    response = requests.get(
        base + METADATA, headers=headers, timeout=servers.REQUEST_TIMEOUT
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("headers", SCHEME_HEADERS, ids=lambda h: next(iter(h)))
def test_no_scheme_header_makes_plain_http_https_without_a_trusted_proxy(
    direct, headers
):
    response = metadata(direct, headers)

    assert response.json()["token_endpoint"] == f"{direct}/token"
    assert HSTS not in response.headers


def test_behind_one_trusted_proxy_only_x_forwarded_proto_counts(proxied):
    https = proxied.replace("http://", "https://")

    believed = metadata(proxied, {"X-Forwarded-Proto": "https"})
    # gunicorn's other two are not the app's: ignored.
    others = [metadata(proxied, h) for h in SCHEME_HEADERS[1:]]

    assert believed.json()["token_endpoint"] == f"{https}/token"
    assert believed.headers[HSTS] == "max-age=31536000; includeSubDomains"
    for response in others:
        assert response.json()["token_endpoint"] == f"{proxied}/token"
        assert HSTS not in response.headers


def test_a_script_name_header_does_not_mount_the_api(server):
    """gunicorn's forwarder_headers would take SCRIPT_NAME from a header of that
    name, from a loopback peer."""
    response = requests.get(
        server + "/openapi.json",
        headers={"SCRIPT_NAME": "//evil.example"},
        timeout=servers.REQUEST_TIMEOUT,
    )

    assert response.status_code == 200, response.text
    assert "servers" not in response.json()


def test_a_forged_host_is_refused_and_the_probes_answer_any(server):
    forged = requests.get(
        server + METADATA,
        headers={"Host": "evil.example"},
        timeout=servers.REQUEST_TIMEOUT,
    )
    probe = requests.get(
        server + "/readyz",
        headers={"Host": "10.0.0.7:8000"},
        timeout=servers.REQUEST_TIMEOUT,
    )

    assert forged.status_code == 400
    assert forged.json()["error"] == "untrusted_host"
    assert "evil" not in forged.text
    assert probe.status_code == 200, probe.text
    assert probe.json()["status"] == "ready"
