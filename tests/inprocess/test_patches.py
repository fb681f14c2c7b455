"""Library patches: applied by the factory (never at import), once, and only on the
library versions they were tested with."""

import struct
import subprocess
import sys
import textwrap

import flask_jwt_extended.view_decorators
import flask_limiter._limits
import limits
import pytest
from flask import Flask
from flask_jwt_extended import JWTManager
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError, InvalidKeyError
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

import core.patches
from app import create_app
from core import limiter
from core.patches import PATCHES, PatchError, check_versions
from tests.helpers import REPO, TEST_SETTINGS, bearer

SETTINGS = {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"}


def test_every_patch_names_the_versions_it_was_tested_with():
    assert {patch.distribution for patch in PATCHES} == {
        "flask-jwt-extended",
        "flask-limiter",
        "prometheus-client",
        "pyjwt",
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
        from jwt.api_jws import PyJWS
        from jwt.algorithms import HMACAlgorithm
        from prometheus_client.mmap_dict import MmapedDict
        import flask_limiter._limits as limits_module
        import app

        def patched():
            return (
                getattr(JWTManager._decode_jwt_from_config, "_claims_cache_patch", 0),
                getattr(views.get_unverified_jwt_headers, "_claims_cache_patch", 0),
                getattr(PyJWS._decode_base64url_segment, "_c_check_patch", 0),
                getattr(HMACAlgorithm.prepare_key, "_once_patch", 0),
                getattr(limits_module.parse_many, "_once_patch", 0),
                getattr(PyJWS._load, "_once_patch", 0),
                getattr(MmapedDict.read_all_values_from_file, "_unsized_patch", 0),
            )

        assert patched() == (0,) * 7, patched()
        app.create_app({SETTINGS!r})
        assert patched() == (True,) * 7, patched()
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
    segment = PyJWS._decode_base64url_segment

    create_app(SETTINGS)

    assert JWTManager._decode_jwt_from_config is decode
    assert flask_jwt_extended.view_decorators.get_unverified_jwt_headers is header
    assert PyJWS._decode_base64url_segment is segment


def test_the_idle_limiter_pass_is_dropped_when_only_route_limits_exist():
    """(With app-wide limits it stays: test_rate_limits's default-limit test. Not
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


# --- PyJWT's base64url segments, checked in C ---------------------------------------

# Mostly the alphabet and padding, with the junk and the lengths that must fail.
SEGMENT_BYTES = st.sampled_from(
    list(core.patches.BASE64URL_ALPHABET) + list(b"==+/!. \x00\xff")
)
SEGMENTS = st.lists(SEGMENT_BYTES, max_size=40).map(bytes)


def _patched_segment():
    """PyJWT's segment decoder, patched (as the factory does it; idempotent)."""
    core.patches._check_base64url_segments_in_c(Flask(__name__))
    return PyJWS._decode_base64url_segment


def _outcome(decode, segment: bytes):
    try:
        return decode(segment, "payload")
    except DecodeError as error:
        return ("refused", str(error))


@given(SEGMENTS)
def test_the_segment_check_answers_exactly_as_pyjwts_own(segment):
    patched = _patched_segment()
    assert _outcome(patched, segment) == _outcome(patched.original, segment)


@pytest.mark.parametrize(
    "segment",
    [b"e30", b"e30=", b"eyJhIjoxfQ", b"eyJhIjoxfQ==", b"", b"QUJD", b"QUI"],
)
def test_well_formed_segments_decode(segment):
    patched = _patched_segment()
    assert patched(segment, "payload") == patched.original(segment, "payload")


@pytest.mark.parametrize(
    "segment",
    [b"e30!", b"e3 0", b"e30===", b"e3=0", b"e", b"e30+", b"e30/", b"QUJ="],
)
def test_malformed_segments_are_refused(segment):
    with pytest.raises(DecodeError, match="Invalid payload padding"):
        _patched_segment()(segment, "payload")


# --- PyJWT's parse of a token, once in a row ---------------------------------------


def _patched_load():
    core.patches._parse_each_token_once(Flask(__name__))
    return PyJWS._load


# Tokens of three segments of the alphabet and some junk: some parse, most do not.
TOKENS = st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda parts: b".".join(parts))
GOOD_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0"
    ".eyJzdWIiOiIxIiwidHlwZSI6InJlZnJlc2gifQ.c2lnbmF0dXJl"
)


def _loaded(load, token):
    try:
        return load(PyJWS(), token)
    except DecodeError as error:
        return ("refused", str(error))


@given(TOKENS, st.booleans())
def test_a_parse_answers_as_pyjwts_own_the_first_time_and_again(token, as_text):
    load = _patched_load()
    token = token.decode("latin-1") if as_text else token
    expected = _loaded(load.original, token)

    assert _loaded(load, token) == expected
    assert _loaded(load, token) == expected  # the kept parse, if it parsed


def test_each_caller_gets_a_header_of_its_own():
    load = _patched_load()
    first = load(PyJWS(), GOOD_TOKEN)[2]
    first["alg"] = "none"
    second = load(PyJWS(), GOOD_TOKEN)[2]

    assert second == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    assert second is not first


def test_a_parse_that_failed_is_not_kept():
    load = _patched_load()
    load(PyJWS(), GOOD_TOKEN)
    for _ in range(2):
        with pytest.raises(DecodeError, match="Not enough segments"):
            load(PyJWS(), "not-a-token")
    # The same characters as bytes (never equal to the kept str): parsed anew.
    assert load(PyJWS(), GOOD_TOKEN.encode()) == load.original(
        PyJWS(), GOOD_TOKEN.encode()
    )


def test_a_refresh_parses_its_token_once(auth, client, monkeypatch):
    """Flask-JWT-Extended and PyJWT read a new token four times: one parse, so
    three segments decoded (each parse checks and decodes all three)."""
    _, tokens = auth.user()
    decode_segment = PyJWS._decode_base64url_segment
    decoded = []

    def counted(segment: bytes, name: str) -> bytes:
        decoded.append(name)
        return decode_segment(segment, name)

    monkeypatch.setattr(PyJWS, "_decode_base64url_segment", staticmethod(counted))
    response = client.post("/refresh", headers=bearer(tokens["refresh_token"]))

    assert response.status_code == 200, response.get_json()
    assert decoded == ["header", "payload", "crypto"]


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


# --- what is kept: HMAC secrets checked, limit strings parsed -------------------------

PEM_KEY = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    b"-----END PUBLIC KEY-----\n"
)


def test_an_hmac_secret_prepares_as_pyjwt_does_and_a_bad_one_is_always_refused():
    create_app(SETTINGS)
    algorithm = HMACAlgorithm(HMACAlgorithm.SHA256)
    secret = "a-secret-of-the-right-kind-0123456789abcdef"

    assert algorithm.prepare_key(secret) == secret.encode()
    assert algorithm.prepare_key(secret.encode()) == secret.encode()
    for _ in range(2):  # a refusal is not kept: each call refuses
        with pytest.raises(InvalidKeyError, match="asymmetric key"):
            algorithm.prepare_key(PEM_KEY)
        with pytest.raises(InvalidKeyError, match="must not be empty"):
            algorithm.prepare_key("")


def test_a_limit_string_parses_as_before_and_a_bad_one_is_always_refused():
    create_app(SETTINGS)
    parse = flask_limiter._limits.parse_many

    assert list(parse("10 per minute;100 per hour")) == limits.parse_many(
        "10 per minute;100 per hour"
    )
    assert [str(limit) for limit in parse("30 per minute")] == ["30 per 1 minute"]
    for _ in range(2):
        with pytest.raises(ValueError, match="couldn't parse"):
            parse("lots per fortnight")
