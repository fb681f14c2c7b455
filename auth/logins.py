"""A login and a step-up, with every factor the account has (RFC 8176 `amr`).

An account without a second factor logs in with its password (`amr` ["pwd"]).
With TOTP, a right password at /login answers 401 `mfa_required` with an
`mfa_token` instead of tokens, and POST /login/mfa completes the login with a
code (`amr` ["pwd", "otp"]); a step-up needs the password and a code together.
A wrong password is refused the same way whatever factors the account has, so
`mfa_required` says nothing before the password is right.

A passkey logs in or steps up alone (`amr` ["hwk", "user"] or ["swk", "user"]),
TOTP or not: with user verification required, it is two factors already.

Each login that issues tokens binds them to the key of the request's DPoP proof,
when it has one (auth/dpop.py); the proof is checked before the credentials.
"""

from collections.abc import Sequence

from auth.accounts import authenticate, check_password, login_succeeded
from auth.dpop import session_binding
from auth.factors import passkeys, totp
from auth.factors.mfa_tokens import (
    InvalidMfaToken,
    MfaRequired,
    complete,
    discard,
    issue_mfa_token,
    take_attempt,
    waiting_login,
)
from auth.sessions import PASSWORD, start_session
from core import audit
from models import UserModel

# RFC 8176 §2: "otp", a one-time password (a TOTP code, or a recovery code).
PASSWORD_AND_OTP = ("pwd", "otp")


def password_login(username: str, password: str, token_delivery: str) -> dict:
    """The tokens of a new session, or MfaRequired with an `mfa_token` for an
    account with a second factor (the password was right)."""
    jkt = session_binding(token_delivery)
    user = authenticate(username, password)
    if user.totp_enabled:
        audit(
            "mfa_required",
            "Password right; a second factor is asked",
            user_id=str(user.id),
        )
        raise MfaRequired(
            "A second factor is required: send a code with the mfa_token to "
            "POST /login/mfa.",
            issue_mfa_token(user, token_delivery),
        )
    return start_session(user, jkt=jkt)


def second_factor_login(
    mfa_token: str, code: str | None, recovery_code: str | None
) -> tuple[dict, str]:
    """Complete a waiting login with a TOTP or recovery code: the tokens of a new
    session and how /login was asked to deliver them."""
    waiting = waiting_login(mfa_token)
    token_delivery = waiting.token_delivery
    user = UserModel.find(waiting.user_id)
    if user is None or not user.totp_enabled:
        # The account went, or dropped its second factor, while this login waited.
        discard(mfa_token)
        raise InvalidMfaToken("The login is no longer pending: log in again.")
    jkt = session_binding(token_delivery)
    # The attempt is counted first (side by side, attempts get the limit between
    # them), then the code is spent and the login ended in one transaction.
    take_attempt(mfa_token)
    complete(mfa_token, lambda: totp.check(user, code, recovery_code))
    login_succeeded(user)
    return start_session(user, PASSWORD_AND_OTP, jkt), token_delivery


def step_up_factors(
    user: UserModel, password: str, code: str | None, recovery_code: str | None
) -> Sequence[str]:
    """Check what a step-up must prove for `user` (the password, and a code when
    the account has TOTP); the `amr` of the fresh token."""
    check_password(user, password)
    if not user.totp_enabled:
        return PASSWORD
    if code is None and recovery_code is None:
        raise MfaRequired(
            "This account has a second factor: send a code (or a recovery_code) "
            "with the password."
        )
    totp.verify(user, code, recovery_code)
    return PASSWORD_AND_OTP


def passkey_login(credential: dict, token_delivery: str) -> dict:
    """The tokens of a new session of the account a passkey assertion proves."""
    jkt = session_binding(token_delivery)
    user, amr = passkeys.passkey_login(credential)
    login_succeeded(user)
    return start_session(user, amr, jkt)
