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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from flask import current_app, has_request_context, request
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from auth.api_tokens import forget_api_token, is_api_token
from auth.callbacks import REVOKED, token_user_id, www_authenticate
from blocklist import Rotation, get_blocklist, session_start
from core import APIError, NotFound, audit
from core.telemetry import REFRESHES
from models import SessionModel
from models.user import TokenSubject

SESSION_ENDED = "The session has ended: log in again."


class RefreshTokenReused(APIError):
    """A rotated refresh token was replayed: its family is now revoked."""

    status_code = 401
    error = "token_revoked"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", REVOKED)}


class SessionExpired(APIError):
    """The session is past its absolute lifetime: only a new login continues."""

    status_code = 401
    error = "token_expired"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", SESSION_ENDED)}


class SessionEnded(APIError):
    """The session ended while its refresh was in flight: nothing is minted."""

    status_code = 401
    error = "token_revoked"
    headers = {"WWW-Authenticate": www_authenticate("invalid_token", REVOKED)}


class _Session(NamedTuple):
    """What every token of one session carries unchanged: its family, when it
    started (`fam_iat`) and when its user logged in (`auth_time`)."""

    family: str
    started: float
    auth_time: int


def start_session(user: TokenSubject) -> dict:
    """Log in: a new session, a fresh access token and a refresh token."""
    started = time.time()
    session = _Session(uuid.uuid4().hex, started, int(started))
    tokens, ends_at = _issue(user, session, fresh=True)
    SessionModel.start(session.family, user.id, ends_at, *_client())
    return tokens


def rotate_refresh_token(user: TokenSubject, claims: dict) -> dict:
    """Trade a refresh token for a non-fresh access token and a new refresh token."""
    blocklist = get_blocklist()
    # Tokens minted before sessions had an absolute lifetime count from their iat.
    session = _Session(
        claims["fam"],
        session_start(claims),
        int(claims.get("auth_time", claims["iat"])),
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
    """Refuse every token of the user issued until now; return the mark."""
    blocklist = get_blocklist()
    mark = blocklist.now()
    blocklist.revoke_user(str(user_id), mark, _latest_possible_expiry())
    SessionModel.end_all(user_id)
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


def revoke_token(token: str) -> dict | None:
    """RFC 7009 §2.1: end the session of any token of ours, access or refresh, that
    is presented; the claims of the token, or None for one that is not ours.

    Holding a token is the right to revoke it, so no other credential is asked
    for. An expired token still names its session, which is ended all the same.
    """
    try:
        claims = decode_token(token, allow_expired=True)
    except (PyJWTError, JWTExtendedException):
        return None  # unknown, malformed or not signed by us: nothing to revoke
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
        "iat": now,
    }
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
        "token_type": "Bearer",
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
    SessionModel.touch(session.family, ends_at, *_client())
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
