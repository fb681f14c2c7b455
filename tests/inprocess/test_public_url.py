"""PUBLIC_URL: the API's external base URL. When it is set, every absolute URL the
API hands out starts with it, whatever the request's Host or forwarded headers
say, and such answers vary on nothing; production refuses to start without it or
TRUSTED_HOSTS (issue 22, finding 3)."""

import re

import pytest
import yaml

from app import create_app
from core.settings import ConfigError, load_settings
from tests.helpers import MFA_KEY, REPO

PUBLIC_URL = "https://api.example.com/api"
METADATA = "/.well-known/oauth-authorization-server"
STRONG_SECRET = "s" * 32
# What a trusted proxy may forward; PUBLIC_URL wins over all of it.
FORWARDED = {
    "X-Forwarded-Host": "api.example.com:8443",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Prefix": "/elsewhere",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("APP_ENV", "PUBLIC_URL", "TRUSTED_HOSTS", "JWT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MFA_ENCRYPTION_KEY", MFA_KEY)  # production needs one


@pytest.fixture
def app_config(app_config) -> dict:
    return {**app_config, "PUBLIC_URL": PUBLIC_URL + "/", "TRUSTED_PROXIES": 1}


@pytest.fixture
def public(client):
    """A request to the public host, as the proxy forwards it: get(path)."""

    def get(path: str):
        return client.get(path, base_url="http://api.example.com", headers=FORWARDED)

    return get


def test_the_server_metadata_is_at_the_public_url(public):
    response = public(METADATA)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_endpoint"] == f"{PUBLIC_URL}/token"
    assert body["revocation_endpoint"] == f"{PUBLIC_URL}/revoke"
    assert body["jwks_uri"] == f"{PUBLIC_URL}/.well-known/jwks.json"
    # The same for every request: cacheable, and varying on nothing.
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert "Vary" not in response.headers


def test_the_openapi_document_names_the_public_url(public):
    response = public("/openapi.json")

    assert response.status_code == 200
    spec = response.get_json()
    assert spec["servers"] == [{"url": PUBLIC_URL}]
    flow = spec["components"]["securitySchemes"]["oauth2"]["flows"]["password"]
    assert flow["tokenUrl"] == flow["refreshUrl"] == f"{PUBLIC_URL}/token"
    assert "Vary" not in response.headers


def test_the_public_url_does_not_admit_other_hosts(client):
    response = client.get(METADATA, headers={"Host": "localhost"})

    assert response.status_code == 400
    assert response.get_json()["error"] == "untrusted_host"


@pytest.mark.parametrize(
    "settings, trusted",
    [
        ({"PUBLIC_URL": "https://API.example.com:8443/api"}, ["api.example.com"]),
        (
            {"PUBLIC_URL": PUBLIC_URL, "TRUSTED_HOSTS": "api.example.com,Internal"},
            ["api.example.com", "internal"],
        ),
        ({"TRUSTED_HOSTS": "api.example.com"}, ["api.example.com"]),
    ],
)
def test_trusted_hosts_default_to_the_public_urls_host(monkeypatch, settings, trusted):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    assert load_settings().values["TRUSTED_HOSTS"] == trusted


def test_development_trusts_the_loopback_names():
    values = load_settings({"APP_ENV": "development"}).values

    assert values["TRUSTED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert values["PUBLIC_URL"] is None


def test_production_refuses_to_start_with_neither(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)

    with pytest.raises(ConfigError, match="Set PUBLIC_URL .* or TRUSTED_HOSTS"):
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})


@pytest.mark.parametrize(
    "url, problem",
    [
        ("api.example.com", "absolute http or https URL"),
        ("/api", "absolute http or https URL"),
        ("ftp://api.example.com", "absolute http or https URL"),
        ("https://", "absolute http or https URL"),
        ("https://api.example.com:port", "is not a URL"),
        ("https://[::1", "is not a URL"),
        ("https://[::1]/api", "by a name or an IPv4 address"),
        ("https://user:pw@api.example.com", "no user name, query or fragment"),
        ("https://api.example.com/api?x=1", "no user name, query or fragment"),
        ("https://api.example.com/api?", "no user name, query or fragment"),
        ("https://api.example.com/#top", "no user name, query or fragment"),
        ("https://api.example.com/#", "no user name, query or fragment"),
        ("https://api.example.com//evil.example", "plain path"),
        ("https://api.example.com/a/../b", "plain path"),
        ("https://api.example.com/a%2Fb", "plain path"),
        ("http://api.example.com", "must be https in production"),
    ],
)
def test_a_public_url_that_is_not_a_base_url_is_refused(monkeypatch, url, problem):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    monkeypatch.setenv("PUBLIC_URL", url)

    with pytest.raises(ConfigError, match=f"^PUBLIC_URL .*{re.escape(problem)}"):
        load_settings()


@pytest.mark.parametrize(
    "app_env, url",
    [
        # A browser treats http://localhost as secure, and no one else reaches it.
        ("production", "http://localhost:8000"),
        ("production", "http://127.0.0.1:8000/api/"),
        ("development", "http://api.example.com"),
    ],
)
def test_plain_http_is_for_loopback_or_development(monkeypatch, app_env, url):
    monkeypatch.setenv("APP_ENV", app_env)
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    monkeypatch.setenv("PUBLIC_URL", url)

    assert load_settings().values["PUBLIC_URL"] == url


@pytest.mark.parametrize(
    "hosts", ["api.example.com:443", "[::1]", "api example.com", "*.example.com"]
)
def test_trusted_hosts_are_names_without_ports(monkeypatch, hosts):
    monkeypatch.setenv("TRUSTED_HOSTS", hosts)

    with pytest.raises(ConfigError, match="TRUSTED_HOSTS holds host names"):
        load_settings()


def test_the_compose_file_starts_with_its_own_public_url(monkeypatch):
    """`docker compose up` as the README says: the app at http://localhost:8000."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    required = {"JWT_SECRET_KEY": STRONG_SECRET, "MFA_ENCRYPTION_KEY": MFA_KEY}
    for name, value in compose["services"]["app"]["environment"].items():
        # ${NAME:-default} is the default; ${NAME:?message} must be given.
        given = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        monkeypatch.setenv(
            name, re.sub(r"\$\{\w+:\?[^}]*\}", lambda _, n=name: required[n], given)
        )

    values = load_settings().values

    assert values["PUBLIC_URL"] == "http://localhost:8000"
    assert values["TRUSTED_HOSTS"] == ["localhost"]
