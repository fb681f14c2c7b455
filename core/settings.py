"""The app's settings, from one pipeline: read the environment, derive, validate.

`load_settings()` is the only code that decides a setting's value: it reads the
process environment (and `.env`, loaded by the factory) into settings grouped by
concern, lays the caller's overrides on top, derives what follows from them, and
validates the result. Validation only raises; it never changes a setting. Nothing
is read at import time, and nothing else writes `app.config`.
"""

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from limits import parse_many

from core.urls import host_of, is_host_name, public_url_problem

# Used only in development, loudly, when JWT_SECRET_KEY is not set.
# Production refuses to start with it.
DEVELOPMENT_JWT_SECRET_KEY = "development-only-jwt-secret-key-do-not-deploy"
MIN_SECRET_KEY_BYTES = 32
# The Host a development server answers when neither PUBLIC_URL nor TRUSTED_HOSTS
# is set (werkzeug compares names without the port).
DEVELOPMENT_TRUSTED_HOSTS = ("localhost", "127.0.0.1")
MAX_USER_CHECK_CACHE_SECONDS = 2
ENVIRONMENTS = ("development", "production")
BLOCKLIST_BACKENDS = ("memory", "database", "redis")
# What may sign tokens (auth/keys.py): a secret, or an asymmetric key.
SIGNING_ALGORITHMS = ("HS256", "EdDSA", "ES256", "RS256")
LOG_FORMATS = ("json", "text")
# The limits of the auth routes (auth/limits.py), checked at start-up.
LIMIT_SETTINGS = (
    "RATELIMIT_LOGIN",
    "RATELIMIT_LOGIN_USERNAME",
    "RATELIMIT_LOGIN_USERNAME_TOTAL",
    "RATELIMIT_REGISTER",
    "RATELIMIT_REFRESH",
    "RATELIMIT_API_TOKENS",
)
# limits' Redis storages, whose keys take the app's key prefix.
REDIS_SCHEMES = ("redis://", "rediss://", "redis+")
SAMESITE_VALUES = ("Strict", "Lax", "None")
# An operation that needs a token takes it either way (OpenAPI: one or the other).
BEARER_OR_OAUTH2: list[dict[str, list]] = [{"bearerAuth": []}, {"oauth2": []}]


class ConfigError(RuntimeError):
    """The environment describes a configuration the app refuses to run with."""


class Settings(NamedTuple):
    """What the pipeline produced: the settings, and warnings worth logging."""

    values: dict[str, Any]
    warnings: list[str]


def env_text(name: str, default: str = "") -> str:
    """A text setting, stripped; empty counts as unset."""
    return os.environ.get(name, "").strip() or default


def env_list(name: str) -> list[str]:
    """A comma-separated setting: its non-empty items, stripped."""
    return [
        item.strip() for item in os.environ.get(name, "").split(",") if item.strip()
    ]


def env_int(name: str, default: int) -> int:
    """Read a non-negative integer setting, failing fast on garbage."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean setting written as true/false, 1/0, yes/no or on/off."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}.")


def env_seconds(name: str, default: int) -> timedelta:
    """A duration setting given in whole seconds."""
    return timedelta(seconds=env_int(name, default))


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at the installed driver (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the environment, lay `overrides` on top, derive, then validate."""
    overrides = dict(overrides or {})
    app_env = overrides.get("APP_ENV") or env_text("APP_ENV", "development")
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}.")
    production = app_env == "production"
    values: dict[str, Any] = {"APP_ENV": app_env}
    for group in (
        _database(),
        _tokens(),
        _cookies(production),
        _revocation(),
        _redis(),
        _rate_limits(),
        _http(production),
        _logging(production),
        _passwords(),
        _openapi(),
        _metrics(),
    ):
        values.update(group)
    values.update(overrides)
    warnings = derive(values)
    validate(values)
    return Settings(values, warnings)


def _database() -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(
            # Flask-SQLAlchemy resolves a relative SQLite path under instance/.
            env_text("DATABASE_URL", "sqlite:///app.db")
        ),
        # A database error's message never carries the statement's values (a
        # username typed at a login, a password hash being written).
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
    }


def _tokens() -> dict[str, Any]:
    # Tokens name who issued them and for whom; both are checked on decode.
    issuer = env_text("JWT_ISSUER", "stores-api")
    audience = env_text("JWT_AUDIENCE", "stores-api")
    return {
        # Signing keys (auth/keys.py): the current one signs, the fallbacks only
        # verify, each token with the key its `kid` names and that key's
        # algorithm alone (the decode list is what any key may use).
        "JWT_ALGORITHM": env_text("JWT_ALGORITHM", "HS256"),
        "JWT_DECODE_ALGORITHMS": list(SIGNING_ALGORITHMS),
        "JWT_SECRET_KEY": env_text("JWT_SECRET_KEY") or None,
        "JWT_SECRET_KEY_FALLBACKS": env_list("JWT_SECRET_KEY_FALLBACKS"),
        "JWT_PRIVATE_KEY_FILE": env_text("JWT_PRIVATE_KEY_FILE") or None,
        "JWT_PUBLIC_KEY_FALLBACK_FILES": env_list("JWT_PUBLIC_KEY_FALLBACK_FILES"),
        "JWT_ERROR_MESSAGE_KEY": "message",
        "JWT_ENCODE_ISSUER": issuer,
        "JWT_DECODE_ISSUER": issuer,
        "JWT_ENCODE_AUDIENCE": audience,
        "JWT_DECODE_AUDIENCE": audience,
        "JWT_ACCESS_TOKEN_EXPIRES": env_seconds("JWT_ACCESS_TOKEN_EXPIRES", 900),
        # The idle timeout: a session not refreshed for this long ends.
        "JWT_REFRESH_TOKEN_EXPIRES": env_seconds(
            "JWT_REFRESH_TOKEN_EXPIRES", 14 * 24 * 3600
        ),
        # The absolute lifetime: however often it is refreshed, a session ends this
        # long after its login (OWASP ASVS 3.3: re-authentication).
        "SESSION_MAX_AGE": env_seconds("SESSION_MAX_AGE", 30 * 24 * 3600),
        "REFRESH_REUSE_GRACE_SECONDS": env_int("REFRESH_REUSE_GRACE_SECONDS", 10),
        # Tokens verified recently skip the signature check (expiry and revocation
        # are still checked on every request); 0 switches the cache off.
        "JWT_VERIFIED_CLAIMS_CACHE_SIZE": env_int(
            "JWT_VERIFIED_CLAIMS_CACHE_SIZE", 4096
        ),
        # The user check answered from a worker's memory for this long (auth/
        # user_cache.py); 2 s at most, 0 switches it off.
        "USER_CHECK_CACHE_SECONDS": env_int("USER_CHECK_CACHE_SECONDS", 2),
        # Small tolerance for clocks that disagree between instances.
        "JWT_DECODE_LEEWAY": env_int("JWT_DECODE_LEEWAY", 5),
    }


def _cookies(production: bool) -> dict[str, Any]:
    # Cookie mode for browser apps (header mode always works): HttpOnly token
    # cookies, the refresh cookie only sent to /refresh, CSRF double submit. The
    # paths are under the mount path, if any (auth/delivery.py).
    return {
        "AUTH_COOKIES_ENABLED": env_bool("AUTH_COOKIES_ENABLED", True),
        # Cookies only over HTTPS in production, unless said otherwise.
        "JWT_COOKIE_SECURE": env_bool("AUTH_COOKIE_SECURE", production),
        "JWT_COOKIE_SAMESITE": os.environ.get("AUTH_COOKIE_SAMESITE", "Strict"),
        "JWT_ACCESS_COOKIE_PATH": "/",
        "JWT_REFRESH_COOKIE_PATH": "/refresh",
        "JWT_CSRF_IN_COOKIES": True,
    }


def _revocation() -> dict[str, Any]:
    # Unset: memory in development; in production redis when REDIS_URL is set,
    # else database (derived below).
    return {"BLOCKLIST_BACKEND": env_text("BLOCKLIST_BACKEND") or None}


def _redis() -> dict[str, Any]:
    return {
        "REDIS_URL": env_text("REDIS_URL") or None,
        "REDIS_KEY_PREFIX": os.environ.get("REDIS_KEY_PREFIX", "stores-api:"),
        "REDIS_SOCKET_TIMEOUT": 2.0,
    }


def _rate_limits() -> dict[str, Any]:
    return {
        "RATELIMIT_ENABLED": env_bool("RATELIMIT_ENABLED", True),
        # Flask-Limiter's limit strings ("5 per minute;20 per hour").
        "RATELIMIT_LOGIN": os.environ.get(
            "RATELIMIT_LOGIN", "10 per minute;100 per hour"
        ),
        # Failed logins per (username, client address), and per device that has
        # logged in before (auth/limits.py).
        "RATELIMIT_LOGIN_USERNAME": os.environ.get(
            "RATELIMIT_LOGIN_USERNAME", "5 per minute;20 per hour"
        ),
        # Failed logins per username from every address together: NIST SP
        # 800-63B §5.2.2's cap of 100 (docs/security.md says why it is safe).
        "RATELIMIT_LOGIN_USERNAME_TOTAL": os.environ.get(
            "RATELIMIT_LOGIN_USERNAME_TOTAL", "100 per day"
        ),
        # How long a device cookie names a device that logged in (0: none are set).
        "DEVICE_COOKIE_MAX_AGE": env_seconds("DEVICE_COOKIE_MAX_AGE", 180 * 24 * 3600),
        "RATELIMIT_REGISTER": os.environ.get(
            "RATELIMIT_REGISTER", "5 per minute;50 per hour"
        ),
        "RATELIMIT_REFRESH": os.environ.get("RATELIMIT_REFRESH", "30 per minute"),
        # API tokens made (each deleted one is a revocation entry kept for months).
        "RATELIMIT_API_TOKENS": os.environ.get(
            "RATELIMIT_API_TOKENS", "10 per minute;50 per hour"
        ),
        # Unset: REDIS_URL when there is one, else each process's memory (derived).
        "RATELIMIT_STORAGE_URI": env_text("RATELIMIT_STORAGE_URI") or None,
        "RATELIMIT_STRATEGY": "moving-window",
        # Only a 429 says when to come back (Retry-After, set with the envelope):
        # X-RateLimit-* would describe just one of a route's several limits.
        "RATELIMIT_HEADERS_ENABLED": False,
        # A broken limiter storage must not take logins down: fall back to
        # per-process counting until it is back.
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    }


def _http(production: bool) -> dict[str, Any]:
    return {
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # How many reverse proxies in front of the app set X-Forwarded-For (and
        # -Proto, -Host, -Prefix: the path the API is mounted under).
        "TRUSTED_PROXIES": env_int("TRUSTED_PROXIES", 0),
        # The API's external base URL: every absolute URL it hands out starts with
        # it (else with the request's Host, which must be one of TRUSTED_HOSTS,
        # Flask's own setting: any other answers 400). Derived below.
        "PUBLIC_URL": env_text("PUBLIC_URL") or None,
        "TRUSTED_HOSTS": env_list("TRUSTED_HOSTS") or None,
        "CORS_ORIGINS": [
            origin.strip()
            for origin in os.environ.get("CORS_ORIGINS", "").split(",")
            if origin.strip()
        ],
        # The browser demo of the silent-refresh flow at /demo (static files): a
        # page for developers, so a production server serves it only when asked.
        "DEMO_ENABLED": env_bool("DEMO_ENABLED", not production),
        # false: no library patch (core/patches.py), to rule them out when debugging.
        "LIBRARY_PATCHES": env_bool("LIBRARY_PATCHES", True),
    }


def _logging(production: bool) -> dict[str, Any]:
    return {
        "LOG_FORMAT": env_text("LOG_FORMAT", "json" if production else "text"),
        "LOG_LEVEL": env_text("LOG_LEVEL", "INFO").upper(),
    }


def _metrics() -> dict[str, Any]:
    # GET /metrics (core/monitoring.py); with a token, only Bearer <token> reads it.
    return {
        "METRICS_ENABLED": env_bool("METRICS_ENABLED", True),
        "METRICS_TOKEN": env_text("METRICS_TOKEN") or None,
    }


def _passwords() -> dict[str, Any]:
    # OWASP's argon2id parameters: 19 MiB, 2 iterations, 1 lane.
    return {
        "PASSWORD_ARGON2_MEMORY_COST": 19 * 1024,
        "PASSWORD_ARGON2_TIME_COST": 2,
        "PASSWORD_ARGON2_PARALLELISM": 1,
    }


def _openapi() -> dict[str, Any]:
    return {
        "API_TITLE": "Stores REST API",
        "API_VERSION": "1.0.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/swagger-ui",
        "OPENAPI_SWAGGER_UI_URL": "/swagger-ui-assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True},
        "API_SPEC_OPTIONS": {
            "info": {
                "description": (
                    "Log in for a fresh access token and a refresh token; trade the "
                    "refresh token at /refresh for a new non-fresh access token. "
                    "Destructive operations need a fresh token."
                )
            },
            "security": BEARER_OR_OAUTH2,
            "components": {
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                    },
                    # RFC 6749 §4.3: Swagger UI's Authorize takes a username and a
                    # password; relative URLs resolve against the server's (under
                    # a path prefix, the document prefixes them: core/pages).
                    "oauth2": {
                        "type": "oauth2",
                        "flows": {
                            "password": {
                                "tokenUrl": "/token",
                                "refreshUrl": "/token",
                                "scopes": {},
                            }
                        },
                    },
                }
            },
        },
    }


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
    cookies = values["AUTH_COOKIES_ENABLED"]
    values["JWT_TOKEN_LOCATION"] = ["headers", "cookies"] if cookies else ["headers"]
    values["JWT_COOKIE_CSRF_PROTECT"] = cookies

    if not values["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A connection the server dropped is replaced, not handed to a request.
        values["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True,
            **values["SQLALCHEMY_ENGINE_OPTIONS"],
        }

    redis_url = values.get("REDIS_URL")
    if not values.get("BLOCKLIST_BACKEND"):
        if production:
            values["BLOCKLIST_BACKEND"] = "redis" if redis_url else "database"
        else:
            values["BLOCKLIST_BACKEND"] = "memory"
    if values["BLOCKLIST_BACKEND"] == "memory" and production:
        warnings.append(
            "BLOCKLIST_BACKEND=memory: revocations are per process and lost on "
            "restart, so a revoked token still works on other workers and after "
            "a restart. Use 'database' or 'redis'."
        )

    # Rate-limit counters in Redis when there is one (shared by every worker and
    # instance), under the app's key prefix; else in this process's memory.
    if not values.get("RATELIMIT_STORAGE_URI"):
        values["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    if str(values["RATELIMIT_STORAGE_URI"]).startswith(REDIS_SCHEMES):
        values.setdefault(
            "RATELIMIT_STORAGE_OPTIONS",
            {"key_prefix": values["REDIS_KEY_PREFIX"] + "ratelimit"},
        )
    return warnings


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
    if values["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError("LOG_FORMAT must be json or text.")


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
