"""Where the rate limits are counted: in a shared storage backend when one is
configured (REDIS_URL, or RATELIMIT_STORAGE_URI from the environment), else each
process's memory, and then the start-up warning that says what the budgets really
are."""

from datetime import timedelta

import pytest

from app import create_app
from core import db
from core.settings import (
    ConfigError,
    load_settings,
    per_worker_limits_warning,
    scaled_limit,
)
from tests.helpers import PASSWORD, TEST_SETTINGS
from tests.services import redis_namespace

REDIS = "redis://127.0.0.1:6379/3"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Neither the developer's environment nor a .env file leaks into these tests."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "APP_ENV",
        "REDIS_URL",
        "REDIS_KEY_PREFIX",
        "RATELIMIT_ENABLED",
        "RATELIMIT_STORAGE_URI",
        "RATELIMIT_LOGIN_USERNAME",
        "RATELIMIT_LOGIN_USERNAME_TOTAL",
        "DEVICE_COOKIE_MAX_AGE",
    ):
        monkeypatch.delenv(name, raising=False)


def settings(**overrides) -> dict:
    return load_settings({"SQLALCHEMY_DATABASE_URI": "sqlite://", **overrides}).values


def test_without_a_shared_store_each_process_counts_in_memory():
    values = settings()

    assert values["RATELIMIT_STORAGE_URI"] == "memory://"
    assert "RATELIMIT_STORAGE_OPTIONS" not in values


def test_with_redis_the_limits_are_counted_there_under_the_key_prefix(monkeypatch):
    monkeypatch.setenv("REDIS_URL", REDIS)
    monkeypatch.setenv("REDIS_KEY_PREFIX", "shop:")

    values = settings()

    assert values["RATELIMIT_STORAGE_URI"] == REDIS
    assert values["RATELIMIT_STORAGE_OPTIONS"] == {"key_prefix": "shop:ratelimit"}


@pytest.mark.parametrize(
    "uri, options",
    [
        ("rediss://cache.internal:6380/2", {"key_prefix": "stores-api:ratelimit"}),
        (
            "redis+sentinel://sentinel:26379/limits",
            {"key_prefix": "stores-api:ratelimit"},
        ),
        ("memcached://cache.internal:11211", None),
    ],
)
def test_rate_limit_storage_uri_is_read_from_the_environment(monkeypatch, uri, options):
    monkeypatch.setenv("REDIS_URL", REDIS)  # the limits' own storage wins over it
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", uri)

    values = settings()

    assert values["RATELIMIT_STORAGE_URI"] == uri
    assert values.get("RATELIMIT_STORAGE_OPTIONS") == options


def test_the_budgets_and_the_device_cookies_lifetime_come_from_the_environment(
    monkeypatch,
):
    monkeypatch.setenv("RATELIMIT_LOGIN_USERNAME", "3 per minute")
    monkeypatch.setenv("RATELIMIT_LOGIN_USERNAME_TOTAL", "50 per day")
    monkeypatch.setenv("DEVICE_COOKIE_MAX_AGE", "86400")

    values = settings()

    assert values["RATELIMIT_LOGIN_USERNAME"] == "3 per minute"
    assert values["RATELIMIT_LOGIN_USERNAME_TOTAL"] == "50 per day"
    assert values["DEVICE_COOKIE_MAX_AGE"] == timedelta(days=1)


def test_the_defaults():
    values = settings()

    assert values["RATELIMIT_LOGIN_USERNAME"] == "5 per minute;20 per hour"
    assert values["RATELIMIT_LOGIN_USERNAME_TOTAL"] == "100 per day"
    assert values["DEVICE_COOKIE_MAX_AGE"] == timedelta(days=180)


@pytest.mark.parametrize("value", ["lots", "5 per fortnight", ""])
def test_a_limit_that_does_not_parse_stops_the_start(monkeypatch, value):
    monkeypatch.setenv("RATELIMIT_LOGIN_USERNAME_TOTAL", value or " ")

    with pytest.raises(ConfigError, match="RATELIMIT_LOGIN_USERNAME_TOTAL must be"):
        settings()


def test_per_process_limits_with_several_workers_are_warned_about():
    warning = per_worker_limits_warning(settings(), 4)

    assert warning == (
        "Rate limits are counted in each worker's memory (RATELIMIT_STORAGE_URI="
        "memory://) and 4 workers serve: every limit allows up to 4 times its "
        "number (RATELIMIT_LOGIN_USERNAME '5 per minute;20 per hour' allows "
        "'20 per 1 minute;80 per 1 hour'). Set REDIS_URL or RATELIMIT_STORAGE_URI "
        "to a shared store."
    )


@pytest.mark.parametrize(
    "overrides, workers",
    [
        ({}, 1),
        ({"RATELIMIT_ENABLED": False}, 4),
        ({"RATELIMIT_STORAGE_URI": REDIS}, 4),
    ],
    ids=["one-worker", "limits-off", "shared-storage"],
)
def test_no_warning_when_the_limits_mean_what_they_say(overrides, workers):
    assert per_worker_limits_warning(settings(**overrides), workers) is None


def test_a_limit_scaled():
    assert scaled_limit("10 per minute; 100 per 2 hours", 3) == (
        "30 per 1 minute;300 per 2 hour"
    )


@pytest.mark.live
def test_the_login_budgets_are_counted_in_the_configured_store(monkeypatch, tmp_path):
    """Set in the environment only, RATELIMIT_STORAGE_URI holds the counters, under
    the key prefix, and no key holds a username as it was typed."""
    with redis_namespace() as (url, prefix, client):
        monkeypatch.setenv("RATELIMIT_STORAGE_URI", url)
        monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
        app = create_app(
            {
                **TEST_SETTINGS,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'limits.db'}",
                "RATELIMIT_ENABLED": True,
                "RATELIMIT_LOGIN_USERNAME": "2 per minute",
            }
        )
        with app.app_context():
            db.create_all()
        browser = app.test_client()
        wrong = {"username": "Alice", "password": PASSWORD}
        assert [browser.post("/login", json=wrong).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]
        keys = [key.decode() for key in client.scan_iter(match=f"{prefix}*")]
        assert keys and all(key.startswith(prefix + "ratelimit") for key in keys)
        assert not [key for key in keys if "alice" in key.lower()], keys
