"""What a token of ours carries: each claim's type and range, checked in one place.

A token signed with our key is refused (401 `invalid_token`; `invalid_grant` at
/token; nothing revoked at /revoke) when a claim is missing or is not what this
server issues, before anything reads it: the revocation store keys on `jti` and
`fam`, the database on `sub`, the verified-claims cache compares `exp`, the
freshness check reads `fresh`, the DPoP check `cnf`. A claim not in the table is
ignored (RFC 7519 §4: unknown claims are not an error). `iss` and `aud` are
PyJWT's to check (the app decodes with JWT_DECODE_ISSUER and JWT_DECODE_AUDIENCE),
so a token of another audience, a device cookie's for one, is never accepted here.

`claims_problem` runs in Flask-JWT-Extended's decode-key callback, which every full
decode calls (protected routes, /refresh, /token, /revoke); a token the cache
serves was checked when it was first decoded.
"""

from collections.abc import Callable
from typing import Any

from core.fields import MAX_ID

# Claims every token of ours carries; a token without one is not ours.
REQUIRED_CLAIMS = ("jti", "type", "sub", "iat", "exp")
TOKEN_TYPES = ("access", "refresh")
# The revocation store's keys and the sessions' ids are 64 characters at most
# (models/blocklist_entry.py, models/session.py).
MAX_KEY_LENGTH = 64
# RFC 8176 method names a token may list (this server issues one to three).
MAX_METHODS = 8
# 9999-12-31T23:59:59Z: the last instant a datetime can hold, and so every database
# and revocation store.
MAX_NUMERIC_DATE = 253_402_300_799
# An unpadded base64url SHA-256 digest: 32 bytes in 43 characters.
JKT_LENGTH = 43


def _numeric_date(value: Any) -> bool:
    """RFC 7519 §2 NumericDate: seconds since the epoch, an int or a float.

    The exact types, as JSON parses them: bool is an int in Python and not a
    number in JSON; NaN and infinities (which Python's JSON parser accepts) fail
    the range comparison."""
    return type(value) in (int, float) and 0 <= value <= MAX_NUMERIC_DATE


def _user_id(value: Any) -> bool:
    """A user id as the identity is written: digits only, no sign, no spaces, no
    leading zero (so one user has one spelling), within the users.id column."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= len(str(MAX_ID))
        and value.isascii()
        and value.isdigit()
        and value[0] != "0"
        and int(value) <= MAX_ID
    )


def _key(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_KEY_LENGTH


def _methods(value: Any) -> bool:
    """RFC 8176 `amr`: a short list of short method names ("pwd", "otp", ...)."""
    return (
        type(value) is list
        and 0 < len(value) <= MAX_METHODS
        and all(type(item) is str and 0 < len(item) <= 16 for item in value)
    )


def _confirmation(value: Any) -> bool:
    """RFC 7800 `cnf` as RFC 9449 §6.1 fills it: the key's SHA-256 thumbprint,
    base64url (43 characters), and nothing else (this server binds no other way)."""
    return (
        type(value) is dict
        and value.keys() == {"jkt"}
        and type(value["jkt"]) is str
        and len(value["jkt"]) == JKT_LENGTH
        and value["jkt"].isascii()
    )


def _boolean(value: Any) -> bool:
    return value is True or value is False


# claim -> (its check, what it must be), for every claim this server reads.
CLAIM_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "jti": (_key, f"a string of 1 to {MAX_KEY_LENGTH} characters"),
    "type": (lambda value: value in TOKEN_TYPES, "'access' or 'refresh'"),
    "sub": (_user_id, "a user id: a positive integer in a string"),
    "iat": (_numeric_date, "a NumericDate"),
    "exp": (_numeric_date, "a NumericDate"),
    "nbf": (_numeric_date, "a NumericDate"),
    "fresh": (_boolean, "true or false"),
    "fam": (_key, f"a string of 1 to {MAX_KEY_LENGTH} characters"),
    "auth_time": (_numeric_date, "a NumericDate"),
    "fam_iat": (_numeric_date, "a NumericDate"),
    "amr": (_methods, f"a list of 1 to {MAX_METHODS} method names (RFC 8176)"),
    "is_admin": (_boolean, "true or false"),
    "token_use": (lambda value: value == "api", "'api'"),
    "cnf": (_confirmation, "an object with one jkt: a key's thumbprint"),
    # Compared with hmac.compare_digest, which refuses non-ASCII strings.
    "csrf": (
        lambda value: isinstance(value, str) and value.isascii(),
        "an ASCII string",
    ),
}


def claims_problem(claims: dict[str, Any]) -> str | None:
    """Why these claims are not those of a token of ours, or None if they are."""
    for claim in REQUIRED_CLAIMS:
        if claim not in claims:
            return f"The token is missing the '{claim}' claim."
    for claim, (check, must_be) in CLAIM_RULES.items():
        if claim in claims and not check(claims[claim]):
            return f"The token's '{claim}' claim must be {must_be}."
    # Every refresh token belongs to a session, which /refresh rotates.
    if claims["type"] == "refresh" and "fam" not in claims:
        return "The token is missing the 'fam' claim."
    return None
