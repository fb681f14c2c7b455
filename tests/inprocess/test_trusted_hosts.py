"""TRUSTED_HOSTS: the API answers only the hosts it is told (Flask's own setting),
so no URL it hands out names a host a client made up, and no cache in front keeps
one Host's URLs for another (issue 22, finding 3).

The Flask test client sends `Host: localhost`; the live tests, nginx and the browser
tests `127.0.0.1:<port>`: the development default trusts both, at any port.
"""

import re

import pytest
import yaml

from tests.helpers import REPO, assert_error

METADATA = "/.well-known/oauth-authorization-server"
FORGED_HOST = "evil.example"
# What the API hands out from a request's Host, and a few plain routes.
HOST_PATHS = [
    ("GET", METADATA),
    ("GET", "/openapi.json"),
    ("GET", "/swagger-ui"),
    ("GET", "/demo"),
    ("GET", "/store"),
    ("POST", "/login"),
    ("GET", "/no/such/path"),
]
# Called by address (Docker's HEALTHCHECK at 127.0.0.1, a pod's IP, Prometheus at
# app:8000): they answer any Host, and hold no URL.
ANY_HOST_PATHS = ["/healthz", "/readyz", "/metrics"]


@pytest.fixture
def app_config(request, app_config) -> dict:
    return {**app_config, **getattr(request, "param", {})}


def refused(response) -> None:
    """400 in the envelope, with nothing of the Host sent."""
    message = "The request's Host is not one this API answers."
    assert_error(response, 400, "untrusted_host", message)
    assert FORGED_HOST not in response.get_data(as_text=True)
    assert "evil" not in str(response.headers)


@pytest.mark.parametrize("method, path", HOST_PATHS)
@pytest.mark.parametrize(
    "host", [FORGED_HOST, f"{FORGED_HOST}:80", "localhost.evil.example"]
)
def test_a_request_for_another_host_is_refused(client, method, path, host):
    refused(client.open(path, method=method, headers={"Host": host}))


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:8000"])
def test_the_development_hosts_are_answered_at_any_port(client, host):
    response = client.get(METADATA, headers={"Host": host})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["token_endpoint"] == f"http://{host}/token"


@pytest.mark.parametrize("path", ANY_HOST_PATHS)
def test_the_probes_and_the_metrics_answer_any_host(client, path):
    response = client.get(path, headers={"Host": "10.0.0.7:8000"})

    assert response.status_code == 200, response.get_data(as_text=True)
    if path != "/metrics":
        assert response.get_json()["status"] in ("ok", "ready")


@pytest.mark.parametrize(
    "app_config",
    [{"TRUSTED_HOSTS": ["api.example.com", ".example.org"]}],
    indirect=True,
)
@pytest.mark.parametrize(
    "host, answered",
    [
        ("api.example.com", True),
        ("api.example.com:8443", True),
        ("www.example.org", True),  # the leading "." admits the subdomains
        ("example.org", True),
        ("example.com", False),
        ("localhost", False),  # the development default is gone
        ("api.example.com.evil.example", False),
    ],
)
def test_trusted_hosts_lists_the_names_answered(client, host, answered):
    response = client.get(METADATA, headers={"Host": host})

    if answered:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["jwks_uri"] == f"http://{host}/.well-known/jwks.json"
    else:
        assert_error(response, 400, "untrusted_host")


def test_without_trusted_proxies_a_forwarded_host_changes_nothing(client):
    response = client.get(
        METADATA,
        headers={"X-Forwarded-Host": FORGED_HOST, "X-Forwarded-Proto": "https"},
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["token_endpoint"] == "http://localhost/token"
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("app_config", [{"TRUSTED_PROXIES": 1}], indirect=True)
def test_a_forwarded_host_must_be_trusted_too(client):
    refused(client.get(METADATA, headers={"X-Forwarded-Host": FORGED_HOST}))
    # Only the last hop counts: the proxy's value, not what the client put first.
    refused(
        client.get(METADATA, headers={"X-Forwarded-Host": f"localhost, {FORGED_HOST}"})
    )

    proxied = client.get(
        METADATA,
        headers={"X-Forwarded-Host": "127.0.0.1:8443", "X-Forwarded-Proto": "https"},
    )
    assert proxied.status_code == 200, proxied.get_json()
    assert proxied.get_json()["token_endpoint"] == "https://127.0.0.1:8443/token"


@pytest.mark.parametrize(
    "app_config, vary",
    [
        ({}, "Host"),
        (
            {"TRUSTED_PROXIES": 1},
            "Host, X-Forwarded-Host, X-Forwarded-Proto, X-Forwarded-Prefix",
        ),
    ],
    indirect=["app_config"],
)
def test_the_server_metadata_says_which_headers_its_urls_came_from(client, vary):
    response = client.get(METADATA)

    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Vary"] == vary
    assert response.get_json()["revocation_endpoint"] == "http://localhost/revoke"


@pytest.mark.parametrize("app_config", [{"TRUSTED_PROXIES": 1}], indirect=True)
def test_documents_built_on_the_mount_path_vary_on_the_prefix(client):
    for path in ("/openapi.json", "/swagger-ui"):
        response = client.get(path, headers={"X-Forwarded-Prefix": "/api"})

        assert response.status_code == 200, path
        assert response.headers["Vary"] == "X-Forwarded-Prefix", path
    # Not the other answers: a JSON body holds no URL.
    assert "Vary" not in client.get("/healthz").headers


def test_the_deployment_files_probe_paths_that_answer_any_host(app):
    """Docker's HEALTHCHECK, compose's health check and its Prometheus call the app
    by address (127.0.0.1, app:8000): on paths that answer any Host."""
    dockerfile = (REPO / "Dockerfile").read_text()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    scrape = yaml.safe_load(compose["configs"]["prometheus"]["content"])
    probed = {
        re.search(r"127\.0\.0\.1:[^/]+(/\w+)", dockerfile).group(1),
        re.search(
            r"(/\w+)'", compose["services"]["app"]["healthcheck"]["test"][-1]
        ).group(1),
        scrape["scrape_configs"][0]["metrics_path"],
    }

    assert probed == set(ANY_HOST_PATHS)
    assert app.request_class.any_host_paths == set(ANY_HOST_PATHS)
