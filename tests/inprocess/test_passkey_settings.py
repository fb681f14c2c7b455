"""The passkeys' relying party (core/relying_party.py): defaults that work for
./scripts/serve.sh, settings that follow PUBLIC_URL, and a refusal to start
where a browser would never run a ceremony (WebAuthn §5.1.4.1, §13.4.9)."""

import pytest

from app import create_app
from core.environment import ConfigError
from core.settings import load_settings
from tests.helpers import MFA_KEY, TEST_SETTINGS

PRODUCTION = {
    "APP_ENV": "production",
    "JWT_SECRET_KEY": "production-only-jwt-secret-key-0123456789abcdef",
    "MFA_ENCRYPTION_KEY": MFA_KEY,
    "METRICS_ENABLED": False,
}


def settings(**overrides) -> dict:
    return load_settings({**TEST_SETTINGS, **overrides}).values


def relying_party(values: dict) -> tuple:
    return (
        values["WEBAUTHN_RP_ID"],
        values["WEBAUTHN_ORIGINS"],
        values["WEBAUTHN_RP_NAME"],
    )


def test_development_defaults_work_for_serve_sh_on_localhost():
    assert relying_party(settings()) == (
        "localhost",
        ["http://localhost:5000"],
        "Stores REST API",
    )


@pytest.mark.parametrize(
    ("public_url", "rp_id", "origin"),
    [
        ("https://api.example.com", "api.example.com", "https://api.example.com"),
        ("https://example.com/api", "example.com", "https://example.com"),
        ("https://example.com:8443/", "example.com", "https://example.com:8443"),
    ],
    ids=["host", "path-prefix", "port"],
)
def test_production_follows_public_url(public_url, rp_id, origin):
    values = settings(**PRODUCTION, PUBLIC_URL=public_url)

    assert relying_party(values)[:2] == (rp_id, [origin])


def test_a_frontend_on_a_subdomain_is_an_origin_of_the_parent_domain():
    values = settings(
        **PRODUCTION,
        PUBLIC_URL="https://api.example.com",
        WEBAUTHN_RP_ID="example.com",
        WEBAUTHN_ORIGINS=["https://app.example.com", "https://example.com"],
        WEBAUTHN_RP_NAME="Example",
    )

    assert relying_party(values) == (
        "example.com",
        ["https://app.example.com", "https://example.com"],
        "Example",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"WEBAUTHN_RP_ID": "127.0.0.1"}, "must be a domain"),
        ({"WEBAUTHN_RP_ID": "Example.com"}, "must be a domain in lower case"),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": ["https://evil.com"]},
            "is not on WEBAUTHN_RP_ID 'example.com'",
        ),
        (
            {
                "WEBAUTHN_RP_ID": "example.com",
                "WEBAUTHN_ORIGINS": ["https://notexample.com"],
            },
            "is not on WEBAUTHN_RP_ID",
        ),
        (
            {
                "WEBAUTHN_RP_ID": "example.com",
                "WEBAUTHN_ORIGINS": ["http://example.com"],
            },
            "must be https (http only on localhost)",
        ),
        (
            {
                "WEBAUTHN_RP_ID": "example.com",
                "WEBAUTHN_ORIGINS": ["https://example.com/"],
            },
            "must be an exact origin",
        ),
        (
            {
                "WEBAUTHN_RP_ID": "example.com",
                "WEBAUTHN_ORIGINS": ["https://example.com:443"],
            },
            "default port",
        ),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": ["example.com"]},
            "must be an exact origin",
        ),
        ({"WEBAUTHN_CHALLENGE_EXPIRES": 0}, "WEBAUTHN_CHALLENGE_EXPIRES must be"),
        ({"WEBAUTHN_MAX_CREDENTIALS": 0}, "WEBAUTHN_MAX_CREDENTIALS must be"),
    ],
    ids=[
        "ip-rp-id",
        "upper-case",
        "other-domain",
        "suffix-not-subdomain",
        "http",
        "path",
        "default-port",
        "no-scheme",
        "challenge-expires",
        "max-credentials",
    ],
)
def test_settings_no_browser_would_use_refuse_to_start(overrides, message):
    with pytest.raises(ConfigError) as refused:
        settings(**overrides)

    assert message in str(refused.value)


def test_production_without_a_domain_has_no_passkeys_and_says_so(caplog, tmp_path):
    """PUBLIC_URL an IP address: passkeys are off (no routes), with a warning."""
    app = create_app(
        {
            **PRODUCTION,
            "PUBLIC_URL": "http://127.0.0.1",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'off.db'}",
            "BLOCKLIST_BACKEND": "database",
        }
    )

    assert app.config["WEBAUTHN_RP_ID"] is None
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert not {r for r in rules if "passkey" in r or r.endswith("/options")}
    assert "/reauthenticate" in rules
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        w.startswith("Passkeys are off: PUBLIC_URL names no domain") for w in warnings
    )


def test_origins_without_a_relying_party_refuse_to_start():
    with pytest.raises(ConfigError) as refused:
        settings(
            **PRODUCTION,
            PUBLIC_URL="http://127.0.0.1",
            WEBAUTHN_ORIGINS=["https://example.com"],
        )

    assert "WEBAUTHN_ORIGINS needs WEBAUTHN_RP_ID" in str(refused.value)


def test_a_plain_http_public_url_is_not_followed_in_development():
    """No browser runs a ceremony on http://api.example.com: localhost stands."""
    development = settings(PUBLIC_URL="http://api.example.com")

    assert relying_party(development)[:2] == ("localhost", ["http://localhost:5000"])


@pytest.mark.parametrize("public_url", ["https://10.0.0.1", "http://127.0.0.1:5000"])
def test_a_public_url_on_an_ip_address_is_not_followed(public_url):
    """In development the localhost defaults stand; in production passkeys are off."""
    development = settings(PUBLIC_URL=public_url)
    production = load_settings({**PRODUCTION, "PUBLIC_URL": public_url})

    assert relying_party(development)[:2] == ("localhost", ["http://localhost:5000"])
    assert production.values["WEBAUTHN_RP_ID"] is None
    assert any(w.startswith("Passkeys are off") for w in production.warnings)


def test_a_public_url_with_its_default_port_gives_the_origin_browsers_write():
    values = settings(**PRODUCTION, PUBLIC_URL="https://example.com:443/api")

    assert relying_party(values)[:2] == ("example.com", ["https://example.com"])
