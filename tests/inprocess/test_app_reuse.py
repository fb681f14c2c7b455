"""The `app` fixture keeps one app per worker from one test to the next
(tests/app_reuse.py): the next test must not be able to tell it from a new one,
and anything a test changed on it gets the next test a new app."""

import time

import pytest
from flask import Flask

from app import create_app
from blocklist import get_blocklist
from core import db
from models import UserModel
from tests.app_reuse import AppReuse, make_schema
from tests.helpers import (
    LIMITS,
    TEST_SETTINGS,
    AuthActions,
    assert_rate_limited,
    register,
)

REVOKED = {"jti": "a-jti", "sub": "1", "iat": 0}


@pytest.fixture
def reuse(tmp_path) -> AppReuse:
    schema = make_schema(tmp_path / "schema.db", TEST_SETTINGS)
    return AppReuse(tmp_path / "test.db", schema)


def settings(reuse: AppReuse, **overrides) -> dict:
    return {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": reuse.url, **overrides}


def one_test(reuse: AppReuse, config: dict, body=None) -> Flask:
    """What the fixtures do around one test: the app it got."""
    reuse.forget_database()
    app = reuse.get(config)
    if body is not None:
        body(app)
    reuse.release(app)
    return app


def users(app: Flask) -> int:
    with app.app_context():
        return db.session.query(UserModel).count()


def test_the_next_test_gets_the_same_app_with_nothing_of_the_last_one(reuse):
    config = settings(reuse, **LIMITS)  # /register: 2 a minute per client address
    remembered = {}

    def first(app):
        AuthActions(app, app.test_client()).user("alice")
        with app.app_context():
            get_blocklist().revoke("a-jti", time.time() + 3600)
            assert get_blocklist().is_token_revoked(REVOKED)
            remembered["blocklist"] = get_blocklist()
        client = app.test_client()
        assert register(client, "bob").status_code == 201  # alice was the first
        assert_rate_limited(register(client, "carol"))

    def second(app):
        assert users(app) == 0
        with app.app_context():
            assert get_blocklist() is not remembered["blocklist"]
            assert not get_blocklist().is_token_revoked(REVOKED)
        assert register(app.test_client(), "carol").status_code == 201

    kept = one_test(reuse, config, first)
    assert one_test(reuse, config, second) is kept


def test_other_settings_get_a_new_app(reuse):
    kept = one_test(reuse, settings(reuse))

    assert one_test(reuse, settings(reuse, API_TITLE="Another")) is not kept


@pytest.mark.parametrize(
    "change",
    [
        lambda app: app.config.update(JWT_ACCESS_TOKEN_EXPIRES=1),
        lambda app: app.add_url_rule("/boom", "boom", lambda: "boom"),
        lambda app: app.before_request(lambda: None),
        lambda app: app.errorhandler(418)(lambda error: ("teapot", 418)),
        lambda app: app.extensions.update(signing_keys=None),
        lambda app: create_app(settings_of(app)),
    ],
    ids=["settings", "route", "hook", "error-handler", "extension", "another-app"],
)
def test_an_app_a_test_changed_is_not_handed_on(reuse, change):
    config = settings(reuse)
    kept = one_test(reuse, config, change)

    assert one_test(reuse, config) is not kept


def settings_of(app: Flask) -> dict:
    return {
        **TEST_SETTINGS,
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
    }


def test_a_test_may_add_routes_to_the_app_it_was_handed(reuse):
    config = settings(reuse)
    kept = one_test(reuse, config, lambda app: app.test_client().get("/store"))

    app = reuse.get(config)
    assert app is kept
    app.add_url_rule("/boom", "boom", lambda: "boom")
    assert app.test_client().get("/boom").get_data(as_text=True) == "boom"
    reuse.release(app)


def test_a_database_of_the_tests_own_gets_a_new_app_with_the_tables(reuse, tmp_path):
    config = settings(reuse, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'own.db'}")
    first = one_test(
        reuse, config, lambda app: AuthActions(app, app.test_client()).user("bob")
    )

    second = reuse.get(config)
    assert second is not first
    assert users(second) == 1  # its own file: kept, as it would be without reuse
    reuse.release(second)
