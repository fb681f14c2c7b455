"""TOTP (RFC 6238) and recovery codes: enrolment, the codes checked at a login or
a step-up, and what an account has (no HTTP).

- A secret is 160 random bits (RFC 4226 §4 R6), shown once as base32, as an
  `otpauth://` URI and as that URI's QR code; stored sealed (encryption.py).
- A code is accepted for the current 30-second step and the one before (RFC 6238
  §5.2: one step of network delay), and never twice: a step is spent by a single
  UPDATE that moves the account's last used step forward, so of two requests
  with one code (on any workers) one wins.
- Ten recovery codes of 80 random bits each, shown once, stored as SHA-256
  digests (a fast hash is enough for 80 bits: unlike a password, a code cannot
  be guessed from a dictionary), each spent by a DELETE.
"""

import hashlib
import hmac
import io
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pyotp
import segno
from flask import current_app

from auth.factors.encryption import seal, sealed_with_current_key, unseal
from core import APIError, Conflict, Unauthorized, audit, db
from core.telemetry import MFA_CHANGES, MFA_VERIFICATIONS
from models import RecoveryCodeModel, TotpFactorModel, UserModel
from models.base import utcnow, write

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits
RECOVERY_CODES = 10
RECOVERY_CODE_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lower case
RECOVERY_CODE_GROUPS = 4  # of 4 characters: 16 x 5 = 80 bits


class InvalidCode(Unauthorized):
    """A second-factor code that is wrong, used already, or of another factor."""

    error = "invalid_code"


class InvalidEnrolmentCode(APIError):
    """The code that should confirm an enrolment is not right: nothing changes."""

    status_code = 400
    error = "invalid_code"


@dataclass(frozen=True)
class Enrolment:
    """What a new secret is shown as, once."""

    secret: str
    otpauth_uri: str
    qr_svg: str


def start_enrolment(user: UserModel) -> Enrolment:
    """A new pending secret for `user` (replacing a pending one); 409 when the
    account has TOTP already (it is turned off first)."""
    if user.totp_enabled:
        raise Conflict("TOTP is already enabled on this account.", "totp_enabled")
    secret = pyotp.random_base32(length=SECRET_BYTES * 8 // 5)
    with write("The TOTP secret could not be stored."):
        factor = TotpFactorModel.of(user.id)
        if factor is None:
            factor = TotpFactorModel(user_id=user.id)
            db.session.add(factor)
        factor.secret = seal(secret)
        factor.created_at = utcnow()
        factor.confirmed_at = None
        factor.last_step = None
    MFA_CHANGES.labels("totp_started").inc()
    audit("totp_enrolment_started", "TOTP enrolment started", user_id=str(user.id))
    uri = otpauth_uri(secret, user.username)
    return Enrolment(secret, uri, qr_svg(uri))


def qr_svg(uri: str) -> str:
    """`uri`'s QR code as a standalone SVG document: its namespace declared, so
    it shows as an <img> or a data: URL (segno's svg_inline leaves it out, for
    inline HTML only, which a client must not build from server text)."""
    svg = io.BytesIO()
    segno.make(uri, error="m").save(svg, kind="svg", xmldecl=False, nl=False, scale=4)
    return svg.getvalue().decode()


def otpauth_uri(secret: str, username: str) -> str:
    """The Key Uri Format authenticator apps read: otpauth://totp/ISSUER:NAME?..."""
    issuer = current_app.config["MFA_ISSUER"]
    label = quote(f"{issuer}:{username}", safe=":@")
    parameters = {"secret": secret, "issuer": issuer}
    return f"otpauth://totp/{label}?{urlencode(parameters, quote_via=quote)}"


def confirm_enrolment(user: UserModel, code: str) -> list[str]:
    """Turn TOTP on with a first code of the pending secret; the recovery codes,
    shown this once. 409 with nothing pending, 400 for a wrong code."""
    factor = TotpFactorModel.of(user.id)
    if user.totp_enabled or factor is None or factor.confirmed_at is not None:
        raise Conflict(
            "No TOTP enrolment is pending: start one with POST /me/mfa/totp.",
            "no_pending_enrolment",
        )
    step = _matching_step(unseal(factor.secret), code)
    with write("TOTP could not be enabled."):
        if step is None or not TotpFactorModel.spend_step(
            user.id, step, factor.secret, pending=True
        ):
            _verified("totp", False)  # write() rolls the block back
            raise InvalidEnrolmentCode("The code is not right for the new secret.")
        factor.confirmed_at = utcnow()
        user.totp_enabled = True
        codes = _new_recovery_codes(user.id)
    _verified("totp", True)
    MFA_CHANGES.labels("totp_enabled").inc()
    audit("totp_enabled", "TOTP enabled", user_id=str(user.id))
    return codes


def disable(user: UserModel) -> None:
    """Back to a password alone: the secret and the recovery codes are gone."""
    factor = TotpFactorModel.of(user.id)
    if factor is None and not user.totp_enabled:
        raise Conflict("TOTP is not enabled on this account.", "totp_not_enabled")
    with write("TOTP could not be disabled."):
        if factor is not None:
            db.session.delete(factor)
        RecoveryCodeModel.replace(user.id, [])
        user.totp_enabled = False
    MFA_CHANGES.labels("totp_disabled").inc()
    audit("totp_disabled", "TOTP disabled", user_id=str(user.id))


def renew_recovery_codes(user: UserModel) -> list[str]:
    """A new set of recovery codes; the old ones die. 409 without TOTP."""
    if not user.totp_enabled:
        raise Conflict("TOTP is not enabled on this account.", "totp_not_enabled")
    with write("The recovery codes could not be renewed."):
        codes = _new_recovery_codes(user.id)
    MFA_CHANGES.labels("recovery_codes_renewed").inc()
    audit("recovery_codes_renewed", "Recovery codes renewed", user_id=str(user.id))
    return codes


def status(user: UserModel) -> dict:
    """What the account has: TOTP on or off, and how many recovery codes are left."""
    left = RecoveryCodeModel.count_left(user.id) if user.totp_enabled else 0
    return {"totp": user.totp_enabled, "recovery_codes_left": left}


def verify(user: UserModel, code: str | None, recovery_code: str | None) -> None:
    """The second factor of a step-up: `check` in a transaction of its own."""
    with write("The code could not be checked."):
        check(user, code, recovery_code)


def check(user: UserModel, code: str | None, recovery_code: str | None) -> None:
    """Spend a TOTP code or a recovery code of `user`, each good once, in the
    caller's transaction; InvalidCode otherwise (audited and counted)."""
    factor_name = "totp" if code is not None else "recovery_code"
    accepted = (
        _spend_totp(user.id, code)
        if code is not None
        else recovery_code is not None
        and RecoveryCodeModel.spend(user.id, _digest(user.id, recovery_code))
    )
    _verified(factor_name, accepted)
    if not accepted:
        audit(
            "mfa_failure",
            "A second-factor code was refused",
            user_id=str(user.id),
            factor=factor_name,
        )
        raise InvalidCode("The code is not right, or it was used already.")
    if factor_name == "recovery_code":
        audit("recovery_code_used", "A recovery code was used", user_id=str(user.id))


def reseal_secrets() -> int:
    """Seal every secret that a fallback key sealed again with the current key;
    how many were."""
    count = 0
    with write("The TOTP secrets could not be resealed."):
        for factor in db.session.scalars(db.select(TotpFactorModel)):
            if not sealed_with_current_key(factor.secret):
                factor.secret = seal(unseal(factor.secret))
                count += 1
    return count


def _spend_totp(user_id: int, code: str) -> bool:
    factor = TotpFactorModel.of(user_id)
    if factor is None or factor.confirmed_at is None:
        return False
    step = _matching_step(unseal(factor.secret), code)
    return step is not None and TotpFactorModel.spend_step(user_id, step, factor.secret)


def _matching_step(secret: str, code: str) -> int | None:
    """The step (this one or the one before) whose code `code` is, or None. Both
    are compared in constant time."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    now = int(time.time()) // STEP_SECONDS
    matches = [
        step
        for step in (now, now - 1)
        if hmac.compare_digest(totp.generate_otp(step), code)
    ]
    return matches[0] if matches else None


def _new_recovery_codes(user_id: int) -> list[str]:
    """Ten new codes, stored as digests in the caller's transaction."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    RecoveryCodeModel.replace(user_id, [_digest(user_id, code) for code in codes])
    return codes


def _recovery_code() -> str:
    characters = "".join(
        secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(4 * RECOVERY_CODE_GROUPS)
    )
    return "-".join(characters[i : i + 4] for i in range(0, len(characters), 4))


def normalized_recovery_code(code: str) -> str:
    """As stored: lower case, without the hyphens people may leave out."""
    return code.replace("-", "").lower()


def _digest(user_id: int, code: str) -> str:
    """The stored form of a recovery code, bound to its account."""
    text = f"{user_id}:{normalized_recovery_code(code)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _verified(factor: str, accepted: bool) -> None:
    MFA_VERIFICATIONS.labels(factor, "success" if accepted else "failure").inc()
