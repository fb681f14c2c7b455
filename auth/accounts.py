"""Accounts and their passwords: registration, login, password change (no HTTP)."""

from auth.api_tokens import revoke_api_tokens
from auth.factors.passwords import passwords
from auth.sessions import end_all_sessions
from auth.user_cache import user_check_cache
from core import Forbidden, Unauthorized, audit, db
from core.telemetry import LOGINS, REAUTHENTICATIONS
from models import MfaTokenModel, UserModel, WebAuthnChallengeModel
from models.base import write
from models.user import USERNAME_RE

# The audit log's username of a failed login whose name matches no account (no
# account can have it: USERNAME_RE has no angle brackets).
UNKNOWN_USERNAME = "<unknown>"


class InvalidCredentials(Unauthorized):
    """Unknown username or wrong password: one answer for both."""

    error = "invalid_credentials"


def register_user(username: str, password: str, *, is_admin: bool = False) -> UserModel:
    """Create a user; a taken name (even under a race) is a 409."""
    user = UserModel(
        username=username, password_hash=passwords.hash(password), is_admin=is_admin
    )
    with write("A user with that username already exists.", "username_taken"):
        db.session.add(user)
    return user


def authenticate(username: str, password: str) -> UserModel:
    """The user whose password matches (an outdated hash is upgraded), or a 401.
    A login with this alone succeeds unless the account has a second factor.

    An unknown username costs the same hashing work as a wrong password, so
    response times do not reveal which usernames exist.
    """
    # A name that could never have been registered cannot match (and must not
    # reach the database: PostgreSQL refuses NUL characters outright).
    user = UserModel.find_by_username(username) if USERNAME_RE.match(username) else None
    if user is None:
        passwords.dummy_verify(password)
    else:
        valid, new_hash = passwords.verify_and_update(password, user.password_hash)
        if valid:
            if new_hash:
                with write("Could not upgrade the password hash."):
                    user.password_hash = new_hash
            if not user.totp_enabled:  # else the login succeeds with its code
                login_succeeded(user)
            return user
    # Only an account's own name is logged: people type passwords into username
    # fields, and what was typed for an unknown name may be one.
    audit(
        "login_failure",
        "Login failed",
        username=UNKNOWN_USERNAME if user is None else user.username,
    )
    LOGINS.labels("failure").inc()
    raise InvalidCredentials("Invalid credentials.")


def login_succeeded(user: UserModel) -> None:
    """Audit and count a login whose every factor was right."""
    audit("login_success", "Login succeeded", user_id=str(user.id))
    LOGINS.labels("success").inc()


def check_password(user: UserModel, password: str) -> None:
    """A re-authentication: the password of a user the token already names, or a
    401 (audited and counted; the caller's failure budgets count it too)."""
    valid, _ = passwords.verify_and_update(password, user.password_hash)
    outcome = "success" if valid else "failure"
    REAUTHENTICATIONS.labels(outcome).inc()
    if not valid:
        audit(
            "reauthentication_failure", "Re-authentication failed", user_id=str(user.id)
        )
        raise InvalidCredentials("Invalid credentials.")


def change_password(user: UserModel, current_password: str, new_password: str) -> None:
    """Replace the password after checking the current one (403 if wrong)."""
    valid, _ = passwords.verify_and_update(current_password, user.password_hash)
    if not valid:
        raise Forbidden("The current password is incorrect.", "invalid_credentials")
    with write("The password could not be changed."):
        user.password_hash = passwords.hash(new_password)
        # A login waiting for its code proved the old password: it ends too, as
        # the passkey ceremonies a session of the old password began.
        MfaTokenModel.end_all(user.id)
        WebAuthnChallengeModel.end_all(user.id)


def delete_account(user: UserModel) -> None:
    """Delete a user, revoking every token of theirs first: the revocation store
    refuses them on every worker at once, whatever its user cache still holds."""
    end_all_sessions(user.id)
    revoke_api_tokens(user.id)
    user.delete()
    cache = user_check_cache()
    if cache is not None:
        cache.forget(user.id)
