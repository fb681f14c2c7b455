"""Device cookies: a client that has logged in before keeps a failed-login budget
of its own, so strangers who spend an account's budget cannot lock it out there.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies" (Authentication
Cheat Sheet): each successful password login sets a new cookie naming the account
and a random device id. A login attempt that carries a valid one for the account
it names is counted against that device alone (auth/limits.py); anything else
(no cookie, a forged, expired or other account's one) is an unknown device.

The cookie is a JWT signed with the app's current signing key (auth/keys.py: any
algorithm, and it rotates with the keys), with an audience of its own
(`<JWT_AUDIENCE>:device`), so it never passes as an access or refresh token, and
a tag of the password hash it was issued under, so a password change makes every
device cookie of the account unknown (a thief who once logged in and collected
cookies keeps no budget of his own). It is HttpOnly, Secure and SameSite per the
cookie settings, and sent only to the login routes under the mount path.
"""

import base64
import hashlib
import logging
import secrets
import time
from datetime import timedelta
from typing import Any, NamedTuple

import jwt
from flask import Response, current_app, g, request
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.exceptions import JWTDecodeError
from sqlalchemy.exc import SQLAlchemyError

from auth.keys import signing_keys, verifying_key
from core import db, decode_leeway_seconds
from models import UserModel
from models.user import USERNAME_RE

DEVICE_COOKIE = "login_device"
DEVICE_TOKEN_TYPE = "device"
# The routes that take a password; the cookie is sent to them only.
# Where a password is checked: a known device keeps its own budget at each.
LOGIN_PATHS = ("/login", "/token", "/reauthenticate", "/user/password")
REQUIRED = ["iss", "aud", "sub", "jti", "type", "iat", "exp", "cred"]

log = logging.getLogger("api.devices")


def device_cookies_enabled() -> bool:
    """Device cookies only matter to the login budgets: on with rate limiting."""
    config = current_app.config
    return bool(config["RATELIMIT_ENABLED"] and config["DEVICE_COOKIE_MAX_AGE"])


class KnownDevice(NamedTuple):
    """A device that has logged in to an account: whose, and which."""

    user_id: str
    device_id: str


def known_device(username: str) -> KnownDevice | None:
    """This request's device, if its device cookie was issued to the account
    `username` names, under its current password; else None (an unknown device).
    Worked out once per request."""
    cache = g.setdefault("_known_devices", {})
    if username not in cache:
        cache[username] = _known_device(username)
    return cache[username]


def _known_device(username: str) -> KnownDevice | None:
    value = request.cookies.get(DEVICE_COOKIE)
    if not value or not device_cookies_enabled():
        return None
    claims = _verified(value)
    if claims is None:
        return None
    user = account(username)
    if (
        user is None
        or str(user.id) != claims["sub"]
        or _credential_tag(user.password_hash) != claims["cred"]
    ):
        return None
    return KnownDevice(claims["sub"], claims["jti"])


def _verified(value: str) -> dict[str, Any] | None:
    """The claims of a device cookie of ours that has not expired, else None."""
    config = current_app.config
    try:
        header = jwt.get_unverified_header(value)
        claims = jwt.decode(
            value,
            verifying_key(header),  # the key its kid names, that key's algorithm
            algorithms=[header["alg"]],
            audience=device_audience(),
            issuer=config["JWT_ENCODE_ISSUER"],
            leeway=decode_leeway_seconds(config),
            options={"require": REQUIRED},
        )
    except (jwt.PyJWTError, JWTDecodeError):
        return None
    well_formed = (
        claims["type"] == DEVICE_TOKEN_TYPE
        # The subject is compared with the account's id as a string (below).
        and isinstance(claims["sub"], str)
        and isinstance(claims["jti"], str)
        and isinstance(claims["cred"], str)
    )
    return claims if well_formed else None


def account(username: str) -> UserModel | None:
    """The account `username` names, or None (also when the database cannot say:
    the login that follows answers for that)."""
    if not USERNAME_RE.match(username):
        return None
    try:
        return UserModel.find_by_username(username)
    except SQLAlchemyError:
        log.warning("Could not look the account up for a device cookie.")
        db.session.rollback()
        return None


def device_audience() -> str:
    """The audience of device cookies: never the access and refresh tokens' own."""
    return f"{current_app.config['JWT_ENCODE_AUDIENCE']}:device"


def remember_device(response: Response, username: str) -> Response:
    """After a successful login, set a new device cookie for the account."""
    if not 200 <= response.status_code < 300 or not device_cookies_enabled():
        return response
    user = account(username)
    if user is None:
        return response
    lifetime = current_app.config["DEVICE_COOKIE_MAX_AGE"]
    seconds = lifetime.total_seconds() if isinstance(lifetime, timedelta) else lifetime
    max_age = int(seconds)
    value = _device_token(user, max_age)
    for path in LOGIN_PATHS:
        response.set_cookie(
            DEVICE_COOKIE,
            value=value,
            max_age=max_age,
            secure=jwt_config.cookie_secure,
            httponly=True,
            domain=jwt_config.cookie_domain,
            # Under a path prefix, the login routes are under the mount path.
            path=request.script_root + path,
            samesite=jwt_config.cookie_samesite,
        )
    return response


def _device_token(user: UserModel, max_age: int) -> str:
    """A device cookie's value: (account, new device id), signed."""
    key = signing_keys().current
    now = int(time.time())
    claims = {
        "iss": current_app.config["JWT_ENCODE_ISSUER"],
        "aud": device_audience(),
        "sub": str(user.id),
        "jti": secrets.token_urlsafe(16),  # the device id
        "type": DEVICE_TOKEN_TYPE,
        "iat": now,
        "exp": now + max_age,
        "cred": _credential_tag(user.password_hash),
    }
    return jwt.encode(
        claims, key.signing_key, algorithm=key.algorithm, headers={"kid": key.kid}
    )


def _credential_tag(password_hash: str) -> str:
    """Names the password hash without revealing it (a salted hash, hashed)."""
    digest = hashlib.sha256(password_hash.encode()).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode()
