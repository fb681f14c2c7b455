"""The settings every in-process test app starts from (test-only, so never in the
application's own settings): a fixed key, cheap hashing, rate limits off."""

TEST_SETTINGS = {
    "APP_ENV": "development",
    "TESTING": True,
    "JWT_SECRET_KEY": "testing-only-jwt-secret-key-0123456789abcdef",
    # Cheap hashing keeps the suite fast; production uses the OWASP parameters.
    "PASSWORD_ARGON2_MEMORY_COST": 1024,
    "PASSWORD_ARGON2_TIME_COST": 1,
    # The rate-limit tests switch it on; other tests log in as often as they like.
    "RATELIMIT_ENABLED": False,
}
