"""The settings as the environment gives them, grouped by concern, with the fixed
ones beside them: each setting's variable, default and type, in one place.

The variables are parsed with environs (marshmallow's fields underneath), through
an `Env` made for each load: nothing is read at import time, and `.env` is in the
process environment already (the factory loads it with python-dotenv). A blank
variable counts as unset (a compose file passes `NAME: ${NAME:-}`), and a value
that does not parse is collected: `checked` reports every one at once.
"""

from datetime import timedelta
from typing import Any

import marshmallow as ma
from environs import Env, EnvValidationError

# What may sign tokens (auth/keys.py): a secret, or an asymmetric key.
SIGNING_ALGORITHMS = ("HS256", "EdDSA", "ES256", "RS256")
# RFC 9449 §4.2: what DPoP proofs may be signed with here (auth/proofs.py).
DPOP_ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(RuntimeError):
    """The environment describes a configuration the app refuses to run with."""


class _BlankIsUnset(ma.fields.Field):
    """A field that strips its text, and reads a blank one as unset."""

    def deserialize(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = value.strip() or ma.missing
        return super().deserialize(value, *args, **kwargs)


class Text(_BlankIsUnset, ma.fields.String):
    """Text, stripped."""


class WholeNumber(_BlankIsUnset, ma.fields.Integer):
    """A whole number, not negative."""

    default_error_messages = {"invalid": "must be a whole number, got {input!r}."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs["validate"] = kwargs.get("validate") or ma.validate.Range(
            min=0, error="must not be negative, got {input}."
        )
        super().__init__(**kwargs)


class Seconds(WholeNumber):
    """A duration in whole seconds (its default given as a timedelta)."""

    def deserialize(self, *args: Any, **kwargs: Any) -> Any:
        seconds = super().deserialize(*args, **kwargs)
        return timedelta(seconds=seconds) if isinstance(seconds, int) else seconds


class Switch(_BlankIsUnset, ma.fields.Boolean):
    """true/false, 1/0, yes/no or on/off, in any case."""

    default_error_messages = {"invalid": "must be true or false, got {input!r}."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(truthy=TRUE_WORDS, falsy=FALSE_WORDS, **kwargs)

    def _deserialize(self, value: Any, *args: Any, **kwargs: Any) -> bool:
        return super()._deserialize(value.lower(), *args, **kwargs)


class Items(_BlankIsUnset):
    """A comma-separated list: its non-empty items, stripped."""

    def _deserialize(self, value: Any, *args: Any, **kwargs: Any) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]


def environment() -> Env:
    """An environs `Env` with the app's parsers: `text`, `whole_number`, `seconds`,
    `switch` and `items`. A value that does not parse reads as None until
    `checked` raises for it."""
    env = Env(eager=False)
    for name, field in (
        ("text", Text),
        ("whole_number", WholeNumber),
        ("seconds", Seconds),
        ("switch", Switch),
        ("items", Items),
    ):
        env.add_parser_from_field(name, field)
    return env


def checked(env: Env) -> None:
    """Raise ConfigError naming every variable `env` could not parse."""
    try:
        env.seal()
    except EnvValidationError as error:
        problems = error.error_messages
        assert isinstance(problems, dict)  # keyed by variable when not eager
        raise ConfigError(
            " ".join(
                f"{name} {message}"
                for name, messages in problems.items()
                for message in messages
            )
        ) from None


def read_environment(env: Env, production: bool) -> dict[str, Any]:
    """Every group's settings, as the environment and the defaults give them."""
    values: dict[str, Any] = {}
    for group in (
        _database(env),
        _tokens(env),
        _cookies(env, production),
        _revocation(env),
        _redis(env),
        _rate_limits(env),
        _http(env, production),
        _logging(env, production),
        _passwords(),
        _second_factors(env),
        _passkeys(env),
        _dpop(env),
        _metrics(env),
    ):
        values.update(group)
    checked(env)
    return values


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at the installed driver (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _database(env: Env) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(
            # Flask-SQLAlchemy resolves a relative SQLite path under instance/.
            env.text("DATABASE_URL", "sqlite:///app.db")
        ),
        # A database error's message never carries the statement's values (a
        # username typed at a login, a password hash being written).
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
    }


def _tokens(env: Env) -> dict[str, Any]:
    # Tokens name who issued them and for whom; both are checked on decode.
    issuer = env.text("JWT_ISSUER", "stores-api")
    audience = env.text("JWT_AUDIENCE", "stores-api")
    return {
        # Signing keys (auth/keys.py): the current one signs, the fallbacks only
        # verify, each token with the key its `kid` names and that key's
        # algorithm alone (the decode list is what any key may use).
        "JWT_ALGORITHM": env.text("JWT_ALGORITHM", "HS256"),
        "JWT_DECODE_ALGORITHMS": list(SIGNING_ALGORITHMS),
        "JWT_SECRET_KEY": env.text("JWT_SECRET_KEY", None),
        "JWT_SECRET_KEY_FALLBACKS": env.items("JWT_SECRET_KEY_FALLBACKS", []),
        "JWT_PRIVATE_KEY_FILE": env.text("JWT_PRIVATE_KEY_FILE", None),
        "JWT_PUBLIC_KEY_FALLBACK_FILES": env.items("JWT_PUBLIC_KEY_FALLBACK_FILES", []),
        "JWT_ERROR_MESSAGE_KEY": "message",
        "JWT_ENCODE_ISSUER": issuer,
        "JWT_DECODE_ISSUER": issuer,
        "JWT_ENCODE_AUDIENCE": audience,
        "JWT_DECODE_AUDIENCE": audience,
        "JWT_ACCESS_TOKEN_EXPIRES": env.seconds(
            "JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=15)
        ),
        # The idle timeout: a session not refreshed for this long ends.
        "JWT_REFRESH_TOKEN_EXPIRES": env.seconds(
            "JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=14)
        ),
        # The absolute lifetime: however often it is refreshed, a session ends this
        # long after its login (OWASP ASVS 3.3: re-authentication).
        "SESSION_MAX_AGE": env.seconds("SESSION_MAX_AGE", timedelta(days=30)),
        "REFRESH_REUSE_GRACE_SECONDS": env.whole_number(
            "REFRESH_REUSE_GRACE_SECONDS", 10
        ),
        # Step-up (RFC 9470): a fresh-only route accepts a fresh token only this
        # long after the user last proved who they are (its auth_time); account
        # security operations ask for a shorter time.
        "FRESH_MAX_AGE": env.whole_number("FRESH_MAX_AGE", 900),
        "ACCOUNT_FRESH_MAX_AGE": env.whole_number("ACCOUNT_FRESH_MAX_AGE", 300),
        # Tokens verified recently skip the signature check (expiry and revocation
        # are still checked on every request); 0 switches the cache off.
        "JWT_VERIFIED_CLAIMS_CACHE_SIZE": env.whole_number(
            "JWT_VERIFIED_CLAIMS_CACHE_SIZE", 4096
        ),
        # The user check answered from a worker's memory for this long (auth/
        # claims_cache.py); 2 s at most, 0 switches it off.
        "USER_CHECK_CACHE_SECONDS": env.whole_number("USER_CHECK_CACHE_SECONDS", 2),
        # Small tolerance for clocks that disagree between instances.
        "JWT_DECODE_LEEWAY": env.whole_number("JWT_DECODE_LEEWAY", 5),
    }


def _cookies(env: Env, production: bool) -> dict[str, Any]:
    # Cookie mode for browser apps (header mode always works): HttpOnly token
    # cookies, the refresh cookie only sent to /refresh, CSRF double submit. The
    # paths are under the mount path, if any (auth/delivery.py).
    return {
        "AUTH_COOKIES_ENABLED": env.switch("AUTH_COOKIES_ENABLED", True),
        # Cookies only over HTTPS in production, unless said otherwise.
        "JWT_COOKIE_SECURE": env.switch("AUTH_COOKIE_SECURE", production),
        "JWT_COOKIE_SAMESITE": env.str("AUTH_COOKIE_SAMESITE", "Strict"),
        "JWT_ACCESS_COOKIE_PATH": "/",
        "JWT_REFRESH_COOKIE_PATH": "/refresh",
        "JWT_CSRF_IN_COOKIES": True,
    }


def _revocation(env: Env) -> dict[str, Any]:
    # Unset: memory in development; in production redis when REDIS_URL is set,
    # else database (derived).
    return {"BLOCKLIST_BACKEND": env.text("BLOCKLIST_BACKEND", None)}


def _redis(env: Env) -> dict[str, Any]:
    return {
        "REDIS_URL": env.text("REDIS_URL", None),
        "REDIS_KEY_PREFIX": env.str("REDIS_KEY_PREFIX", "stores-api:"),
        "REDIS_SOCKET_TIMEOUT": 2.0,
    }


def _rate_limits(env: Env) -> dict[str, Any]:
    return {
        "RATELIMIT_ENABLED": env.switch("RATELIMIT_ENABLED", True),
        # Flask-Limiter's limit strings ("5 per minute;20 per hour").
        "RATELIMIT_LOGIN": env.str("RATELIMIT_LOGIN", "10 per minute;100 per hour"),
        # Failed logins per (username, client address), and per device that has
        # logged in before (auth/limits.py).
        "RATELIMIT_LOGIN_USERNAME": env.str(
            "RATELIMIT_LOGIN_USERNAME", "5 per minute;20 per hour"
        ),
        # Failed logins per username from every address together: NIST SP
        # 800-63B §5.2.2's cap of 100 (docs/security.md says why it is safe).
        "RATELIMIT_LOGIN_USERNAME_TOTAL": env.str(
            "RATELIMIT_LOGIN_USERNAME_TOTAL", "100 per day"
        ),
        # How long a device cookie names a device that logged in (0: none are set).
        "DEVICE_COOKIE_MAX_AGE": env.seconds(
            "DEVICE_COOKIE_MAX_AGE", timedelta(days=180)
        ),
        "RATELIMIT_REGISTER": env.str("RATELIMIT_REGISTER", "5 per minute;50 per hour"),
        "RATELIMIT_REFRESH": env.str("RATELIMIT_REFRESH", "30 per minute"),
        # Passkey login options per client address: each stores a challenge.
        "RATELIMIT_PASSKEY_OPTIONS": env.str(
            "RATELIMIT_PASSKEY_OPTIONS", "30 per minute;300 per hour"
        ),
        # API tokens made (each deleted one is a revocation entry kept for months).
        "RATELIMIT_API_TOKENS": env.str(
            "RATELIMIT_API_TOKENS", "10 per minute;50 per hour"
        ),
        # Unset: REDIS_URL when there is one, else each process's memory (derived).
        "RATELIMIT_STORAGE_URI": env.text("RATELIMIT_STORAGE_URI", None),
        "RATELIMIT_STRATEGY": "moving-window",
        # Only a 429 says when to come back (Retry-After, set with the envelope):
        # X-RateLimit-* would describe just one of a route's several limits.
        "RATELIMIT_HEADERS_ENABLED": False,
        # A broken limiter storage must not take logins down: fall back to
        # per-process counting until it is back.
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    }


def _http(env: Env, production: bool) -> dict[str, Any]:
    return {
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # How many reverse proxies in front of the app set X-Forwarded-For (and
        # -Proto, -Host, -Prefix: the path the API is mounted under).
        "TRUSTED_PROXIES": env.whole_number("TRUSTED_PROXIES", 0),
        # The API's external base URL: every absolute URL it hands out starts with
        # it (else with the request's Host, which must be one of TRUSTED_HOSTS,
        # Flask's own setting: any other answers 400). Derived.
        "PUBLIC_URL": env.text("PUBLIC_URL", None),
        "TRUSTED_HOSTS": env.items("TRUSTED_HOSTS", []) or None,
        "CORS_ORIGINS": env.items("CORS_ORIGINS", []),
        # The browser demo of the silent-refresh flow at /demo (static files): a
        # page for developers, so a production server serves it only when asked.
        "DEMO_ENABLED": env.switch("DEMO_ENABLED", not production),
        # false: no library patch (core/patches.py), to rule them out when debugging.
        "LIBRARY_PATCHES": env.switch("LIBRARY_PATCHES", True),
    }


def _logging(env: Env, production: bool) -> dict[str, Any]:
    return {
        "LOG_FORMAT": env.text("LOG_FORMAT", "json" if production else "text"),
        "LOG_LEVEL": env.text("LOG_LEVEL", "INFO").upper(),
    }


def _metrics(env: Env) -> dict[str, Any]:
    # GET /metrics (core/telemetry/endpoint.py); with a token, only Bearer <token>
    # reads it.
    return {
        "METRICS_ENABLED": env.switch("METRICS_ENABLED", True),
        "METRICS_TOKEN": env.text("METRICS_TOKEN", None),
    }


def _second_factors(env: Env) -> dict[str, Any]:
    return {
        # TOTP secrets are sealed with this key (auth/factors/encryption.py); the
        # fallbacks only open secrets sealed before a rotation.
        "MFA_ENCRYPTION_KEY": env.text("MFA_ENCRYPTION_KEY", None),
        "MFA_ENCRYPTION_KEY_FALLBACKS": env.items("MFA_ENCRYPTION_KEY_FALLBACKS", []),
        # The name authenticator apps show beside the account (default: the API's
        # title).
        "MFA_ISSUER": env.text("MFA_ISSUER", None),
        # A login waiting for its second factor: how long, and how many wrong codes.
        "MFA_TOKEN_EXPIRES": env.whole_number("MFA_TOKEN_EXPIRES", 300),
        "MFA_TOKEN_MAX_FAILURES": env.whole_number("MFA_TOKEN_MAX_FAILURES", 5),
    }


def _passkeys(env: Env) -> dict[str, Any]:
    return {
        # The relying party (docs/passkeys.md): the domain passkeys are bound to
        # (default: PUBLIC_URL's host; in development, localhost), the name
        # authenticators show, and the exact origins of the pages that run the
        # ceremonies (default: PUBLIC_URL's; in development, http://localhost:5000).
        "WEBAUTHN_RP_ID": env.text("WEBAUTHN_RP_ID", None),
        "WEBAUTHN_RP_NAME": env.text("WEBAUTHN_RP_NAME", None),
        "WEBAUTHN_ORIGINS": env.items("WEBAUTHN_ORIGINS", []),
        # How long a ceremony's challenge is good for, and passkeys per account.
        "WEBAUTHN_CHALLENGE_EXPIRES": env.whole_number(
            "WEBAUTHN_CHALLENGE_EXPIRES", 300
        ),
        "WEBAUTHN_MAX_CREDENTIALS": env.whole_number("WEBAUTHN_MAX_CREDENTIALS", 20),
    }


def _dpop(env: Env) -> dict[str, Any]:
    return {
        # RFC 9449 (docs/dpop.md): the algorithms proofs may be signed with, how
        # long a proof is good for, whether sessions in the Authorization header
        # must be bound, and the server's nonces (how long each one is handed out).
        "DPOP_ALGORITHMS": env.items("DPOP_ALGORITHMS", list(DPOP_ALGORITHMS)),
        "DPOP_PROOF_MAX_AGE": env.whole_number("DPOP_PROOF_MAX_AGE", 60),
        "DPOP_REQUIRED": env.switch("DPOP_REQUIRED", False),
        "DPOP_NONCE_REQUIRED": env.switch("DPOP_NONCE_REQUIRED", False),
        "DPOP_NONCE_LIFETIME": env.whole_number("DPOP_NONCE_LIFETIME", 300),
    }


def _passwords() -> dict[str, Any]:
    # OWASP's argon2id parameters: 19 MiB, 2 iterations, 1 lane.
    return {
        "PASSWORD_ARGON2_MEMORY_COST": 19 * 1024,
        "PASSWORD_ARGON2_TIME_COST": 2,
        "PASSWORD_ARGON2_PARALLELISM": 1,
    }
