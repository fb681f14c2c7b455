"""The app's settings, from one pipeline: read the environment, derive, validate.

`load_settings()` is the only code that decides a setting's value: it reads the
process environment (and `.env`, loaded by the factory) into settings grouped by
concern (core/environment.py, parsed with environs), adds the OpenAPI document's
(core/openapi.py), lays the caller's overrides on top, derives what follows from
them, and validates the result. Validation only raises; it never changes a
setting. Nothing is read at import time, and nothing else writes `app.config`.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from cryptography.fernet import Fernet
from limits import parse_many

from core.environment import (
    DPOP_ALGORITHMS,
    SIGNING_ALGORITHMS,
    ConfigError,
    environment,
    read_environment,
)
from core.openapi import openapi_settings
from core.relying_party import derive_relying_party, validate_relying_party
from core.urls import host_of, is_host_name, public_url_problem

__all__ = [
    "DEVELOPMENT_JWT_SECRET_KEY",
    "DEVELOPMENT_MFA_ENCRYPTION_KEY",
    "DPOP_ALGORITHMS",
    "SIGNING_ALGORITHMS",
    "ConfigError",
    "Settings",
    "decode_leeway_seconds",
    "derive",
    "load_settings",
    "per_worker_limits_warning",
    "scaled_limit",
    "validate",
]

# Used only in development, loudly, when JWT_SECRET_KEY is not set.
# Production refuses to start with it.
DEVELOPMENT_JWT_SECRET_KEY = "development-only-jwt-secret-key-do-not-deploy"
MIN_SECRET_KEY_BYTES = 32
# The same for TOTP secrets' key (MFA_ENCRYPTION_KEY): 32 bytes, base64url.
DEVELOPMENT_MFA_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQtb25seS1tZmEta2V5LWRvLW5vdC0="
# The Host a development server answers when neither PUBLIC_URL nor TRUSTED_HOSTS
# is set (werkzeug compares names without the port).
DEVELOPMENT_TRUSTED_HOSTS = ("localhost", "127.0.0.1")
MAX_USER_CHECK_CACHE_SECONDS = 2
ENVIRONMENTS = ("development", "production")
BLOCKLIST_BACKENDS = ("memory", "database", "redis")
LOG_FORMATS = ("json", "text")
# The limits of the auth routes (auth/limits.py), checked at start-up.
LIMIT_SETTINGS = (
    "RATELIMIT_LOGIN",
    "RATELIMIT_LOGIN_USERNAME",
    "RATELIMIT_LOGIN_USERNAME_TOTAL",
    "RATELIMIT_REGISTER",
    "RATELIMIT_REFRESH",
    "RATELIMIT_API_TOKENS",
    "RATELIMIT_PASSKEY_OPTIONS",
)
# limits' Redis storages, whose keys take the app's key prefix.
REDIS_SCHEMES = ("redis://", "rediss://", "redis+")
SAMESITE_VALUES = ("Strict", "Lax", "None")


class Settings(NamedTuple):
    """What the pipeline produced: the settings, and warnings worth logging."""

    values: dict[str, Any]
    warnings: list[str]


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the environment, lay `overrides` on top, derive, then validate."""
    overrides = dict(overrides or {})
    env = environment()
    app_env = overrides.get("APP_ENV") or env.text("APP_ENV", "development")
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}.")
    values: dict[str, Any] = {
        "APP_ENV": app_env,
        **read_environment(env, production=app_env == "production"),
        **openapi_settings(),
        **overrides,
    }
    warnings = derive(values)
    validate(values)
    return Settings(values, warnings)


def derive(values: dict[str, Any]) -> list[str]:
    """Fill in what follows from other settings; return warnings for start-up."""
    warnings: list[str] = []
    production = values["APP_ENV"] == "production"
    symmetric = values["JWT_ALGORITHM"] == "HS256"
    if production and not str(values["JWT_ENCODE_ISSUER"]).startswith("https://"):
        warnings.append(
            "JWT_ISSUER is not an https URL: the server metadata at "
            "/.well-known/oauth-authorization-server names it as its issuer, and "
            "RFC 8414 §2 wants the API's public https URL there."
        )
    if production and values["METRICS_ENABLED"] and not values["METRICS_TOKEN"]:
        warnings.append(
            "METRICS_TOKEN is not set: GET /metrics is public. Set it, or keep "
            "/metrics off the public network (METRICS_ENABLED=false turns it off)."
        )
    if not values.get("JWT_SECRET_KEY") and symmetric and not production:
        values["JWT_SECRET_KEY"] = DEVELOPMENT_JWT_SECRET_KEY
        warnings.append(
            "JWT_SECRET_KEY is not set: using the development key. "
            "Never deploy like this."
        )
    _derive_trusted_hosts(values, production)
    warnings.extend(_derive_second_factors(values, production))
    warnings.extend(derive_relying_party(values, production))
    cookies = values["AUTH_COOKIES_ENABLED"]
    values["JWT_TOKEN_LOCATION"] = ["headers", "cookies"] if cookies else ["headers"]
    values["JWT_COOKIE_CSRF_PROTECT"] = cookies

    if not values["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A connection the server dropped is replaced, not handed to a request.
        values["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True,
            **values["SQLALCHEMY_ENGINE_OPTIONS"],
        }

    warnings.extend(_derive_storages(values, production))
    return warnings


def _derive_second_factors(values: dict[str, Any], production: bool) -> list[str]:
    """The TOTP issuer's name, and in development a key for TOTP secrets."""
    if not values.get("MFA_ISSUER"):
        values["MFA_ISSUER"] = values["API_TITLE"]
    if values.get("MFA_ENCRYPTION_KEY") or production:
        return []
    values["MFA_ENCRYPTION_KEY"] = DEVELOPMENT_MFA_ENCRYPTION_KEY
    return [
        "MFA_ENCRYPTION_KEY is not set: TOTP secrets are sealed with the "
        "development key. Never deploy like this."
    ]


def _derive_storages(values: dict[str, Any], production: bool) -> list[str]:
    """Where revocations and rate-limit counters live, when not said."""
    redis_url = values.get("REDIS_URL")
    if not values.get("BLOCKLIST_BACKEND"):
        if production:
            values["BLOCKLIST_BACKEND"] = "redis" if redis_url else "database"
        else:
            values["BLOCKLIST_BACKEND"] = "memory"
    # Rate-limit counters in Redis when there is one (shared by every worker and
    # instance), under the app's key prefix; else in this process's memory.
    if not values.get("RATELIMIT_STORAGE_URI"):
        values["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    if str(values["RATELIMIT_STORAGE_URI"]).startswith(REDIS_SCHEMES):
        values.setdefault(
            "RATELIMIT_STORAGE_OPTIONS",
            {"key_prefix": values["REDIS_KEY_PREFIX"] + "ratelimit"},
        )
    if values["BLOCKLIST_BACKEND"] == "memory" and production:
        return [
            "BLOCKLIST_BACKEND=memory: revocations are per process and lost on "
            "restart, so a revoked token still works on other workers and after "
            "a restart. Use 'database' or 'redis'."
        ]
    return []


def per_worker_limits_warning(values: Mapping[str, Any], workers: int) -> str | None:
    """The start-up warning when each of `workers` processes counts the rate limits
    in its own memory: every budget is then `workers` times its number."""
    per_process = str(values["RATELIMIT_STORAGE_URI"]).startswith("memory://")
    if not values["RATELIMIT_ENABLED"] or not per_process or workers < 2:
        return None
    login = values["RATELIMIT_LOGIN_USERNAME"]
    return (
        f"Rate limits are counted in each worker's memory (RATELIMIT_STORAGE_URI="
        f"memory://) and {workers} workers serve: every limit allows up to {workers} "
        f"times its number (RATELIMIT_LOGIN_USERNAME {login!r} allows "
        f"{scaled_limit(login, workers)!r}). Set REDIS_URL or RATELIMIT_STORAGE_URI "
        "to a shared store."
    )


def scaled_limit(limit: str, times: int) -> str:
    """A Flask-Limiter limit string with each amount multiplied by `times`."""
    return ";".join(
        f"{item.amount * times} per {item.multiples} {item.GRANULARITY.name}"
        for item in parse_many(limit)
    )


def _derive_trusted_hosts(values: dict[str, Any], production: bool) -> None:
    """TRUSTED_HOSTS unset: PUBLIC_URL's host; without it, loopback in development
    (production then refuses to start: validate)."""
    if values.get("TRUSTED_HOSTS"):
        values["TRUSTED_HOSTS"] = [host.lower() for host in values["TRUSTED_HOSTS"]]
    elif values.get("PUBLIC_URL"):
        values["TRUSTED_HOSTS"] = [host_of(values["PUBLIC_URL"])]
    elif not production:
        values["TRUSTED_HOSTS"] = list(DEVELOPMENT_TRUSTED_HOSTS)


def validate(values: Mapping[str, Any]) -> None:
    """Refuse unsafe or contradictory settings (raises; never changes one)."""
    _validate_signing(values)
    for name in LIMIT_SETTINGS:
        try:
            parse_many(values[name])
        except ValueError:
            raise ConfigError(
                f"{name} must be limits such as '5 per minute;20 per hour', "
                f"got {values[name]!r}."
            ) from None
    _validate_hosts(values)
    if values["JWT_COOKIE_SAMESITE"] not in SAMESITE_VALUES:
        raise ConfigError("AUTH_COOKIE_SAMESITE must be Strict, Lax or None.")
    if values["JWT_COOKIE_SAMESITE"] == "None" and not values["JWT_COOKIE_SECURE"]:
        raise ConfigError("AUTH_COOKIE_SAMESITE=None needs AUTH_COOKIE_SECURE=true.")
    backend = values["BLOCKLIST_BACKEND"]
    if backend not in BLOCKLIST_BACKENDS:
        raise ConfigError(
            f"BLOCKLIST_BACKEND must be one of {', '.join(BLOCKLIST_BACKENDS)}."
        )
    if backend == "redis" and not values.get("REDIS_URL"):
        raise ConfigError("BLOCKLIST_BACKEND=redis needs REDIS_URL.")
    if values["USER_CHECK_CACHE_SECONDS"] > MAX_USER_CHECK_CACHE_SECONDS:
        raise ConfigError(
            f"USER_CHECK_CACHE_SECONDS may be {MAX_USER_CHECK_CACHE_SECONDS} at most: "
            "the user check may lag the database by that much, no more."
        )
    if not values["SESSION_MAX_AGE"]:
        raise ConfigError("SESSION_MAX_AGE must be at least one second.")
    for name in ("FRESH_MAX_AGE", "ACCOUNT_FRESH_MAX_AGE"):
        if values[name] < 1:
            raise ConfigError(f"{name} must be at least one second.")
    if values["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError("LOG_FORMAT must be json or text.")
    _validate_second_factors(values)
    validate_relying_party(values)
    _validate_dpop(values)


def _validate_dpop(values: Mapping[str, Any]) -> None:
    """RFC 9449's settings: asymmetric algorithms only (§4.2), a proof window and
    a nonce lifetime of a second at least."""
    unknown = [a for a in values["DPOP_ALGORITHMS"] if a not in DPOP_ALGORITHMS]
    if unknown or not values["DPOP_ALGORITHMS"]:
        raise ConfigError(
            f"DPOP_ALGORITHMS must name some of {', '.join(DPOP_ALGORITHMS)}"
            + (f"; {', '.join(unknown)} is not one." if unknown else ".")
        )
    for name in ("DPOP_PROOF_MAX_AGE", "DPOP_NONCE_LIFETIME"):
        if values[name] < 1:
            raise ConfigError(f"{name} must be at least one second.")


def _validate_second_factors(values: Mapping[str, Any]) -> None:
    """The key that seals TOTP secrets, and the waiting logins' bounds."""
    key = values.get("MFA_ENCRYPTION_KEY")
    if values["APP_ENV"] == "production":
        if not key:
            raise ConfigError(
                "MFA_ENCRYPTION_KEY must be set in production: any account can turn "
                "on TOTP, whose secrets it seals (docs/mfa.md)."
            )
        if key == DEVELOPMENT_MFA_ENCRYPTION_KEY:
            raise ConfigError("MFA_ENCRYPTION_KEY is the development key.")
    keys = [("MFA_ENCRYPTION_KEY", key)] if key else []
    keys += [
        ("MFA_ENCRYPTION_KEY_FALLBACKS", k)
        for k in values["MFA_ENCRYPTION_KEY_FALLBACKS"]
    ]
    for setting, value in keys:
        try:
            Fernet(value.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                f"{setting}: a key must be 32 url-safe base64-encoded bytes, as "
                "Fernet.generate_key() makes (docs/mfa.md)."
            ) from None
    for name in ("MFA_TOKEN_EXPIRES", "MFA_TOKEN_MAX_FAILURES"):
        if values[name] < 1:
            raise ConfigError(f"{name} must be at least 1.")


def _validate_hosts(values: Mapping[str, Any]) -> None:
    """PUBLIC_URL and TRUSTED_HOSTS: where the API's URLs come from."""
    public_url = values.get("PUBLIC_URL")
    production = values["APP_ENV"] == "production"
    problem = public_url and public_url_problem(public_url, production)
    if problem:
        raise ConfigError(f"PUBLIC_URL {problem}, got {public_url!r}.")
    if not values.get("TRUSTED_HOSTS"):
        raise ConfigError(
            "Set PUBLIC_URL (the API's external URL, e.g. https://api.example.com) "
            "or TRUSTED_HOSTS in production: the API's URLs must not come from "
            "whatever Host a client sends."
        )
    for host in values["TRUSTED_HOSTS"]:
        if not is_host_name(host):
            raise ConfigError(
                "TRUSTED_HOSTS holds host names or IPv4 addresses, without a port "
                f"(a leading '.' admits the subdomains), got {host!r}."
            )


def _validate_signing(values: Mapping[str, Any]) -> None:
    """The signing settings; the key files themselves are read by auth/keys.py."""
    algorithm = values["JWT_ALGORITHM"]
    if algorithm not in SIGNING_ALGORITHMS:
        raise ConfigError(
            f"JWT_ALGORITHM must be one of {', '.join(SIGNING_ALGORITHMS)}, "
            f"got {algorithm!r}."
        )
    if algorithm != "HS256" and not values.get("JWT_PRIVATE_KEY_FILE"):
        raise ConfigError(
            f"JWT_ALGORITHM={algorithm} needs JWT_PRIVATE_KEY_FILE, a PEM private key "
            "(make one with: flask --app app keys generate)."
        )
    if values["APP_ENV"] != "production":
        return
    secrets = [
        ("JWT_SECRET_KEY_FALLBACKS", s) for s in values["JWT_SECRET_KEY_FALLBACKS"]
    ]
    if algorithm == "HS256":
        if not values.get("JWT_SECRET_KEY"):
            raise ConfigError("JWT_SECRET_KEY must be set in production.")
        secrets.insert(0, ("JWT_SECRET_KEY", values["JWT_SECRET_KEY"]))
    for setting, secret in secrets:
        if secret == DEVELOPMENT_JWT_SECRET_KEY:
            raise ConfigError(f"{setting} holds the development key.")
        if len(secret.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"{setting}: every secret must be at least {MIN_SECRET_KEY_BYTES} "
                "bytes."
            )


def decode_leeway_seconds(config: Mapping[str, Any]) -> float:
    """JWT_DECODE_LEEWAY in seconds (Flask-JWT-Extended takes an int or a timedelta)."""
    leeway = config.get("JWT_DECODE_LEEWAY", 0)
    return leeway.total_seconds() if isinstance(leeway, timedelta) else float(leeway)
