"""Settings fail fast: production never runs with a weak or missing secret."""

from datetime import timedelta
from types import MappingProxyType

import pytest

from app import create_app
from core.environment import normalize_database_url
from core.settings import (
    DEVELOPMENT_JWT_SECRET_KEY,
    ConfigError,
    load_settings,
    validate,
)
from tests.helpers import MFA_KEY, assert_error

STRONG_SECRET = "s" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Neither the developer's environment nor a .env file leaks into these tests."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "APP_ENV",
        "DATABASE_URL",
        "JWT_SECRET_KEY",
        "JWT_ACCESS_TOKEN_EXPIRES",
        "JWT_REFRESH_TOKEN_EXPIRES",
        "SESSION_MAX_AGE",
        "REFRESH_REUSE_GRACE_SECONDS",
        "BLOCKLIST_BACKEND",
        "RATELIMIT_ENABLED",
        "REDIS_URL",
        "AUTH_COOKIES_ENABLED",
        "AUTH_COOKIE_SECURE",
        "AUTH_COOKIE_SAMESITE",
        "DEMO_ENABLED",
        "PUBLIC_URL",
        "TRUSTED_HOSTS",
        "MFA_ENCRYPTION_KEY_FALLBACKS",
    ):
        monkeypatch.delenv(name, raising=False)
    # Production needs one; test_mfa_settings.py tests what happens without it.
    monkeypatch.setenv("MFA_ENCRYPTION_KEY", MFA_KEY)


def _app(**overrides):
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", **overrides})


@pytest.mark.parametrize(
    "secret, reason",
    [
        (None, "must be set"),
        ("short-secret", "at least 32 bytes"),
        (DEVELOPMENT_JWT_SECRET_KEY, "development key"),
    ],
)
def test_production_refuses_weak_secrets(monkeypatch, secret, reason):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")  # the test client's Host
    if secret:
        monkeypatch.setenv("JWT_SECRET_KEY", secret)
    with pytest.raises(ConfigError, match=reason):
        _app()


def test_production_starts_with_a_strong_secret(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")  # the test client's Host
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    app = _app()
    assert app.config["APP_ENV"] == "production"
    assert app.config["JWT_SECRET_KEY"] == STRONG_SECRET
    assert not app.testing


def test_development_warns_and_uses_the_development_key(caplog):
    app = _app()
    assert app.config["APP_ENV"] == "development"
    assert app.config["JWT_SECRET_KEY"] == DEVELOPMENT_JWT_SECRET_KEY
    assert any("JWT_SECRET_KEY is not set" in r.getMessage() for r in caplog.records)


def test_lifetimes_and_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("JWT_ACCESS_TOKEN_EXPIRES", "60")
    monkeypatch.setenv("JWT_REFRESH_TOKEN_EXPIRES", "3600")
    monkeypatch.setenv("REFRESH_REUSE_GRACE_SECONDS", "5")
    monkeypatch.setenv("RATELIMIT_ENABLED", "false")
    app = _app()
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=60)
    assert app.config["JWT_REFRESH_TOKEN_EXPIRES"] == timedelta(seconds=3600)
    assert app.config["REFRESH_REUSE_GRACE_SECONDS"] == 5
    assert app.config["RATELIMIT_ENABLED"] is False


def test_defaults(monkeypatch):
    app = _app()
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=900)
    assert app.config["JWT_REFRESH_TOKEN_EXPIRES"] == timedelta(days=14)
    assert app.config["SESSION_MAX_AGE"] == timedelta(days=30)
    assert app.config["REFRESH_REUSE_GRACE_SECONDS"] == 10
    assert app.config["BLOCKLIST_BACKEND"] == "memory"
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_default_database_is_sqlite_under_instance(monkeypatch):
    app = create_app({})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///app.db"
    with app.app_context():
        from core import db

        assert db.engine.url.database.endswith("instance/app.db")
        db.engine.dispose()


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("JWT_ACCESS_TOKEN_EXPIRES", "soon", "whole number"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "-5", "must not be negative"),
        ("SESSION_MAX_AGE", "0", "SESSION_MAX_AGE must be at least one second"),
        ("RATELIMIT_ENABLED", "maybe", "true or false"),
        ("APP_ENV", "staging", "APP_ENV must be one of"),
        ("BLOCKLIST_BACKEND", "memcached", "BLOCKLIST_BACKEND must be one of"),
    ],
)
def test_garbage_settings_fail_at_start_up(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        _app()


def test_every_setting_that_does_not_parse_is_named_at_once(monkeypatch):
    monkeypatch.setenv("JWT_ACCESS_TOKEN_EXPIRES", "soon")
    monkeypatch.setenv("RATELIMIT_ENABLED", "maybe")
    monkeypatch.setenv("TRUSTED_PROXIES", "-1")
    with pytest.raises(ConfigError) as refused:
        _app()
    assert str(refused.value) == (
        "JWT_ACCESS_TOKEN_EXPIRES must be a whole number, got 'soon'. "
        "RATELIMIT_ENABLED must be true or false, got 'maybe'. "
        "TRUSTED_PROXIES must not be negative, got -1."
    )


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_setting_counts_as_unset(monkeypatch, blank):
    """As a compose file passes an unset one (`NAME: ${NAME:-}`)."""
    for name in (
        "JWT_ACCESS_TOKEN_EXPIRES",
        "RATELIMIT_ENABLED",
        "TRUSTED_HOSTS",
        "JWT_SECRET_KEY",
        "BLOCKLIST_BACKEND",
    ):
        monkeypatch.setenv(name, blank)
    app = _app()
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=900)
    assert app.config["RATELIMIT_ENABLED"] is True
    assert app.config["TRUSTED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert app.config["JWT_SECRET_KEY"] == DEVELOPMENT_JWT_SECRET_KEY
    assert app.config["BLOCKLIST_BACKEND"] == "memory"


@pytest.mark.parametrize(
    "raw, expected",
    [("1", True), (" ON ", True), ("Yes", True), ("0", False), ("off", False)],
)
def test_switches_take_these_words_in_any_case(monkeypatch, raw, expected):
    monkeypatch.setenv("DEMO_ENABLED", raw)
    monkeypatch.setenv("TRUSTED_HOSTS", " a.example.com , ,b.example.com")
    app = _app()
    assert app.config["DEMO_ENABLED"] is expected
    assert app.config["TRUSTED_HOSTS"] == ["a.example.com", "b.example.com"]


def test_overrides_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("JWT_ACCESS_TOKEN_EXPIRES", "60")
    app = _app(TESTING=True, JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=5))
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=5)
    assert app.testing


def test_there_is_no_testing_environment(monkeypatch):
    """Test-only settings live in tests/helpers.py, not in the application."""
    monkeypatch.setenv("APP_ENV", "testing")
    with pytest.raises(ConfigError, match="one of development, production"):
        _app()


def test_the_app_runs_on_the_settings_as_loaded(monkeypatch):
    """One pipeline decides every setting: nothing in the factory rewrites one."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    overrides = {"SQLALCHEMY_DATABASE_URI": "sqlite://", "AUTH_COOKIES_ENABLED": False}
    settings = load_settings(overrides)
    app = create_app(overrides)
    for name, value in settings.values.items():
        assert app.config[name] == value, name
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:1/0"
    assert app.config["JWT_TOKEN_LOCATION"] == ["headers"]


def test_validation_only_reads(monkeypatch):
    """validate() raises or returns; it never fills a setting in."""
    settings = load_settings({"SQLALCHEMY_DATABASE_URI": "sqlite://"}).values
    validate(MappingProxyType(settings))  # a read-only view: any write would raise
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        validate(MappingProxyType({**settings, "LOG_FORMAT": "xml"}))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_are_normalized_to_psycopg3(url, expected):
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "database"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "redis"),
        (
            {"REDIS_URL": "redis://h:6379/0", "BLOCKLIST_BACKEND": "database"},
            "database",
        ),
    ],
)
def test_production_defaults_to_a_shared_blocklist(monkeypatch, env, expected):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")  # the test client's Host
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = _app()
    assert app.config["BLOCKLIST_BACKEND"] == expected
    assert type(app.extensions["blocklist"]).__name__.lower().startswith(expected)


def test_memory_blocklist_in_production_warns(monkeypatch, caplog):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")  # the test client's Host
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    monkeypatch.setenv("BLOCKLIST_BACKEND", "memory")
    _app()
    assert any(
        "revocations are per process and lost on restart" in r.getMessage()
        for r in caplog.records
    )


def test_development_and_testing_default_to_memory_without_warning(caplog):
    app = _app()
    assert app.config["BLOCKLIST_BACKEND"] == "memory"
    assert not any("per process" in r.getMessage() for r in caplog.records)


def test_redis_backend_needs_a_url(monkeypatch):
    monkeypatch.setenv("BLOCKLIST_BACKEND", "redis")
    with pytest.raises(ConfigError, match="needs REDIS_URL"):
        _app()


def test_production_cookies_are_secure_by_default(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")  # the test client's Host
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    assert _app().config["JWT_COOKIE_SECURE"] is True
    monkeypatch.setenv("AUTH_COOKIE_SECURE", "false")
    assert _app().config["JWT_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    ("app_env", "demo_enabled", "status"),
    [
        ("production", None, 404),
        ("production", "true", 200),
        ("development", None, 200),
        ("development", "false", 404),
    ],
)
def test_the_demo_is_off_in_production_unless_asked_for(
    monkeypatch, app_env, demo_enabled, status
):
    monkeypatch.setenv("APP_ENV", app_env)
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")  # the test client's Host
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_SECRET)
    if demo_enabled is not None:
        monkeypatch.setenv("DEMO_ENABLED", demo_enabled)
    app = _app()
    assert app.config["DEMO_ENABLED"] is (status == 200)
    # The page, and the script it loads.
    for path, marker in (
        ("/demo", b'src="demo/demo.js"'),
        ("/demo/demo.js", b"AuthClient"),
    ):
        with app.test_client().get(path) as response:  # closes the file served
            if status == 200:
                assert response.status_code == 200, path
                assert marker in response.data
            else:
                assert_error(response, 404, "not_found")


def test_samesite_none_needs_secure_cookies(monkeypatch):
    monkeypatch.setenv("AUTH_COOKIE_SAMESITE", "None")
    with pytest.raises(ConfigError, match="needs AUTH_COOKIE_SECURE"):
        _app()


def test_cookie_mode_adds_cookies_to_the_token_locations(monkeypatch):
    assert _app().config["JWT_TOKEN_LOCATION"] == ["headers", "cookies"]
    monkeypatch.setenv("AUTH_COOKIES_ENABLED", "false")
    app = _app()
    assert app.config["JWT_TOKEN_LOCATION"] == ["headers"]
    assert app.config["JWT_COOKIE_CSRF_PROTECT"] is False
