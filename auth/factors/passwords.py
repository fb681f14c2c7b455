"""Password hashing through libpass (the maintained passlib fork)."""

from flask import Flask
from passlib.context import CryptContext


class PasswordHasher:
    """Argon2id for new hashes; the seed's pbkdf2_sha256 still verifies."""

    def __init__(self) -> None:
        self._context: CryptContext | None = None
        self._dummy_hash = ""

    def init_app(self, app: Flask) -> None:
        """Build the hashing context from the app's cost settings."""
        self._context = CryptContext(
            schemes=["argon2", "pbkdf2_sha256"],
            deprecated=["pbkdf2_sha256"],
            argon2__type="ID",
            argon2__memory_cost=app.config["PASSWORD_ARGON2_MEMORY_COST"],
            argon2__time_cost=app.config["PASSWORD_ARGON2_TIME_COST"],
            argon2__parallelism=app.config["PASSWORD_ARGON2_PARALLELISM"],
        )
        self._dummy_hash = self._context.hash("dummy password for unknown users")

    @property
    def context(self) -> CryptContext:
        """The bound context; fails clearly when used before init_app."""
        if self._context is None:
            raise RuntimeError("PasswordHasher.init_app() has not been called.")
        return self._context

    def hash(self, password: str) -> str:
        """Hash a password with the default scheme."""
        return self.context.hash(password)

    def verify_and_update(
        self, password: str, stored_hash: str
    ) -> tuple[bool, str | None]:
        """Check a password; return a new hash when the stored one is outdated."""
        return self.context.verify_and_update(password, stored_hash)

    def dummy_verify(self, password: str) -> None:
        """Spend the same hashing work as a real check (unknown usernames)."""
        self.context.verify(password, self._dummy_hash)


# Bound to the app by the factory, like the extension objects.
passwords = PasswordHasher()
