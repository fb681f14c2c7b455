"""Library patches: applied by the factory (never at import), once, and only on the
library versions they were tested with."""

import subprocess
import sys
import textwrap

import flask_jwt_extended.view_decorators
import pytest
from flask import Flask
from flask_jwt_extended import JWTManager

import core.patches
from app import create_app
from core import limiter
from core.patches import PATCHES, PatchError, check_versions
from tests.helpers import REPO, TEST_SETTINGS

SETTINGS = {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"}


def test_every_patch_names_the_versions_it_was_tested_with():
    assert {patch.distribution for patch in PATCHES} == {
        "flask-jwt-extended",
        "flask-limiter",
    }
    check_versions()  # the pinned versions are the tested ones


def test_an_untested_library_version_stops_the_start(monkeypatch):
    monkeypatch.setattr(core.patches, "version", lambda name: "99.0.0")
    with pytest.raises(PatchError) as refused:
        create_app(SETTINGS)
    message = str(refused.value)
    assert "flask-jwt-extended 99.0.0 is installed" in message
    assert "tested with 4.7.4 only" in message
    assert "core/patches.py" in message


def test_patches_are_applied_by_the_factory_not_at_import():
    script = textwrap.dedent(
        f"""
        import flask_jwt_extended.view_decorators as views
        from flask_jwt_extended import JWTManager
        import app

        def patched():
            return (
                getattr(JWTManager._decode_jwt_from_config, "_claims_cache_patch", 0),
                getattr(views.get_unverified_jwt_headers, "_claims_cache_patch", 0),
            )

        assert patched() == (0, 0), patched()
        app.create_app({SETTINGS!r})
        assert patched() == (True, True), patched()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_second_app_does_not_patch_again():
    create_app(SETTINGS)
    decode = JWTManager._decode_jwt_from_config
    header = flask_jwt_extended.view_decorators.get_unverified_jwt_headers

    create_app(SETTINGS)

    assert JWTManager._decode_jwt_from_config is decode
    assert flask_jwt_extended.view_decorators.get_unverified_jwt_headers is header


def test_the_idle_limiter_pass_is_dropped_when_only_route_limits_exist():
    """(With app-wide limits it stays: test_security's default-limit test. Not
    built here: Flask-Limiter keeps the first app's default limits process-wide.)"""
    app = create_app({**SETTINGS, "RATELIMIT_ENABLED": True})

    assert limiter._check_request_limit not in app.before_request_funcs[None]


def test_a_limiter_that_no_longer_registers_its_hook_fails_loudly():
    # An app on which Flask-Limiter registered no before_request hook, as a
    # version that stopped doing so would leave it.
    app = Flask(__name__)
    app.config.update(RATELIMIT_ENABLED=True)
    with pytest.raises(PatchError, match="no longer registers _check_request_limit"):
        core.patches._drop_idle_limiter_pass(app)
