"""Settings per environment, read from the process environment (and `.env`).

Nothing here is read at import time: `load_config()` builds the settings when the
application factory asks for them, so tests can pass their own overrides.
"""

import os
from datetime import timedelta

# Used only in development, loudly, when JWT_SECRET_KEY is not set.
# Production refuses to start with it.
DEVELOPMENT_JWT_SECRET_KEY = "development-only-jwt-secret-key-do-not-deploy"
MIN_SECRET_KEY_BYTES = 32
ENVIRONMENTS = ("development", "testing", "production")
BLOCKLIST_BACKENDS = ("memory", "database", "redis")


class ConfigError(RuntimeError):
    """The environment describes a configuration the app refuses to run with."""


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


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at the installed driver (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class BaseConfig:
    """Settings shared by every environment."""

    def __init__(self) -> None:
        self.APP_ENV = "development"
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(
            # Flask-SQLAlchemy resolves a relative SQLite path under instance/.
            os.environ.get("DATABASE_URL", "").strip() or "sqlite:///app.db"
        )
        self.SQLALCHEMY_ENGINE_OPTIONS: dict = {}
        self.MAX_CONTENT_LENGTH = 1024 * 1024

        self.JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY", "").strip() or None
        self.JWT_ALGORITHM = "HS256"
        self.JWT_DECODE_ALGORITHMS = ["HS256"]
        self.JWT_ERROR_MESSAGE_KEY = "message"
        # Tokens name who issued them and for whom; both are checked on decode.
        issuer = os.environ.get("JWT_ISSUER", "").strip() or "stores-api"
        audience = os.environ.get("JWT_AUDIENCE", "").strip() or "stores-api"
        self.JWT_ENCODE_ISSUER = self.JWT_DECODE_ISSUER = issuer
        self.JWT_ENCODE_AUDIENCE = self.JWT_DECODE_AUDIENCE = audience
        # Tokens verified recently skip the signature check (expiry and revocation
        # are still checked on every request); 0 switches the cache off.
        self.JWT_VERIFIED_CLAIMS_CACHE_SIZE = env_int(
            "JWT_VERIFIED_CLAIMS_CACHE_SIZE", 4096
        )
        # Small tolerance for clocks that disagree between instances.
        self.JWT_DECODE_LEEWAY = env_int("JWT_DECODE_LEEWAY", 5)
        # Cookie mode for browser apps (header mode always works): HttpOnly token
        # cookies, the refresh cookie only sent to /refresh, CSRF double submit.
        self.AUTH_COOKIES_ENABLED = env_bool("AUTH_COOKIES_ENABLED", True)
        self.JWT_COOKIE_SECURE = env_bool("AUTH_COOKIE_SECURE", False)
        self.JWT_COOKIE_SAMESITE = os.environ.get("AUTH_COOKIE_SAMESITE", "Strict")
        self.JWT_ACCESS_COOKIE_PATH = "/"
        self.JWT_REFRESH_COOKIE_PATH = "/refresh"
        self.JWT_CSRF_IN_COOKIES = True
        self.JWT_ACCESS_TOKEN_EXPIRES = timedelta(
            seconds=env_int("JWT_ACCESS_TOKEN_EXPIRES", 900)
        )
        self.JWT_REFRESH_TOKEN_EXPIRES = timedelta(
            seconds=env_int("JWT_REFRESH_TOKEN_EXPIRES", 30 * 24 * 3600)
        )
        self.REFRESH_REUSE_GRACE_SECONDS = env_int("REFRESH_REUSE_GRACE_SECONDS", 10)
        # Empty: memory in development and testing; in production redis when
        # REDIS_URL is set, else database (see blocklist.resolve_backend).
        self.BLOCKLIST_BACKEND = os.environ.get("BLOCKLIST_BACKEND", "").strip() or None
        self.REDIS_URL = os.environ.get("REDIS_URL", "").strip() or None
        self.REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "stores-api:")
        self.REDIS_SOCKET_TIMEOUT = 2.0
        self.RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
        # Flask-Limiter's limit strings ("5 per minute;20 per hour").
        self.RATELIMIT_LOGIN = os.environ.get(
            "RATELIMIT_LOGIN", "10 per minute;100 per hour"
        )
        self.RATELIMIT_LOGIN_USERNAME = os.environ.get(
            "RATELIMIT_LOGIN_USERNAME", "5 per minute;20 per hour"
        )
        self.RATELIMIT_REGISTER = os.environ.get(
            "RATELIMIT_REGISTER", "5 per minute;50 per hour"
        )
        self.RATELIMIT_REFRESH = os.environ.get("RATELIMIT_REFRESH", "30 per minute")
        self.RATELIMIT_STRATEGY = "moving-window"
        # Only a 429 says when to come back (Retry-After, set with the envelope):
        # X-RateLimit-* would describe just one of a route's several limits.
        self.RATELIMIT_HEADERS_ENABLED = False
        # A broken limiter storage must not take logins down: fall back to
        # per-process counting until it is back.
        self.RATELIMIT_SWALLOW_ERRORS = True
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
        # How many reverse proxies in front of the app set X-Forwarded-For.
        self.TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
        self.CORS_ORIGINS = [
            origin.strip()
            for origin in os.environ.get("CORS_ORIGINS", "").split(",")
            if origin.strip()
        ]
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip() or "text"
        # The browser demo of the silent-refresh flow at /demo (static files).
        self.DEMO_ENABLED = env_bool("DEMO_ENABLED", True)
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "").strip().upper() or "INFO"

        # OWASP's argon2id parameters: 19 MiB, 2 iterations, 1 lane.
        self.PASSWORD_ARGON2_MEMORY_COST = 19 * 1024
        self.PASSWORD_ARGON2_TIME_COST = 2
        self.PASSWORD_ARGON2_PARALLELISM = 1

        self.API_TITLE = "Stores REST API"
        self.API_VERSION = "1.0.0"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "/swagger-ui"
        self.OPENAPI_SWAGGER_UI_URL = "/swagger-ui-assets/"
        self.OPENAPI_SWAGGER_UI_CONFIG = {"persistAuthorization": True}
        self.API_SPEC_OPTIONS = {
            "info": {
                "description": (
                    "Log in for a fresh access token and a refresh token; trade the "
                    "refresh token at /refresh for a new non-fresh access token. "
                    "Destructive operations need a fresh token."
                )
            },
            "security": [{"bearerAuth": []}],
            "components": {
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                    }
                }
            },
        }


class DevelopmentConfig(BaseConfig):
    """Local development: embedded SQLite, in-memory blocklist."""


class TestingConfig(BaseConfig):
    """The test suite: tests pass the database and secrets they need."""

    def __init__(self) -> None:
        super().__init__()
        self.APP_ENV = "testing"
        self.TESTING = True
        self.JWT_SECRET_KEY = "testing-only-jwt-secret-key-0123456789abcdef"
        # Cheap hashing keeps the suite fast; production uses the defaults above.
        self.PASSWORD_ARGON2_MEMORY_COST = 1024
        self.PASSWORD_ARGON2_TIME_COST = 1
        # Rate-limit tests switch it on; other tests log in as often as they like.
        self.RATELIMIT_ENABLED = False


class ProductionConfig(BaseConfig):
    """Deployed: a strong secret is mandatory."""

    def __init__(self) -> None:
        super().__init__()
        self.APP_ENV = "production"
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip() or "json"
        # Cookies only over HTTPS, unless said otherwise.
        self.JWT_COOKIE_SECURE = env_bool("AUTH_COOKIE_SECURE", True)


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(app_env: str | None) -> BaseConfig:
    """Build the settings object for APP_ENV (default: development)."""
    name = (app_env or os.environ.get("APP_ENV", "") or "development").strip()
    if name not in CONFIGS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}.")
    return CONFIGS[name]()


def decode_leeway_seconds(config: dict) -> float:
    """JWT_DECODE_LEEWAY in seconds (Flask-JWT-Extended takes an int or a timedelta)."""
    leeway = config.get("JWT_DECODE_LEEWAY", 0)
    return leeway.total_seconds() if isinstance(leeway, timedelta) else float(leeway)


def check_config(config: dict) -> list[str]:
    """Refuse unsafe settings; return warnings worth logging at start-up."""
    warnings: list[str] = []
    env = config["APP_ENV"]
    secret = config.get("JWT_SECRET_KEY")
    if env == "production":
        if not secret:
            raise ConfigError("JWT_SECRET_KEY must be set in production.")
        if secret == DEVELOPMENT_JWT_SECRET_KEY:
            raise ConfigError("JWT_SECRET_KEY is the development key.")
        if len(secret.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"JWT_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes."
            )
    elif not secret:
        config["JWT_SECRET_KEY"] = DEVELOPMENT_JWT_SECRET_KEY
        warnings.append(
            "JWT_SECRET_KEY is not set: using the development key. "
            "Never deploy like this."
        )
    cookies = config["AUTH_COOKIES_ENABLED"]
    config["JWT_TOKEN_LOCATION"] = ["headers", "cookies"] if cookies else ["headers"]
    config["JWT_COOKIE_CSRF_PROTECT"] = cookies
    if config["JWT_COOKIE_SAMESITE"] not in ("Strict", "Lax", "None"):
        raise ConfigError("AUTH_COOKIE_SAMESITE must be Strict, Lax or None.")
    if config["JWT_COOKIE_SAMESITE"] == "None" and not config["JWT_COOKIE_SECURE"]:
        raise ConfigError("AUTH_COOKIE_SAMESITE=None needs AUTH_COOKIE_SECURE=true.")
    backend = config.get("BLOCKLIST_BACKEND")
    if backend is not None and backend not in BLOCKLIST_BACKENDS:
        raise ConfigError(
            f"BLOCKLIST_BACKEND must be one of {', '.join(BLOCKLIST_BACKENDS)}."
        )
    if config["LOG_FORMAT"] not in ("json", "text"):
        raise ConfigError("LOG_FORMAT must be json or text.")
    if backend == "redis" and not config.get("REDIS_URL"):
        raise ConfigError("BLOCKLIST_BACKEND=redis needs REDIS_URL.")
    return warnings
