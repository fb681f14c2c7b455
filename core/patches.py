"""Every change this app makes to a library's internals, in one place.

Each patch names the library version it was tested with and what it buys
(measured: docs/performance.md). `apply_patches`, called by the factory, refuses
to start on any other version of a patched library, so an upgrade is a decision:
test the patch against the new version (tests/inprocess/test_patches.py), then add
the version here. Where a library offers a public hook, use the hook instead.
"""

import functools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import flask_jwt_extended.view_decorators
import flask_limiter._limits
import jwt
from flask import Flask
from flask_jwt_extended import JWTManager
from jwt import api_jws as jws
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode
from prometheus_client.mmap_dict import MmapedDict

from auth.claims_cache import claims_cache
from core.extensions import limiter

# RFC 4648 §5: the URL- and filename-safe alphabet, the only bytes of a segment.
BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Flask-Limiter settings whose limits only its before_request hook applies.
APP_WIDE_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")


class PatchError(RuntimeError):
    """A patched library is not the version its patch was tested with."""


@dataclass(frozen=True)
class Patch:
    """One change to a library's internals, and the versions it is known to fit."""

    name: str
    distribution: str
    tested_versions: tuple[str, ...]
    apply: Callable[[Flask], None]


def _decode_through_claims_cache(_app: Flask) -> None:
    """A token verified a moment ago skips Flask-JWT-Extended's decode step.

    `JWTManager._decode_jwt_from_config` parses a token four times and checks its
    signature; there is no public hook around it. Cookie tokens (the CSRF value is
    compared while decoding) and lenient decodes always take the full path.
    """
    original = JWTManager._decode_jwt_from_config
    if getattr(original, "_claims_cache_patch", False):
        return  # applied by an earlier app in this process

    def decode(
        self: JWTManager,
        encoded_token: str,
        csrf_value: Any = None,
        allow_expired: bool = False,
    ) -> dict:
        cache = claims_cache()
        if cache is None or csrf_value is not None or allow_expired:
            return original(self, encoded_token, csrf_value, allow_expired)
        entry = cache.get(encoded_token)
        if entry is not None:
            return entry.claims
        claims = original(self, encoded_token)
        # A refresh token is spent by its one use: keeping it would only push
        # access tokens, which come back, out of the cache.
        if claims.get("type") != "refresh":
            cache.put(encoded_token, jwt.get_unverified_header(encoded_token), claims)
        return claims

    decode._claims_cache_patch = True  # type: ignore[attr-defined]
    JWTManager._decode_jwt_from_config = decode  # type: ignore[method-assign]


def _header_from_claims_cache(_app: Flask) -> None:
    """The header of a cached token comes from the cache.

    After decoding, `view_decorators._decode_jwt_from_request` reads the token's
    header once more through the module-level name `get_unverified_jwt_headers`,
    and PyJWT checks every character of the whole token to do so. A token the
    cache does not hold takes the library's own function.
    """
    module = flask_jwt_extended.view_decorators
    original = module.get_unverified_jwt_headers
    if getattr(original, "_claims_cache_patch", False):
        return

    def header(encoded_token: str) -> dict:
        cache = claims_cache()
        entry = None if cache is None else cache.get(encoded_token)
        return original(encoded_token) if entry is None else entry.header

    header._claims_cache_patch = True  # type: ignore[attr-defined]
    module.get_unverified_jwt_headers = header


def _check_base64url_segments_in_c(_app: Flask) -> None:
    """PyJWT's check of a token's base64url segments, without a Python loop.

    Since PyJWT 2.12, `PyJWS._decode_base64url_segment` refuses padding tricks,
    characters outside the alphabet (GHSA-hxm8-2xgr-2p9m) and non-canonical
    encodings; it tests the alphabet one character at a time in a generator,
    three segments a parse (a new token's one parse: `_parse_each_token_once`).
    The same checks here, the alphabet one by `bytes.translate`.
    """
    original = jws.PyJWS._decode_base64url_segment
    if getattr(original, "_c_check_patch", False):
        return

    def decode_segment(segment: bytes, name: str) -> bytes:
        data = segment.rstrip(b"=")
        padding = len(segment) - len(data)
        if (
            padding > 2
            or (padding and len(segment) % 4)
            or len(data) % 4 == 1
            or data.translate(None, BASE64URL_ALPHABET)
        ):
            raise DecodeError(f"Invalid {name} padding")
        # Past those checks the alphabet and the length are right: it decodes.
        decoded = base64url_decode(data)
        # Only the one canonical spelling of these bytes is accepted.
        if base64url_encode(decoded) != data:
            raise DecodeError(f"Invalid {name} padding")
        return decoded

    decode_segment._c_check_patch = True  # type: ignore[attr-defined]
    # The library's own, which the tests compare it with.
    decode_segment.original = original  # type: ignore[attr-defined]
    jws.PyJWS._decode_base64url_segment = staticmethod(decode_segment)  # type: ignore[method-assign]


def _parse_each_token_once(_app: Flask) -> None:
    """A token is split and base64-decoded once, not four times in a row.

    Verifying a token the claims cache does not hold (every refresh token, and an
    access token the first time) parses it four times: Flask-JWT-Extended reads
    its claims and its header unverified, PyJWT verifies it, and the view
    decorator reads the header again. Each parse runs `PyJWS._load`: split, three
    base64url segments checked and decoded, the header's JSON. Its result depends
    on the token string alone, so each thread keeps the last one; a parse that
    fails is never kept (the next one fails again). The signature, the claims and
    everything else are still checked by each caller; the header is decoded again
    from its own segment for each caller, so no two share a dict.
    """
    original = jws.PyJWS._load
    if getattr(original, "_once_patch", False):
        return
    last = threading.local()

    def load(
        self: jws.PyJWS, token: str | bytes
    ) -> tuple[bytes, bytes, dict[str, Any], bytes]:
        kept = getattr(last, "parsed", None)
        if kept is not None and kept[0] == token:
            _token, payload, signing_input, signature = kept
            header_segment = signing_input.split(b".", 1)[0]
            return (
                payload,
                signing_input,
                json.loads(base64url_decode(header_segment)),
                signature,
            )
        payload, signing_input, header, signature = original(self, token)
        last.parsed = (token, payload, signing_input, signature)
        return payload, signing_input, header, signature

    load._once_patch = True  # type: ignore[attr-defined]
    load.original = original  # type: ignore[attr-defined]
    jws.PyJWS._load = load  # type: ignore[method-assign, assignment]


def _read_unsized_metric_files_as_empty(_app: Flask) -> None:
    """A worker's metrics file that is not sized yet reads as holding nothing.

    In multiprocess mode prometheus-client creates a process's file, then sizes it
    (`MmapedDict.__init__`). A scrape answered by another worker in between read
    the empty file and failed with `struct.error`, a 500; and if the process died
    in between, every later scrape failed (prometheus/client_python#1199, open).
    Sizing is one `ftruncate`, so a file is either empty or whole, and an empty
    one holds no values yet. Any other file is read as before.
    """
    original = MmapedDict.read_all_values_from_file
    if getattr(original, "_unsized_patch", False):
        return

    def read_all_values_from_file(filename: str) -> list:
        if os.path.getsize(filename) == 0:
            return []
        return original(filename)

    read_all_values_from_file._unsized_patch = True  # type: ignore[attr-defined]
    read_all_values_from_file.original = original  # type: ignore[attr-defined]
    MmapedDict.read_all_values_from_file = staticmethod(read_all_values_from_file)  # type: ignore[method-assign]


def _prepare_hmac_keys_once(_app: Flask) -> None:
    """An HMAC secret is checked once, not at every signature.

    PyJWT's `HMACAlgorithm.prepare_key` refuses secrets that are really
    asymmetric keys, certificates or JWKs (PEM and SSH patterns, a DER parse, a
    JSON parse) every time a token is signed or verified: three times a refresh.
    The answer depends on the key alone, so it is kept for the few keys an app
    has; a refused key is refused again each time (exceptions are not kept).
    """
    original = HMACAlgorithm.prepare_key
    if getattr(original, "_once_patch", False):
        return

    @functools.lru_cache(maxsize=16)
    def prepared(algorithm: HMACAlgorithm, key: str | bytes) -> bytes:
        return original(algorithm, key)

    def prepare_key(self: HMACAlgorithm, key: str | bytes) -> bytes:
        return prepared(self, key)

    prepare_key._once_patch = True  # type: ignore[attr-defined]
    HMACAlgorithm.prepare_key = prepare_key  # type: ignore[method-assign]


def _parse_limit_strings_once(_app: Flask) -> None:
    """A rate-limit string is parsed once, not at every request.

    The limits here are read from the settings per request (a callable), and
    Flask-Limiter parses what the callable returns each time (`parse_many`, a
    regular expression per limit): at /token, three strings a request. The same
    string always parses to the same limits; they are kept as a tuple, which
    Flask-Limiter only iterates.
    """
    original = flask_limiter._limits.parse_many
    if getattr(original, "_once_patch", False):
        return

    @functools.lru_cache(maxsize=64)
    def parse_many(limit_string: str) -> tuple:
        return tuple(original(limit_string))

    parse_many._once_patch = True  # type: ignore[attr-defined]
    flask_limiter._limits.parse_many = parse_many  # type: ignore[assignment]


def _drop_idle_limiter_pass(app: Flask) -> None:
    """No app-wide Flask-Limiter pass on every request when only route limits exist.

    Every limit here is a `rate_limited` decorator, which Flask-Limiter checks when
    the view is called. Its before_request hook only applies default, application
    and meta limits: with none configured it finds nothing to check, at a cost on
    every request. (Its after_request hook stays: it counts the failed logins.)
    """
    if not app.config["RATELIMIT_ENABLED"]:
        return  # Flask-Limiter registered nothing
    if any(app.config.get(name) for name in APP_WIDE_LIMITS):
        return
    hooks = app.before_request_funcs.get(None, [])
    check = limiter._check_request_limit
    if check not in hooks:
        raise PatchError(
            "Flask-Limiter no longer registers _check_request_limit as a "
            "before_request hook: review core/patches.py."
        )
    hooks.remove(check)


PATCHES = (
    Patch(
        "verified-token cache in the decode step",
        "flask-jwt-extended",
        ("4.7.4",),
        _decode_through_claims_cache,
    ),
    Patch(
        "token header from the verified-token cache",
        "flask-jwt-extended",
        ("4.7.4",),
        _header_from_claims_cache,
    ),
    Patch(
        "base64url segments checked in C",
        "pyjwt",
        ("2.15.1",),
        _check_base64url_segments_in_c,
    ),
    Patch(
        "each token parsed once",
        "pyjwt",
        ("2.15.1",),
        _parse_each_token_once,
    ),
    Patch(
        "HMAC secrets checked once",
        "pyjwt",
        ("2.15.1",),
        _prepare_hmac_keys_once,
    ),
    Patch(
        "rate-limit strings parsed once",
        "flask-limiter",
        ("4.1.1",),
        _parse_limit_strings_once,
    ),
    Patch(
        "no idle app-wide rate-limit pass",
        "flask-limiter",
        ("4.1.1",),
        _drop_idle_limiter_pass,
    ),
    Patch(
        "metrics files not sized yet read as empty",
        "prometheus-client",
        ("0.26.0",),
        _read_unsized_metric_files_as_empty,
    ),
)


def check_versions(patches: tuple[Patch, ...] = PATCHES) -> None:
    """Refuse to start on a library version a patch was not tested with."""
    for patch in patches:
        installed = version(patch.distribution)
        if installed not in patch.tested_versions:
            raise PatchError(
                f"{patch.distribution} {installed} is installed, but the patch "
                f"'{patch.name}' (core/patches.py) was tested with "
                f"{', '.join(patch.tested_versions)} only. Pin the tested version, "
                "or test the patch with this one and add it to the patch."
            )


def apply_patches(app: Flask) -> None:
    """Check every patched library's version, then apply the patches (idempotent)."""
    check_versions()
    for patch in PATCHES:
        patch.apply(app)
