"""Every change this app makes to a library's internals, in one place.

Each patch names the library version it was tested with and what it buys
(measured: docs/performance.md). `apply_patches`, called by the factory, refuses
to start on any other version of a patched library, so an upgrade is a decision:
test the patch against the new version (tests/inprocess/test_patches.py), then add
the version here. Where a library offers a public hook, use the hook instead.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import flask_jwt_extended.view_decorators
import jwt
from flask import Flask
from flask_jwt_extended import JWTManager

from auth.claims_cache import claims_cache
from core.extensions import limiter

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
        "no idle app-wide rate-limit pass",
        "flask-limiter",
        ("4.1.1",),
        _drop_idle_limiter_pass,
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
