"""Every change this app makes to a library's internals, in one place.

A patch is an optimisation or a bug's workaround, never a gate. Each names the
library versions it was tested with, and `apply_patches` (called by the factory)
applies it on those only: on any other version the patch steps aside with one
warning a process, and the library's own code runs, correct and slower. A security
release of a library so installs without a code change; to keep a patch's gain,
test it with the new version (tests/inprocess/test_patches.py) and add the version
to its `tested_versions`. LIBRARY_PATCHES=false applies none, to rule them out
when debugging. What each one buys, measured, and why it is kept: the ledger in
docs/development.md. Where a library offers a public hook, use the hook instead.
"""

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol

import flask_jwt_extended.view_decorators
import jwt
from flask import Flask, current_app, has_app_context
from flask_jwt_extended import JWTManager
from jwt.algorithms import HMACAlgorithm
from prometheus_client.mmap_dict import MmapedDict

from core.extensions import limiter

# Flask-Limiter settings whose limits only its before_request hook applies.
APP_WIDE_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")
# Where an app keeps the lookup of its verified-claims cache, for the patches.
CLAIMS_CACHE_LOOKUP = "library_patches.claims_cache"
# The patches that stepped aside in this process: each warns once.
_stepped_aside: set[str] = set()


class VerifiedToken(Protocol):
    """A token the token layer verified a moment ago."""

    @property
    def header(self) -> dict: ...

    @property
    def claims(self) -> dict: ...


class VerifiedTokens(Protocol):
    """What the decode patches use of the token layer's verified-claims cache."""

    def get(self, token: str, /) -> VerifiedToken | None: ...

    def put(self, token: str, header: dict, claims: dict, /) -> None: ...


@dataclass(frozen=True)
class Patch:
    """One change to a library's internals, and the versions it is known to fit.

    `apply` returns None once the patch is in place, or why it stepped aside.
    """

    name: str
    distribution: str
    tested_versions: tuple[str, ...]
    apply: Callable[[Flask], str | None]


def _replaces(original: Callable) -> Callable[[Callable], Callable]:
    """Mark a function as the patch of `original` (kept as its `.original`)."""

    def mark(function: Callable) -> Callable:
        function._library_patch = True  # type: ignore[attr-defined]
        function.original = original  # type: ignore[attr-defined]
        return function

    return mark


def _is_patched(function: Callable) -> bool:
    """Applied already, by an earlier app in this process."""
    return getattr(function, "_library_patch", False)


def _claims_cache() -> VerifiedTokens | None:
    """The current app's verified-claims cache, if its factory handed one over."""
    if not has_app_context():
        return None
    lookup = current_app.extensions.get(CLAIMS_CACHE_LOOKUP)
    return None if lookup is None else lookup()


def _decode_through_claims_cache(_app: Flask) -> None:
    """A token verified a moment ago skips Flask-JWT-Extended's decode step.

    `JWTManager._decode_jwt_from_config` parses a token four times and checks its
    signature; there is no public hook around it. Cookie tokens (the CSRF value is
    compared while decoding), lenient decodes and apps without the cache (or with
    LIBRARY_PATCHES=false) always take the library's path.
    """
    original = JWTManager._decode_jwt_from_config
    if _is_patched(original):
        return

    @_replaces(original)
    def decode(
        self: JWTManager,
        encoded_token: str,
        csrf_value: Any = None,
        allow_expired: bool = False,
    ) -> dict:
        cache = _claims_cache()
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
    if _is_patched(original):
        return

    @_replaces(original)
    def header(encoded_token: str) -> dict:
        cache = _claims_cache()
        entry = None if cache is None else cache.get(encoded_token)
        return original(encoded_token) if entry is None else entry.header

    module.get_unverified_jwt_headers = header


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
    if _is_patched(original):
        return

    @_replaces(original)
    def read_all_values_from_file(filename: str) -> list:
        if os.path.getsize(filename) == 0:
            return []
        return original(filename)

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
    if _is_patched(original):
        return

    @functools.lru_cache(maxsize=16)
    def prepared(algorithm: HMACAlgorithm, key: str | bytes) -> bytes:
        return original(algorithm, key)

    @_replaces(original)
    def prepare_key(self: HMACAlgorithm, key: str | bytes) -> bytes:
        return prepared(self, key)

    HMACAlgorithm.prepare_key = prepare_key  # type: ignore[method-assign]


def _drop_idle_limiter_pass(app: Flask) -> str | None:
    """No app-wide Flask-Limiter pass on every request when only route limits exist.

    Every limit here is a `rate_limited` decorator, which Flask-Limiter checks when
    the view is called. Its before_request hook only applies default, application
    and meta limits: with none configured it finds nothing to check, at a cost on
    every request. (Its after_request hook stays: it counts the failed logins.)
    """
    if not app.config["RATELIMIT_ENABLED"]:
        return None  # Flask-Limiter registered nothing
    if any(app.config.get(name) for name in APP_WIDE_LIMITS):
        return None
    hooks = app.before_request_funcs.get(None, [])
    check = limiter._check_request_limit
    if check not in hooks:
        return "Flask-Limiter no longer registers _check_request_limit as a hook"
    hooks.remove(check)
    return None


CLAIMS_CACHE_PATCH = "verified-token cache in the decode step"
PATCHES = (
    Patch(
        CLAIMS_CACHE_PATCH,
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
        "HMAC secrets checked once",
        "pyjwt",
        ("2.15.1",),
        _prepare_hmac_keys_once,
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


def apply_patches(
    app: Flask, claims_cache: Callable[[], VerifiedTokens | None] | None = None
) -> None:
    """Apply every patch that fits its library's installed version (idempotent).

    `claims_cache` looks up the current app's verified-claims cache (the token
    layer's), which the decode patches consult. A patch that does not fit steps
    aside with one warning; with LIBRARY_PATCHES=false none is applied.
    """
    if not app.config["LIBRARY_PATCHES"]:
        app.logger.info("LIBRARY_PATCHES is false: no library patch is applied.")
        return
    applied = {patch.name for patch in PATCHES if _apply(app, patch)}
    # The decode patches are process-wide: an app whose patches stepped aside
    # hands them no cache, and its tokens take the library's path.
    if claims_cache is not None and CLAIMS_CACHE_PATCH in applied:
        app.extensions[CLAIMS_CACHE_LOOKUP] = claims_cache


def _apply(app: Flask, patch: Patch) -> bool:
    """Apply one patch if it fits the installed library, else step aside."""
    installed = version(patch.distribution)
    reason: str | None
    if installed not in patch.tested_versions:
        reason = (
            f"{patch.distribution} {installed} is installed, and the patch was "
            f"tested with {', '.join(patch.tested_versions)} only"
        )
    else:
        reason = patch.apply(app)
    if reason is not None:
        _step_aside(app, patch, reason)
    return reason is None


def _step_aside(app: Flask, patch: Patch, reason: str) -> None:
    """Say once a process that a patch is not applied, and why."""
    if patch.name in _stepped_aside:
        return
    _stepped_aside.add(patch.name)
    app.logger.warning(
        "Library patch '%s' skipped: %s. %s's own code runs (correct, slower); "
        "see core/patches.py.",
        patch.name,
        reason,
        patch.distribution,
    )
