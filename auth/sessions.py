"""Sessions and their tokens: log in, rotate, revoke (no HTTP here, but the request's
client address and user agent are recorded on the session).

Every login starts a *session*: a token family (the `fam` claim, carried by every
access and refresh token descended from that login) and a row in `sessions`, listed
to its user until the session ends. Each token also carries `fam_iat`, when the
session started (to the microsecond), and `auth_time`, the login time, both copied
unchanged by every rotation: no token outlives `fam_iat + SESSION_MAX_AGE`, however
often it is refreshed, and a session not refreshed for `JWT_REFRESH_TOKEN_EXPIRES`
(the idle timeout) ends too. Ending every session of a user (`end_all_sessions`)
refuses the tokens of every session whose `fam_iat` is before its mark, so a
refresh that was in flight cannot carry a session past it.

`/refresh` rotates within the family: each refresh token is traded once. A refresh
token presented again is a retry when it is the family's immediately previous one
and was rotated less than REFRESH_REUSE_GRACE_SECONDS ago (two tabs, a lost
response): the retry gets a refresh token with the same `jti` as the winner's, so
the family stays one chain. Anything else is a replay, and the whole family is
revoked (RFC 9700 §4.14.2).
"""

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from flask import current_app, has_request_context, request
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from auth.api_tokens import forget_api_token, is_api_token
from auth.callbacks import REVOKED, token_user_id
from auth.challenges import www_authenticate
from auth.dpop import bound_key
from blocklist import Rotation, get_blocklist, session_start
from core import APIError, NotFound, audit
from core.telemetry import REFRESHES
from models import MfaTokenModel, SessionModel, WebAuthnChallengeModel
from models.user import TokenSubject

SESSION_ENDED = "The session has ended: log in again."
NO_SESSION = "An API token has no session to re-authenticate: log in for one."
# RFC 8176 §2: what a password login proves.
PASSWORD = ("pwd",)
# Refreshes racing with a re-authentication that it follows down the chain.
MAX_CHAIN_STEPS = 8


class SessionExpired(APIError):
    """The session is past its absolute lifetime: only a new login continues."""

    status_code = 401
    error = "token_expired"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", SESSION_ENDED)}


class SessionEnded(APIError):
    """The session ended while its refresh or step-up was in flight: nothing is
    minted."""

    status_code = 401
    error = "token_revoked"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", REVOKED)}


class RefreshTokenReused(SessionEnded):
    """A rotated refresh token was replayed: its family is now revoked."""


class NoSession(APIError):
    """A step-up asked with a token that belongs to no session (an API token)."""

    status_code = 401
    error = "invalid_token"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", NO_SESSION)}


def require_session(claims: dict) -> None:
    """Refuse a token of no session (an API token): nothing to step up in."""
    if "fam" not in claims:
        raise NoSession(NO_SESSION)


class _Session(NamedTuple):
    """What every token of one session carries: its family and when it started
    (`fam_iat`), and the key it is bound to (`cnf.jkt`, RFC 9449 §6.1), unchanged;
    when its user last proved who they are (`auth_time`) and how (`amr`, RFC
    8176), which a re-authentication moves on."""

    family: str
    started: float
    auth_time: int
    amr: tuple[str, ...]
    jkt: str | None = None


def start_session(
    user: TokenSubject, amr: Sequence[str] = PASSWORD, jkt: str | None = None
) -> dict:
    """Log in: a new session, a fresh access token and a refresh token (bound to
    the key `jkt` names, when the login came with a DPoP proof)."""
    started = time.time()
    session = _Session(uuid.uuid4().hex, started, int(started), tuple(amr), jkt)
    refresh_jti = str(uuid.uuid4())
    tokens, ends_at = _issue(user, session, fresh=True, refresh_jti=refresh_jti)
    SessionModel.start(session.family, user.id, ends_at, *_client(), refresh_jti, jkt)
    return tokens


def session_like(user: TokenSubject, claims: dict) -> dict:
    """A new session proved as the token of `claims` was (its `amr`), and bound to
    the same key (its `cnf.jkt`): a password change's, whose request showed both."""
    return start_session(user, claims.get("amr", PASSWORD), bound_key(claims))


def reauthenticate(user: TokenSubject, claims: dict, amr: Sequence[str]) -> dict:
    """Step up inside the session of an access token whose user has just proved
    who they are: a fresh access token of the same session (same `fam`, same
    start, so the same absolute end), `auth_time` now, and a new refresh token.

    The session's newest refresh token is spent as at a refresh: re-sent within
    REFRESH_REUSE_GRACE_SECONDS it gets a pair of the same chain, later it is a
    replay. A refresh racing with this one is followed down the chain, so one
    chain goes on, never two.
    """
    session = _Session(
        claims["fam"],
        session_start(claims),
        int(time.time()),
        tuple(amr),
        bound_key(claims),
    )
    replacement = str(uuid.uuid4())
    _spend_newest_refresh_token(session, replacement)
    tokens, ends_at = _issue(user, session, fresh=True, refresh_jti=replacement)
    SessionModel.touch(
        session.family, ends_at, *_client(), replacement, authenticated=True
    )
    if get_blocklist().is_token_revoked(claims):
        raise SessionEnded(REVOKED)
    return tokens


def _spend_newest_refresh_token(session: _Session, replacement: str) -> None:
    """Mark the session's newest refresh token rotated into `replacement`."""
    blocklist = get_blocklist()
    row = SessionModel.newest_refresh_token(session.family)
    if row is None or row[0] is None:
        raise SessionEnded(SESSION_ENDED)  # ended meanwhile, or older than rows
    newest: str = row[0]
    expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=UTC)
    # That token expires with the row (its exp is the row's end); a grace copy a
    # little later: the mark must outlive both.
    grace = current_app.config["REFRESH_REUSE_GRACE_SECONDS"]
    expires_at = expires.timestamp() + grace
    rotation = Rotation(blocklist.now(), replacement)
    for _ in range(MAX_CHAIN_STEPS):
        if blocklist.mark_rotated(newest, rotation, expires_at):
            return
        # Rotated meanwhile by a refresh: its successor is the newest now.
        previous = blocklist.get_rotation(newest)
        if previous is None:
            continue
        newest = previous.replaced_by
    raise SessionEnded(SESSION_ENDED)


def rotate_refresh_token(user: TokenSubject, claims: dict) -> dict:
    """Trade a refresh token for a non-fresh access token and a new refresh token."""
    blocklist = get_blocklist()
    # Tokens minted before sessions had an absolute lifetime count from their iat.
    session = _Session(
        claims["fam"],
        session_start(claims),
        int(claims.get("auth_time", claims["iat"])),
        tuple(claims.get("amr", PASSWORD)),
        bound_key(claims),
    )
    if _session_end(session.started) <= time.time():
        # Inside the decode leeway a token past its cap still decodes: the session
        # is over all the same, and no new token is minted for it.
        raise SessionExpired(SESSION_ENDED)
    replacement = str(uuid.uuid4())
    rotation = Rotation(blocklist.now(), replacement)
    grace = current_app.config["REFRESH_REUSE_GRACE_SECONDS"]
    # A grace copy of this token (same jti) was minted at most `grace` seconds
    # after it, so it may expire that much later: the mark must outlive both.
    if blocklist.mark_rotated(claims["jti"], rotation, claims["exp"] + grace):
        REFRESHES.labels("rotated").inc()
        return _refreshed(user, claims, session, replacement)

    previous = blocklist.get_rotation(claims["jti"])
    # Read the clock now: a concurrent winner may have rotated after we started.
    # Clocks of several instances may disagree a little: never count below zero.
    if (
        previous is not None
        and max(0.0, blocklist.now() - previous.rotated_at) < grace
        and blocklist.get_rotation(previous.replaced_by) is None
    ):
        # The winner's successor `jti`: whichever copy is rotated first makes the
        # other one a used token, so one chain goes on, never two.
        REFRESHES.labels("retry").inc()
        return _refreshed(user, claims, session, previous.replaced_by)

    _revoke_family(session.family)
    SessionModel.end(int(claims["sub"]), [session.family])
    REFRESHES.labels("reuse_detected").inc()
    audit(
        "refresh_token_reuse",
        "Refresh token reuse detected: family revoked",
        level=logging.WARNING,
        user_id=claims["sub"],
        family=session.family,
    )
    raise RefreshTokenReused(REVOKED)


def end_session(claims: dict) -> None:
    """Log out: this token and its whole session (RFC 7009 §2.1); an API token,
    which has no session, is revoked and no longer listed."""
    get_blocklist().revoke(claims["jti"], claims["exp"])
    user_id = token_user_id(claims)
    if is_api_token(claims) and user_id is not None:
        forget_api_token(user_id, claims["jti"])
    if "fam" in claims:
        _revoke_family(claims["fam"])
        if user_id is not None:
            SessionModel.end(user_id, [claims["fam"]])


def end_all_sessions(user_id: int) -> float:
    """Refuse every token of the user issued until now, and end the logins that
    wait for a second factor; return the mark."""
    blocklist = get_blocklist()
    mark = blocklist.now()
    blocklist.revoke_user(str(user_id), mark, _latest_possible_expiry())
    # Logins waiting for a second factor end too, and passkey ceremonies in
    # flight: everywhere means everywhere.
    MfaTokenModel.end_all(user_id)
    WebAuthnChallengeModel.end_all(user_id)
    SessionModel.end_all(user_id)  # commits both
    return mark


def list_sessions(user_id: int, current: str | None) -> list[dict]:
    """The user's sessions that have not ended, newest first; `current` is the
    calling token's session."""
    return [
        {
            "id": row.id,
            "created_at": row.created_at,
            "last_used_at": row.last_used_at,
            "expires_at": row.expires_at,
            "user_agent": row.user_agent,
            "ip_address": row.ip_address,
            "authenticated_at": row.authenticated_at or row.created_at,
            "dpop_jkt": row.dpop_jkt,
            "current": row.id == current,
        }
        for row in SessionModel.of_user(user_id)
    ]


def end_session_by_id(user_id: int, session_id: str) -> None:
    """End one of the user's sessions; 404 for any other id (never says whose)."""
    if not any(row.id == session_id for row in SessionModel.of_user(user_id)):
        raise NotFound("Session not found.")
    _end_families(user_id, [session_id])


def end_other_sessions(user_id: int, current: str | None) -> int:
    """End every session of the user but `current`; how many ended."""
    others = [row.id for row in SessionModel.of_user(user_id) if row.id != current]
    _end_families(user_id, others)
    return len(others)


def revoke_token(token: str, check: Callable[[dict], None]) -> dict | None:
    """RFC 7009 §2.1: end the session of any token of ours, access or refresh, that
    is presented; the claims of the token, or None for one that is not ours.

    Holding a token is the right to revoke it, so no other credential is asked
    for; but `check` (the DPoP binding's) may refuse: a bound token is held by
    whoever holds its key. An expired token still names its session, which is
    ended all the same.
    """
    try:
        claims = decode_token(token, allow_expired=True)
    except (PyJWTError, JWTExtendedException):
        return None  # unknown, malformed or not signed by us: nothing to revoke
    check(claims)
    end_session(claims)
    return claims


def _issue(
    user: TokenSubject, session: _Session, *, fresh: bool, refresh_jti=None
) -> tuple[dict, datetime]:
    """A new access token and refresh token of `session`, and when the session
    ends at the latest (the refresh token's expiry).

    Neither outlives the session's start + SESSION_MAX_AGE. `iat` and `fam_iat`
    are kept to the microsecond so per-user marks ("sessions started before T")
    are exact.
    """
    config = current_app.config
    now = time.time()
    cap = _session_end(session.started)
    ends = min(now + config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds(), cap)
    access = min(now + config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds(), cap) - now
    refresh = ends - now
    if refresh <= 0:
        raise SessionExpired(SESSION_ENDED)
    claims = {
        # The user check's row (at most 2 s old), never copied from an old token;
        # rights are read from the database anyway (auth.decorators).
        "is_admin": user.is_admin,
        "fam": session.family,
        "fam_iat": session.started,
        "auth_time": session.auth_time,
        "amr": list(session.amr),
        "iat": now,
    }
    if session.jkt is not None:
        claims["cnf"] = {"jkt": session.jkt}
    identity = str(user.id)
    tokens = {
        "access_token": create_access_token(
            identity=identity,
            fresh=fresh,
            additional_claims=claims,
            expires_delta=timedelta(seconds=access),
        ),
        "refresh_token": create_refresh_token(
            identity=identity,
            additional_claims=dict(claims, jti=refresh_jti or str(uuid.uuid4())),
            expires_delta=timedelta(seconds=refresh),
        ),
        # RFC 9449 §5: a bound token's type is DPoP.
        "token_type": "Bearer" if session.jkt is None else "DPoP",
        "expires_in": int(access),
    }
    return tokens, datetime.fromtimestamp(ends, UTC)


def _refreshed(
    user: TokenSubject, claims: dict, session: _Session, refresh_jti: str
) -> dict:
    """The pair a refresh answers, and the session row moved on (one UPDATE).

    The session may have ended while this refresh was in flight (a logout, every
    session ended by a password change): the tokens minted here are refused
    everywhere anyway (same family, same `fam_iat`), and the refresh says so with
    a 401 rather than answer tokens that would not work. Every ending writes the
    revocation store before it deletes the session's row, so the check after the
    UPDATE sees any ending that the UPDATE missed; the UPDATE never recreates a
    row.
    """
    tokens, ends_at = _issue(user, session, fresh=False, refresh_jti=refresh_jti)
    SessionModel.touch(session.family, ends_at, *_client(), refresh_jti)
    if get_blocklist().is_token_revoked(claims):
        raise SessionEnded(REVOKED)
    return tokens


def _end_families(user_id: int, families: Sequence[str]) -> None:
    for family in families:
        _revoke_family(family)
    SessionModel.end(user_id, families)


def _client() -> tuple[str | None, str | None]:
    """The user agent and address of this request (after the trusted proxies);
    none outside a request (tokens minted by a command or a script)."""
    if not has_request_context():
        return None, None
    return request.user_agent.string or None, request.remote_addr


def _session_end(started: float) -> float:
    """When a session that started at `started` ends, however it is refreshed."""
    return started + current_app.config["SESSION_MAX_AGE"].total_seconds()


def _revoke_family(family: str) -> None:
    """Refuse every token of one login, the newest refresh token included."""
    get_blocklist().revoke_family(family, _latest_possible_expiry())


def _latest_possible_expiry() -> float:
    """No token issued until now outlives this (refresh tokens live longest)."""
    config = current_app.config
    longest = max(
        config["JWT_REFRESH_TOKEN_EXPIRES"], config["JWT_ACCESS_TOKEN_EXPIRES"]
    )
    return time.time() + longest.total_seconds()
