"""Library patches: applied by the factory (never at import), once; on a library
version a patch was not tested with it steps aside with one warning, and the app
answers as before; LIBRARY_PATCHES=false applies none. (The contract tests with
every patch left out: tests/live/test_library_patches_off.py.)"""

import dataclasses
import struct
import subprocess
import sys
import textwrap
from importlib.metadata import version

import flask_jwt_extended.view_decorators
import pytest
from flask import Flask
from flask_jwt_extended import JWTManager
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

import core.patches
from app import create_app
from auth.claims_cache import CACHE_EXTENSION
from core import db, limiter
from core.patches import CLAIMS_CACHE_LOOKUP, PATCHES
from tests.helpers import REPO, TEST_SETTINGS, AuthActions, bearer

SETTINGS = {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
HMAC_PATCH = "HMAC secrets checked once"


def test_every_patch_names_the_versions_it_was_tested_with():
    assert {patch.distribution for patch in PATCHES} == {
        "flask-jwt-extended",
        "flask-limiter",
        "prometheus-client",
        "pyjwt",
    }
    for patch in PATCHES:
        assert patch.tested_versions, patch.name
        assert all(tested.count(".") == 2 for tested in patch.tested_versions)


@pytest.fixture
def applied(monkeypatch) -> list[str]:
    """The names of the patches the factory applies from now on (in this test),
    and a process that has warned of none yet."""
    names: list[str] = []

    def recorded(patch):
        def apply(app):
            names.append(patch.name)
            return patch.apply(app)

        return dataclasses.replace(patch, apply=apply)

    monkeypatch.setattr(core.patches, "PATCHES", tuple(map(recorded, PATCHES)))
    monkeypatch.setattr(core.patches, "_stepped_aside", set())
    return names


def _pretend_installed(monkeypatch, distribution: str, installed: str) -> None:
    def installed_version(name: str) -> str:
        return installed if name == distribution else version(name)

    monkeypatch.setattr(core.patches, "version", installed_version)


def _serve(app_config: dict):
    """An app on a fresh database, its test client and its `auth` helpers."""
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    return app, client, AuthActions(app, client)


def _assert_answers_as_before(client, auth) -> None:
    """Log in, read, refresh, read with the new token, create, log out."""
    user_id, tokens = auth.user("alice")
    me = client.get("/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["username"] == "alice"
    refreshed = client.post("/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200, refreshed.get_json()
    pair = refreshed.get_json()
    assert pair["token_type"] == "Bearer"
    assert pair["access_token"] != tokens["access_token"]
    again = client.get(f"/user/{user_id}", headers=bearer(pair["access_token"]))
    assert again.status_code == 200
    assert again.get_json()["username"] == "alice"
    created = client.post(
        "/store", json={"name": "Corner shop"}, headers=bearer(tokens["access_token"])
    )
    assert created.status_code == 201
    assert created.get_json()["name"] == "Corner shop"
    out = client.post("/logout", headers=bearer(pair["access_token"]))
    assert out.status_code == 200
    gone = client.get("/me", headers=bearer(pair["access_token"]))
    assert gone.status_code == 401
    assert gone.get_json()["error"] == "token_revoked"


# Each patched library: the version its patches were tested with, and they.
STEPPING_ASIDE = {
    "pyjwt": ("2.15.1", [HMAC_PATCH]),
    "flask-jwt-extended": (
        "4.7.4",
        [
            "verified-token cache in the decode step",
            "token header from the verified-token cache",
        ],
    ),
    "flask-limiter": ("4.1.1", ["no idle app-wide rate-limit pass"]),
    "prometheus-client": ("0.26.0", ["metrics files not sized yet read as empty"]),
}


@pytest.mark.parametrize("distribution", list(STEPPING_ASIDE))
def test_an_untested_library_version_skips_its_patches_with_one_warning(
    distribution, app_config, applied, monkeypatch, caplog
):
    tested, skipped = STEPPING_ASIDE[distribution]
    _pretend_installed(monkeypatch, distribution, "99.0.0")
    app_config["RATELIMIT_ENABLED"] = True  # Flask-Limiter registers its pass

    app, client, auth = _serve(app_config)
    create_app(SETTINGS)  # a second app in the same process: no second warning

    assert sorted(set(applied)) == sorted(
        patch.name for patch in PATCHES if patch.name not in skipped
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"Library patch '{name}' skipped: {distribution} 99.0.0 is installed, and "
        f"the patch was tested with {tested} only. {distribution}'s own code runs "
        "(correct, slower); see core/patches.py."
        for name in skipped
    ]
    _assert_answers_as_before(client, auth)
    # Each library's own path, where this app can show it: the token decoded
    # by Flask-JWT-Extended, Flask-Limiter's app-wide pass.
    library_decodes = distribution == "flask-jwt-extended"
    assert (CLAIMS_CACHE_LOOKUP not in app.extensions) is library_decodes
    assert (len(app.extensions[CACHE_EXTENSION]._entries) == 0) is library_decodes
    limiter_pass = limiter._check_request_limit in app.before_request_funcs[None]
    assert limiter_pass is (distribution == "flask-limiter")


def test_library_patches_false_applies_none(app_config, applied, caplog):
    app_config.update(LIBRARY_PATCHES=False, RATELIMIT_ENABLED=True)

    app, client, auth = _serve(app_config)

    assert applied == []
    assert CLAIMS_CACHE_LOOKUP not in app.extensions
    # Flask-Limiter's own app-wide pass runs, and nothing warns.
    assert limiter._check_request_limit in app.before_request_funcs[None]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    _assert_answers_as_before(client, auth)
    # The decode patches (process-wide) left this app's tokens to the library.
    assert len(app.extensions[CACHE_EXTENSION]._entries) == 0


def test_patches_are_applied_by_the_factory_not_at_import():
    """In a fresh process, as a worker starts: nothing at import, nothing with
    LIBRARY_PATCHES=false, every patch by the factory (on the tested versions)."""
    script = textwrap.dedent(
        f"""
        import flask_jwt_extended.view_decorators as views
        from flask_jwt_extended import JWTManager
        from jwt.algorithms import HMACAlgorithm
        from prometheus_client.mmap_dict import MmapedDict
        import app
        import core.patches

        tested = {{p.distribution: p.tested_versions[0] for p in core.patches.PATCHES}}
        core.patches.version = tested.get  # whichever version is pinned

        def patched():
            return [
                getattr(function, "_library_patch", False)
                for function in (
                    JWTManager._decode_jwt_from_config,
                    views.get_unverified_jwt_headers,
                    HMACAlgorithm.prepare_key,
                    MmapedDict.read_all_values_from_file,
                )
            ]

        assert patched() == [False] * 4, patched()
        app.create_app({{**{SETTINGS!r}, "LIBRARY_PATCHES": False}})
        assert patched() == [False] * 4, patched()
        app.create_app({SETTINGS!r})
        assert patched() == [True] * 4, patched()
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
    prepare_key = HMACAlgorithm.prepare_key

    create_app(SETTINGS)

    assert JWTManager._decode_jwt_from_config is decode
    assert flask_jwt_extended.view_decorators.get_unverified_jwt_headers is header
    assert HMACAlgorithm.prepare_key is prepare_key


# --- Flask-Limiter's idle app-wide pass -----------------------------------------------


def test_the_idle_limiter_pass_is_dropped_when_only_route_limits_exist():
    """(With app-wide limits it stays: test_rate_limits's default-limit test. Not
    built here: Flask-Limiter keeps the first app's default limits process-wide.)"""
    app = create_app({**SETTINGS, "RATELIMIT_ENABLED": True})

    assert limiter._check_request_limit not in app.before_request_funcs[None]


def test_a_limiter_that_no_longer_registers_its_hook_is_left_alone(monkeypatch, caplog):
    # An app on which Flask-Limiter registered no before_request hook, as a
    # version that stopped doing so would leave it.
    monkeypatch.setattr(core.patches, "_stepped_aside", set())
    app = Flask("app")
    app.config.update(RATELIMIT_ENABLED=True, LIBRARY_PATCHES=True)
    app.before_request_funcs[None] = [hook := lambda: None]

    for _ in range(2):
        core.patches.apply_patches(app)

    assert app.before_request_funcs[None] == [hook]
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage().startswith(
        "Library patch 'no idle app-wide rate-limit pass' skipped: Flask-Limiter no "
        "longer registers _check_request_limit as a hook. flask-limiter's own code"
    )


# --- prometheus-client's multiprocess files -----------------------------------------


def test_a_metrics_file_not_sized_yet_reads_as_empty(tmp_path):
    """A scrape while another worker is creating its file: that worker's empty
    file holds nothing yet, and every other file is still counted."""
    core.patches._read_unsized_metric_files_as_empty(Flask(__name__))
    key = mmap_key("jobs_total", "jobs_total", (), (), "Jobs done.")
    written = MmapedDict(str(tmp_path / "counter_100.db"))
    written.write_value(key, 3.0, 0.0)
    written.close()
    unsized = tmp_path / "counter_200.db"
    unsized.touch()  # created, not sized yet
    read = MmapedDict.read_all_values_from_file
    with pytest.raises(struct.error):  # the library's own answer
        read.original(str(unsized))

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    samples = {s.name: s.value for m in registry.collect() for s in m.samples}

    assert read(str(unsized)) == []
    assert samples == {"jobs_total": 3.0}


# --- PyJWT's HMAC secrets, checked once -----------------------------------------------

PEM_KEY = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    b"-----END PUBLIC KEY-----\n"
)


def test_an_hmac_secret_prepares_as_pyjwt_does_and_a_bad_one_is_always_refused():
    core.patches._prepare_hmac_keys_once(Flask(__name__))
    algorithm = HMACAlgorithm(HMACAlgorithm.SHA256)
    secret = "a-secret-of-the-right-kind-0123456789abcdef"

    assert algorithm.prepare_key(secret) == secret.encode()
    assert algorithm.prepare_key(secret.encode()) == secret.encode()
    for _ in range(2):  # a refusal is not kept: each call refuses
        with pytest.raises(InvalidKeyError, match="asymmetric key"):
            algorithm.prepare_key(PEM_KEY)
        with pytest.raises(InvalidKeyError, match="must not be empty"):
            algorithm.prepare_key("")
