"""A Python client for the Stores API: login (password, second factor or
passkey), silent refresh, step-up and re-login hook.

    from clients.python.api_client import ApiClient, LoginRequired

    def ask_for_password(client: ApiClient) -> None:
        password = getpass.getpass("Password: ")
        if client.step_up is not None:  # a fresh-only route: stay in the session
            client.reauthenticate(password)
        else:  # the session is over: a new one
            client.login("alice", password)

    client = ApiClient("http://127.0.0.1:5000", reauthenticate=ask_for_password)
    client.login("alice", "correct horse battery")
    response = client.get("/store")  # a requests.Response, whatever its status

The three-step flow of the API's README, done for the caller:

1. every request carries the access token the client holds;
2. on ``401 token_expired`` the client trades its refresh token at ``/refresh``
   (once for all threads that hit the same expired token: single-flight), keeps
   the new access token *and the rotated refresh token*, and repeats the request
   once;
3. on a step-up challenge (``401 fresh_token_required`` with ``WWW-Authenticate:
   Bearer error="insufficient_user_authentication", max_age="N"``, RFC 9470 §3:
   the token is not fresh, or its user authenticated too long ago for the route)
   the user must prove who they are again, *inside the session*: the client
   calls ``reauthenticate(client)`` with ``client.step_up`` set (the challenge's
   ``max_age`` and message); the callback asks for the password and calls
   ``client.reauthenticate(password)`` (``POST /reauthenticate``: a fresh token
   of the same session, no new session; with ``code=`` too for an account with a
   second factor: ``client.code_required`` says so, or the step-up raises
   :class:`ReauthenticationFailed` ``mfa_required``), and the request is
   repeated once;
4. when ``/refresh`` itself answers 401 (``token_revoked``, ``token_expired``,
   ``invalid_token``...) the session is over and only a new login helps: the
   client calls ``reauthenticate(client)`` with ``client.step_up`` None (it calls
   ``client.login(...)``, and ``client.complete_mfa(...)`` when that returns
   :class:`MfaRequired`) and repeats the request once.

Without a callback, steps 3 and 4 raise :class:`LoginRequired` with the server's
error code and message (and ``step_up`` for step 3). ``login()`` over a session
the client still holds ends that session first (``POST /revoke``), so a callback
that logs in again, where a step-up would do, still leaves no session behind.

Every other answer is returned unchanged: 2xx, 4xx, 5xx, and a 401 with any other
code (``token_revoked`` or ``invalid_token`` on a normal request, or any 401 on
the repeated request). A request sent while logged out carries no token, so the
server's ``401 authorization_required`` comes back as a response (public
endpoints such as ``/register`` or ``/healthz`` work without a login);
``reauthenticate`` is not called for it, so ``logout()`` is never undone behind
the caller's back. The client never swallows an error.

An account with a second factor (TOTP, docs/mfa.md): ``login()`` returns
:class:`MfaRequired` instead of the tokens (the password was right; the server
answered ``401 mfa_required``), and ``complete_mfa(code=...)`` (or
``recovery_code=...``) completes the login; a step-up then needs a code too::

    result = client.login("alice", password)
    if isinstance(result, MfaRequired):
        client.complete_mfa(code=input("Code: "))
    ...
    client.reauthenticate(password, code=input("Code: "))

Passkeys (WebAuthn, the API's ``/me/passkeys``, ``/login/passkey`` and passkey
step-ups) need an authenticator: the caller passes a callable that takes a
ceremony's options (the JSON the server sent) and returns the credential as a
browser's ``PublicKeyCredential.toJSON()`` gives it (from a security key's or a
platform's library, or tests/authenticator.py's software authenticator)::

    client.register_passkey("laptop", authenticator.create)  # logged in, fresh
    client.login_with_passkey(authenticator.get)  # no username: discoverable
    client.reauthenticate_with_passkey(authenticator.get)  # a step-up

A script uses an API token instead (made at ``POST /me/api-tokens``; it never
expires before its day and is never refreshed)::

    client = ApiClient.from_api_token("http://127.0.0.1:5000", os.environ["TOKEN"])

Such a client sends the token with every request and returns every answer
unchanged, 401s included (``token_expired``: the token's day has come;
``token_revoked``; ``fresh_token_required``: no API token is fresh): there is
nothing to refresh, and no login to ask for.

Sessions are bound to a key (DPoP, RFC 9449) unless ``dpop=False``:
each login makes a new ECDSA P-256 key (:class:`~clients.python.dpop.DpopKey`)
and sends a proof with it; the server binds both tokens to the key
(``token_type`` "DPoP", ``cnf.jkt``), and every request of the session sends
``Authorization: DPoP <token>`` with a new proof of the same key, so a token
copied out of the client is refused anywhere else. The server's ``DPoP-Nonce``
is kept and a ``use_dpop_nonce`` refusal is repeated once with it (§8). A server
that answers ``token_type`` "Bearer" (one without DPoP) gets Bearer tokens for
that session; an API token is never bound.

Depends on ``requests``, and for DPoP on ``cryptography`` and ``PyJWT``
(clients/python/dpop.py). One client may be shared by many threads.
"""

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Self
from urllib.parse import urlsplit

import requests

from .dpop import DpopKey

__all__ = [
    "DEFAULT_TIMEOUT",
    "ApiClient",
    "ApiClientError",
    "Ceremony",
    "DpopKey",
    "LoginFailed",
    "LoginRequired",
    "MfaRequired",
    "ReauthenticationFailed",
    "StepUp",
    "error_of",
    "parse_challenge",
    "step_up_of",
]

DEFAULT_TIMEOUT = 10.0  # seconds, for every request the client sends

#: ``reauthenticate(client)``: step up (``client.reauthenticate(password)``) when
#: ``client.step_up`` is set, else log in again (``client.login(...)``); or raise.
Reauthenticate = Callable[["ApiClient"], object]

#: A passkey ceremony's authenticator: the options as the server sent them
#: (PublicKeyCredentialCreationOptionsJSON for ``create``, ...RequestOptionsJSON
#: for ``get``) in, the credential out as ``PublicKeyCredential.toJSON()`` gives it.
Ceremony = Callable[[dict[str, Any]], dict[str, Any]]

# RFC 9470 §3: the user must authenticate again (recently enough), in the session.
STEP_UP_ERROR = "insufficient_user_authentication"
# RFC 9449 §8 (a login, 400) and §9 (a protected route, 401): the proof lacks the
# server's current nonce, sent along in the DPoP-Nonce header.
NONCE_ERROR = "use_dpop_nonce"
# The token_type of a token answer bound to the proof's key (RFC 9449 §5).
DPOP_TOKEN_TYPE = "DPoP"
# 401s for the DPoP proof, not the token (RFC 9449 §7.1, §9): the session is
# alive (a clock far off, a URL rewritten on the way...), so it is kept.
_PROOF_REFUSALS = frozenset({"invalid_dpop_proof", NONCE_ERROR})
# A step-up refused with the session as it was: the user may try again.
_STEP_UP_REFUSALS = frozenset(
    {
        "invalid_credentials",
        "mfa_required",
        "invalid_code",
        "invalid_credential",  # a passkey's assertion
        "challenge_expired",  # a passkey's challenge: used, expired or another's
        *_PROOF_REFUSALS,
    }
)
# A Bearer challenge's parameters: name=value, the value quoted or bare.
_CHALLENGE_PARAMETER = re.compile(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')

# What happened while recovering from a 401 (see ApiClient._recover).
_RETRY = "retry"  # the tokens changed meanwhile: repeat with the current ones
_REFRESHED = "refreshed"  # this thread refreshed: repeat with the new token
_REAUTHENTICATED = "reauthenticated"  # reauthenticate() ran: repeat


class ApiClientError(Exception):
    """The API refused something the client cannot work around by itself.

    ``code`` is the envelope's machine-readable ``error`` (``http_<status>`` when
    the answer had none), ``message`` its human-readable ``message`` and
    ``response`` the ``requests.Response`` it came from (None if none was sent).
    """

    def __init__(
        self, code: str, message: str, response: requests.Response | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.response = response

    @property
    def status_code(self) -> int | None:
        """The HTTP status of ``response``, if there is one."""
        return None if self.response is None else self.response.status_code


class LoginFailed(ApiClientError):
    """``POST /login`` was refused (wrong credentials, validation, rate limit...),
    or ``POST /login/mfa`` with the login still waiting (``invalid_code``...)."""


class LoginRequired(ApiClientError):
    """The user must authenticate, and no ``reauthenticate`` callback could do it.

    Raised for a step-up challenge (``401 fresh_token_required``: ``step_up``
    says what the route asks for, and ``client.reauthenticate(password)`` is the
    answer) and when the session is over: ``/refresh`` or ``/reauthenticate``
    answered 401 (the code is then theirs: ``token_revoked``, ``token_expired``...;
    ``step_up`` is None) and only ``client.login(...)`` helps; and by
    ``complete_mfa()`` when no login waits any more (``invalid_mfa_token``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        response: requests.Response | None = None,
        step_up: "StepUp | None" = None,
    ) -> None:
        super().__init__(code, message, response)
        self.step_up = step_up


class ReauthenticationFailed(ApiClientError):
    """``POST /reauthenticate`` was refused and the session is as it was: a wrong
    password (``invalid_credentials``, counted against the failed-login budgets),
    ``mfa_required`` (the account has a second factor: send a code with the
    password), ``invalid_code``, a body the server refused (422), a rate limit
    (429)..."""


@dataclass(frozen=True)
class MfaRequired:
    """What :meth:`ApiClient.login` returns for an account with a second factor:
    the password was right and the login waits for :meth:`ApiClient.complete_mfa`
    (the server answered ``401 mfa_required``). The client holds ``mfa_token``
    (single-use, for a few minutes); ``message`` is the server's."""

    message: str
    mfa_token: str = field(repr=False)


@dataclass(frozen=True)
class StepUp:
    """What a fresh-only route asked for (RFC 9470 §3): the user must have
    authenticated at most ``max_age`` seconds ago (None when the challenge does
    not say), and the server's ``message``."""

    max_age: int | None
    message: str


def parse_challenge(header: str | None) -> dict[str, str]:
    """The parameters of a Bearer challenge (RFC 6750 §3), or of a DPoP one (the
    same syntax, RFC 9449 §7.1), names in lower case: ``{"error": ...,
    "max_age": ...}``; quoted values and bare ones alike."""
    scheme, _, rest = (header or "").strip().partition(" ")
    if scheme.lower() not in ("bearer", "dpop"):
        return {}
    return {
        name.lower(): re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
        for name, quoted, bare in _CHALLENGE_PARAMETER.findall(rest)
    }


def step_up_of(response: requests.Response) -> StepUp | None:
    """The step-up a 401 asks for: ``fresh_token_required``, or a challenge whose
    error is ``insufficient_user_authentication``; None for any other answer."""
    if response.status_code != 401:
        return None
    code, message = error_of(response)
    challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
    if code != "fresh_token_required" and challenge.get("error") != STEP_UP_ERROR:
        return None
    max_age = challenge.get("max_age", "")
    return StepUp(int(max_age) if max_age.isdigit() else None, message)


def error_of(response: requests.Response) -> tuple[str, str]:
    """(``error``, ``message``) of an error envelope, with fallbacks for others."""
    try:
        body = response.json()
    except ValueError:  # requests.JSONDecodeError: not JSON at all
        body = None
    code = message = None
    if isinstance(body, dict):
        code, message = body.get("error"), body.get("message")
    if not isinstance(code, str) or not code:
        code = f"http_{response.status_code}"
    if not isinstance(message, str):
        message = response.reason or ""
    return code, message


@dataclass(frozen=True)
class _Refused:
    """A refresh the server refused with 401, and the access token it was for."""

    access_token: str
    code: str
    message: str
    response: requests.Response


class ApiClient:
    """An HTTP client for the API that keeps the token pair and renews it.

    ``base_url``: where the API lives, e.g. ``http://127.0.0.1:5000`` (a path
    prefix such as ``https://host/api`` is kept). ``timeout``: seconds for every
    request, unless a call passes its own ``timeout=``. ``reauthenticate``:
    called as ``reauthenticate(client)`` when the user must authenticate: with
    ``client.step_up`` set it should call ``client.reauthenticate(password)`` or
    ``client.reauthenticate_with_passkey(get)`` (a step-up inside the session),
    with ``client.step_up`` None (the session is over) ``client.login(...)`` or
    ``client.login_with_passkey(get)``; or raise. ``session``: a
    ``requests.Session`` to use (one is created, and closed by :meth:`close`,
    otherwise). ``dpop``: bind each login's tokens to a new key of its own
    (RFC 9449; the default), or keep Bearer tokens (False).

    Thread safety: a lock guards the token pair; a second (re-entrant) lock lets
    one thread at a time refresh or call ``reauthenticate``, and a thread that
    waited for it first compares the access token its request used with the
    current one: if they differ, someone else already renewed the tokens and the
    request is simply repeated. N threads hitting one expired token therefore
    cause exactly one ``POST /refresh`` (and N threads refused by a fresh-only
    route, one ``reauthenticate`` call: one step-up).

    A request is repeated at most once after a refresh and at most once after a
    ``reauthenticate`` call, so at most three sends per call. Request bodies must
    be re-sendable (``json=``, ``bytes``, ``dict``), not one-shot streams.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        reauthenticate: Reauthenticate | None = None,
        session: requests.Session | None = None,
        dpop: bool = True,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}.")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not carry a query or a fragment.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.reauthenticate_callback = reauthenticate
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.dpop = dpop
        self._lock = threading.Lock()  # guards the fields below
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._dpop_key: DpopKey | None = None  # the key the pair is bound to
        self._fresh = False
        self._refused: _Refused | None = None
        self._api_token = False  # the access token held is an API token
        self._mfa_token: str | None = None  # a login waiting for its second factor
        self._mfa_key: DpopKey | None = None  # the key of that login
        self._code_required = False  # this session's user has a second factor
        self._dpop_nonce: str | None = None  # the server's latest (RFC 9449 §8)
        # One refresh, step-up or re-login at a time. Re-entrant, so a
        # reauthenticate callback may itself use the client.
        self._recovery = threading.RLock()
        self._step_up: StepUp | None = None  # while the callback answers one

    @classmethod
    def from_api_token(
        cls,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> Self:
        """A client that sends the API token ``token`` with every request.

        An API token is not refreshed and no login replaces it: every answer
        comes back as it is (see the module's docstring). ``logout()`` forgets it
        without revoking it: ``DELETE /me/api-tokens/{id}`` does that.
        """
        if not isinstance(token, str) or not token.strip():
            raise ValueError("token must be a non-empty API token.")
        client = cls(base_url, timeout=timeout, session=session, dpop=False)
        with client._lock:
            client._access_token = token.strip()
            client._api_token = True
        return client

    # -- state ------------------------------------------------------------------

    @property
    def access_token(self) -> str | None:
        """The access token held now (None when logged out)."""
        with self._lock:
            return self._access_token

    @property
    def refresh_token(self) -> str | None:
        """The refresh token held now; it changes at every refresh (rotation)."""
        with self._lock:
            return self._refresh_token

    @property
    def dpop_key(self) -> DpopKey | None:
        """The key the tokens held are bound to (their ``cnf.jkt`` is its
        ``thumbprint``); None for Bearer tokens, or when logged out."""
        with self._lock:
            return self._dpop_key

    @property
    def token_type(self) -> str | None:
        """How the access token held is sent: ``"DPoP"`` (bound to
        :attr:`dpop_key`) or ``"Bearer"``; None when logged out."""
        with self._lock:
            if self._access_token is None:
                return None
            return "Bearer" if self._dpop_key is None else DPOP_TOKEN_TYPE

    @property
    def dpop_nonce(self) -> str | None:
        """The latest ``DPoP-Nonce`` the server sent (RFC 9449 §8), put in the
        next proofs; None until it sends one."""
        with self._lock:
            return self._dpop_nonce

    @property
    def logged_in(self) -> bool:
        """Whether the client holds tokens (they may have expired since)."""
        return self.access_token is not None

    @property
    def uses_api_token(self) -> bool:
        """Whether the token held is an API token (``from_api_token``)."""
        with self._lock:
            return self._access_token is not None and self._api_token

    @property
    def token_is_fresh(self) -> bool:
        """Whether the access token held came straight from a login or a step-up
        (a fresh-only route still refuses it once its ``max_age`` has passed)."""
        with self._lock:
            return self._access_token is not None and self._fresh

    @property
    def mfa_pending(self) -> bool:
        """Whether a login waits for its second factor (see :meth:`complete_mfa`)."""
        with self._lock:
            return self._mfa_token is not None

    @property
    def code_required(self) -> bool:
        """Whether this session's user has a second factor, as far as the client
        knows (a login completed with a code, or a step-up refused with
        ``mfa_required``): a step-up then needs a code with the password."""
        with self._lock:
            return self._code_required

    @property
    def step_up(self) -> StepUp | None:
        """While the ``reauthenticate`` callback runs: the step-up a fresh-only
        route asked for (then call ``client.reauthenticate(password)`` or
        ``client.reauthenticate_with_passkey(get)``), or None when the session is
        over (then ``client.login(...)`` or ``client.login_with_passkey(get)``).
        None otherwise."""
        return self._step_up

    def url(self, path: str) -> str:
        """``base_url`` joined with ``path`` (``"store"`` and ``"/store"`` alike).

        A full URL (``http://...`` or ``//host/...``) is refused, so tokens are
        never sent anywhere but ``base_url``.
        """
        parts = urlsplit(path)
        if parts.scheme or parts.netloc:
            raise ValueError(f"path must be relative to base_url, got {path!r}.")
        return f"{self.base_url}/{path.lstrip('/')}"

    # -- login and logout -------------------------------------------------------

    def login(self, username: str, password: str) -> dict[str, Any] | MfaRequired:
        """``POST /login``: a new session; keep its (fresh) access token and its
        refresh token.

        A session the client still holds is ended first (as :meth:`logout`
        does; whatever its answer, or a network error, the login goes on), so
        no session is left alive whose tokens the client has forgotten. To prove
        who the user is again *inside* the session, call :meth:`reauthenticate`.

        Returns the token response's body; for an account with a second factor
        (the password was right), :class:`MfaRequired`: the login waits for
        :meth:`complete_mfa`. Raises :class:`LoginFailed` with the server's
        ``error`` and ``message`` when the login is refused (the old session has
        ended all the same).
        """
        self._end_held_session()
        key = self._new_key()
        response = self._send(
            "POST",
            self.url("/login"),
            key,
            json={"username": username, "password": password},
            timeout=self.timeout,
        )
        waiting = _mfa_required(response)
        if waiting is not None:
            with self._lock:
                self._mfa_token, self._mfa_key = waiting.mfa_token, key
            return waiting
        if response.status_code != 200:
            raise LoginFailed(*error_of(response), response)
        data = self._token_body(response)
        self._store(data, key=key, fresh=True, code_required=False)
        return data

    def complete_mfa(
        self, code: str | None = None, recovery_code: str | None = None
    ) -> dict[str, Any]:
        """``POST /login/mfa``: complete the login that waits for its second
        factor with a TOTP ``code`` (six digits) or a ``recovery_code``; the
        client is then logged in as after a password login.

        Returns the token response's body. Raises :class:`LoginFailed` when the
        login still waits (``invalid_code``: a wrong or used code, try again;
        422; 429), and :class:`LoginRequired` ``invalid_mfa_token`` when it does
        not (unknown, used, expired, spent on wrong codes; or no login waits):
        then only :meth:`login` helps.
        """
        with self._lock:
            mfa_token, key = self._mfa_token, self._mfa_key
        if mfa_token is None:
            raise LoginRequired("invalid_mfa_token", "No login waits for a code.")
        response = self._send(
            "POST",
            self.url("/login/mfa"),
            key,  # the login's: one login, one key
            json={"mfa_token": mfa_token, **_second_factor(code, recovery_code)},
            timeout=self.timeout,
        )
        if response.status_code == 200:
            data = self._token_body(response)
            self._drop_mfa_token(mfa_token)
            self._store(data, key=key, fresh=True, code_required=True)
            return data
        error, message = error_of(response)
        if error == "invalid_mfa_token":
            self._drop_mfa_token(mfa_token)
            raise LoginRequired(error, message, response)
        raise LoginFailed(error, message, response)

    def login_with_passkey(
        self, get: Ceremony, username: str | None = None
    ) -> dict[str, Any]:
        """A new session with a passkey, no password: ``POST /login/passkey/options``
        (with ``username``, that account's passkeys; without, any passkey of the
        site: the authenticator picks a discoverable one), ``get(options)`` for the
        credential, ``POST /login/passkey``; the (fresh) tokens are kept.

        A session the client still holds is ended once ``get`` has answered (as
        :meth:`login` does), so a ceremony ``get`` gives up on (by raising:
        its exception propagates) leaves it alive. Returns the token response's
        body. Raises :class:`LoginFailed` when refused: ``invalid_credential``
        (an unknown passkey, a bad signature, another origin...) or
        ``challenge_expired`` (a used or expired challenge: try again), 429...
        """
        asked = {} if username is None else {"username": username}
        response = self._send(
            "POST",
            self.url("/login/passkey/options"),
            None,
            json=asked,
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise LoginFailed(*error_of(response), response)
        credential = get(self._object_body(response))
        self._end_held_session()
        key = self._new_key()
        response = self._send(
            "POST",
            self.url("/login/passkey"),
            key,
            json={"credential": credential},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise LoginFailed(*error_of(response), response)
        data = self._token_body(response)
        self._store(data, key=key, fresh=True, code_required=False)
        return data

    def reauthenticate(
        self,
        password: str,
        code: str | None = None,
        recovery_code: str | None = None,
    ) -> dict[str, Any]:
        """``POST /reauthenticate``: a step-up inside the session the client holds.

        The user proves who they are again: the password, and for an account
        with a second factor a TOTP ``code`` or a ``recovery_code``; the answer
        is a fresh access token of the *same* session and a new refresh token
        (the previous one is spent as at a refresh), both kept. An expired
        access token is refreshed first (once) and the step-up sent again.
        Returns the token response's body.

        Raises :class:`ReauthenticationFailed` when refused with the session as
        it was (``invalid_credentials``: a wrong password; ``mfa_required``: the
        account needs a code too, ask for one and send both; ``invalid_code``;
        422; 429...), and :class:`LoginRequired` when there is no session to
        step up in (not logged in, an API token, or the session ended:
        ``token_revoked``; the dead tokens are then forgotten): only
        :meth:`login` helps.
        """
        second_factor = _second_factor(code, recovery_code)
        body = {"password": password, **second_factor}
        with self._recovery:  # no refresh or other step-up meanwhile
            used, response = self._post_in_session("/reauthenticate", body)
            if response.status_code != 200:
                self._step_up_refused(used, response)
            data = self._token_body(response)
            # Proved without a code: the account has no second factor.
            proved = None if second_factor else False
            self._store(data, fresh=True, replacing=used, code_required=proved)
            return data

    def reauthenticate_with_passkey(self, get: Ceremony) -> dict[str, Any]:
        """A step-up with a passkey inside the session the client holds:
        ``POST /reauthenticate/options`` (the account's passkeys, a challenge
        bound to this session), ``get(options)`` for the credential, then
        ``POST /reauthenticate`` with it. The fresh access token of the *same*
        session and the new refresh token are kept, as by :meth:`reauthenticate`;
        an expired access token is refreshed first (once a request).

        Returns the token response's body. Raises :class:`ReauthenticationFailed`
        with the session as it was (``no_passkeys`` (409): step up with the
        password; ``invalid_credential``; ``challenge_expired``: ask again; 422,
        429...) and :class:`LoginRequired` when there is no session to step up
        in, as :meth:`reauthenticate` does. What ``get`` raises propagates.
        """
        with self._recovery:  # no refresh or other step-up meanwhile
            used, response = self._post_in_session("/reauthenticate/options", None)
            if response.status_code != 200:
                self._step_up_refused(used, response)
            credential = get(self._object_body(response))
            body = {"credential": credential}
            used, response = self._post_in_session("/reauthenticate", body)
            if response.status_code != 200:
                self._step_up_refused(used, response)
            data = self._token_body(response)
            self._store(data, fresh=True, replacing=used)
            return data

    def _end_held_session(self) -> None:
        """A login starts anew: end the session held, if the server is reachable
        (unreachable, it ends by itself at its idle timeout)."""
        try:
            self.logout()
        except requests.RequestException:
            pass

    def logout(self) -> requests.Response | None:
        """End this login's session on the server and forget the tokens.

        Sends ``POST /revoke`` (RFC 7009) with the refresh token, form-encoded and
        without an ``Authorization`` header (a bound one with a proof of its
        key): it ends the whole session (every
        access and refresh token of this login) whatever state the access token
        is in, expired included, and needs no refresh first. The tokens are
        forgotten locally before the request is sent, whatever happens next, so
        a concurrent request or refresh never uses or brings them back.

        Returns the server's answer: ``200`` for any token (also one whose
        session had already ended: RFC 7009 answers the same), or whatever else
        came back (429, 5xx: the session may then still be alive on the server).
        Never raises for an answer and never calls ``reauthenticate``; a network
        error (``requests.RequestException``) propagates, the tokens forgotten
        all the same. Returns None, without a request, when no refresh token is
        held (not logged in, or logged out by another thread meanwhile).
        """
        refresh_token, key = self._forget()
        if refresh_token is None:
            return None
        # A bound token is revoked with a proof of its key (no ath: the token
        # goes in the body, not in Authorization).
        return self._send(
            "POST",
            self.url("/revoke"),
            key,
            data={"token": refresh_token, "token_type_hint": "refresh_token"},
            timeout=self.timeout,
        )

    def refresh(self) -> None:
        """Trade the refresh token now (shared with concurrent refreshes).

        The access token becomes non-fresh. On a 401 from ``/refresh`` this
        calls ``reauthenticate`` or raises :class:`LoginRequired`; on any other
        failure (429, 5xx) it raises :class:`ApiClientError` with that response.
        """
        used = self.access_token
        if used is None:
            raise LoginRequired("authorization_required", "Not logged in.")
        if self.uses_api_token:
            raise ApiClientError(
                "not_refreshable", "An API token is never refreshed: make a new one."
            )
        outcome = self._recover(used, "token_expired", None, may_reauthenticate=True)
        if isinstance(outcome, requests.Response):
            raise ApiClientError(*error_of(outcome), outcome)

    # -- passkeys -----------------------------------------------------------------

    def register_passkey(self, name: str, create: Ceremony) -> dict[str, Any]:
        """A new passkey for the account logged in, called ``name``:
        ``POST /me/passkeys/options``, ``create(options)`` for the credential,
        ``POST /me/passkeys`` with both.

        Both routes are fresh-only (ACCOUNT_FRESH_MAX_AGE): a token that is not
        fresh enough is stepped up through the ``reauthenticate`` callback, as
        for any request, and the credential sent again. Returns the passkey
        (``id``, ``name``, ``created_at``, ``last_used_at``). Raises
        :class:`ApiClientError` when refused (``invalid_credential``,
        ``challenge_expired``, ``passkey_exists``, ``too_many_passkeys``, 422...;
        :class:`LoginRequired` for a 401). What ``create`` raises propagates.
        """
        options = self._answer(self.post("/me/passkeys/options"), 200)
        credential = create(options)
        body = {"name": name, "credential": credential}
        made: dict[str, Any] = self._answer(self.post("/me/passkeys", json=body), 201)
        return made

    def passkeys(self) -> list[dict[str, Any]]:
        """``GET /me/passkeys``: the account's passkeys, oldest first."""
        listed: list[dict[str, Any]] = self._answer(self.get("/me/passkeys"), 200, list)
        return listed

    def rename_passkey(self, passkey_id: int, name: str) -> dict[str, Any]:
        """``PATCH /me/passkeys/{passkey_id}``: the passkey, renamed."""
        response = self.patch(f"/me/passkeys/{passkey_id}", json={"name": name})
        renamed: dict[str, Any] = self._answer(response, 200)
        return renamed

    def delete_passkey(self, passkey_id: int) -> None:
        """``DELETE /me/passkeys/{passkey_id}`` (fresh-only): it logs in and steps
        up no more. Raises :class:`ApiClientError` ``not_found`` for an id that
        is not one of the account's passkeys."""
        self._answer(self.delete(f"/me/passkeys/{passkey_id}"), 200)

    # -- requests ---------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send ``method path`` with the token; ``kwargs`` go to ``requests``.

        A caller-supplied ``Authorization`` header is sent as is, and then the
        client does not refresh or re-login for that request.
        """
        return self._request(method, path, kwargs, may_reauthenticate=True)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """``GET path`` (see :meth:`request`)."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """``POST path`` (see :meth:`request`)."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        """``PUT path`` (see :meth:`request`)."""
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        """``PATCH path`` (see :meth:`request`)."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """``DELETE path`` (see :meth:`request`)."""
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        """Close the session, if the client created it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        kwargs: dict[str, Any],
        *,
        may_reauthenticate: bool,
    ) -> requests.Response:
        url = self.url(path)
        kwargs = dict(kwargs)
        kwargs.setdefault("timeout", self.timeout)
        headers = dict(kwargs.pop("headers", None) or {})
        if any(name.lower() == "authorization" for name in headers):
            return self.session.request(method, url, headers=headers, **kwargs)

        refreshed = reauthenticated = False
        while True:
            used, key = self._held()
            response = self._send(method, url, key, used, headers=headers, **kwargs)
            if response.status_code != 401 or used is None or self.uses_api_token:
                return response  # an API token has nothing to recover with
            code = error_of(response)[0]
            step_up = step_up_of(response)
            if code == "token_expired" and not refreshed:
                refreshed = True
            elif step_up is not None and not reauthenticated:
                reauthenticated = True
            else:
                return response
            outcome = self._recover(
                used, step_up or code, response, may_reauthenticate=may_reauthenticate
            )
            if isinstance(outcome, requests.Response):
                return outcome  # /refresh failed, but not for want of a login
            if outcome == _REAUTHENTICATED:
                reauthenticated = True
            response.close()  # about to be replaced by the repeated request

    def _recover(
        self,
        used: str,
        code: str | StepUp,
        response: requests.Response | None,
        *,
        may_reauthenticate: bool,
    ) -> str | requests.Response:
        """After a 401 for the access token ``used`` (``token_expired``, or the
        StepUp a fresh-only route asked for): fix the tokens.

        Returns _RETRY, _REFRESHED or _REAUTHENTICATED when the request should be
        repeated, or the response of a ``/refresh`` that failed with something
        other than 401. Raises LoginRequired when the user must authenticate and
        ``reauthenticate`` cannot be called.
        """
        with self._recovery:
            with self._lock:
                current, refresh_token = self._access_token, self._refresh_token
                fresh, refused, key = self._fresh, self._refused, self._dpop_key
            if current is None:
                if refused is not None and refused.access_token == used:
                    # Another thread's refresh for this token was refused.
                    return self._login_required(
                        refused.code,
                        refused.message,
                        refused.response,
                        may_reauthenticate,
                    )
                return _RETRY  # logged out meanwhile: sent without a token
            if current != used and (code == "token_expired" or fresh):
                return _RETRY  # renewed by someone else while we waited
            if isinstance(code, StepUp):
                return self._login_required(
                    "fresh_token_required",
                    code.message,
                    response,
                    may_reauthenticate,
                    step_up=code,
                )
            return self._refresh_now(used, refresh_token, key, may_reauthenticate)

    def _refresh_now(
        self,
        used: str,
        refresh_token: str | None,
        key: DpopKey | None,
        may_reauthenticate: bool,
    ) -> str | requests.Response:
        """The one ``POST /refresh`` for ``used`` (the recovery lock is held); a
        bound refresh token goes with a proof of its key (``ath`` of the refresh
        token), and the new pair is bound to the same key."""
        if refresh_token is None:
            return self._login_required(
                "authorization_required", "No refresh token.", None, may_reauthenticate
            )
        reply = self._send(
            "POST", self.url("/refresh"), key, refresh_token, timeout=self.timeout
        )
        if reply.status_code == 200:
            # Rotation: the refresh token just sent is spent; keep the new one.
            self._store(self._token_body(reply), fresh=False, replacing=used)
            return _REFRESHED
        if reply.status_code != 401 or error_of(reply)[0] in _PROOF_REFUSALS:
            return reply  # 429, 5xx, a proof refused: returned as it is
        code, message = error_of(reply)
        self._session_over(used, code, message, reply)
        return self._login_required(code, message, reply, may_reauthenticate)

    def _session_over(
        self, used: str, code: str, message: str, reply: requests.Response
    ) -> None:
        """The server refused the session of ``used``: forget its dead tokens
        (unless a login or logout replaced them meanwhile)."""
        with self._lock:
            if self._access_token == used:
                self._access_token = self._refresh_token = None
                self._dpop_key = None
                self._fresh = False
                self._refused = _Refused(used, code, message, reply)

    def _login_required(
        self,
        code: str,
        message: str,
        response: requests.Response | None,
        may_reauthenticate: bool,
        step_up: StepUp | None = None,
    ) -> str:
        """Call ``reauthenticate`` (the recovery lock is held), or raise."""
        callback = self.reauthenticate_callback
        if callback is None or not may_reauthenticate:
            raise LoginRequired(code, message, response, step_up)
        self._step_up = step_up
        try:
            callback(self)
        finally:
            self._step_up = None
        return _REAUTHENTICATED

    def _post_in_session(
        self, path: str, body: dict[str, Any] | None
    ) -> tuple[str, requests.Response]:
        """``POST path`` with the access token held, for a step-up (the recovery
        lock is held): an expired one is refreshed, once, and the request sent
        again. (The access token sent last, the answer.)"""
        refreshed = False
        while True:
            with self._lock:  # one pair, and its key, read together
                used, refresh_token = self._access_token, self._refresh_token
                key = self._dpop_key
            if used is None or self.uses_api_token:
                raise LoginRequired(
                    "authorization_required", "No session to step up in: log in."
                )
            response = self._send(
                "POST", self.url(path), key, used, json=body, timeout=self.timeout
            )
            expired = response.status_code == 401 and (
                error_of(response)[0] == "token_expired"
            )
            if refreshed or not expired:
                return used, response
            refreshed = True
            outcome = self._refresh_now(used, refresh_token, key, False)
            if isinstance(outcome, requests.Response):
                raise ApiClientError(*error_of(outcome), outcome)

    def _step_up_refused(self, used: str, response: requests.Response) -> NoReturn:
        """Raise for a refused step-up request: ReauthenticationFailed with the
        session as it was, or LoginRequired when the session is over (its dead
        tokens then forgotten)."""
        code, message = error_of(response)
        if code == "mfa_required":
            with self._lock:
                self._code_required = True
        if response.status_code == 401 and code not in _STEP_UP_REFUSALS:
            self._session_over(used, code, message, response)
            raise LoginRequired(code, message, response)
        raise ReauthenticationFailed(code, message, response)

    @staticmethod
    def _answer(response: requests.Response, status: int, kind: type = dict) -> Any:
        """The JSON body of an answer with ``status`` (a ``kind``), or raise with
        the envelope's ``error``: LoginRequired for a 401 that came back (no
        session, or a challenge no callback answered), else ApiClientError."""
        if response.status_code != status:
            code, message = error_of(response)
            if response.status_code == 401:
                raise LoginRequired(code, message, response, step_up_of(response))
            raise ApiClientError(code, message, response)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, kind):
            raise ApiClientError(
                "invalid_response", f"Expected a JSON {kind.__name__}.", response
            )
        return data

    @classmethod
    def _object_body(cls, response: requests.Response) -> dict[str, Any]:
        """The JSON object of a 200 answer (a ceremony's options)."""
        data: dict[str, Any] = cls._answer(response, 200)
        return data

    @staticmethod
    def _token_body(response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not (
            isinstance(data, dict)
            and isinstance(data.get("access_token"), str)
            and isinstance(data.get("refresh_token"), str)
        ):
            raise ApiClientError(
                "invalid_response", "The token response lacks the tokens.", response
            )
        return data

    def _store(
        self,
        data: dict[str, Any],
        *,
        fresh: bool,
        key: DpopKey | None = None,
        replacing: str | None = None,
        code_required: bool | None = None,
    ) -> None:
        """Keep a new pair; with ``replacing``, only if nobody changed the pair
        since (a login or logout that happened meanwhile wins over a refresh).
        ``key``: the key a login's proof was signed with (a refresh or step-up,
        ``replacing``, keeps the session's). The pair is bound to it when the
        answer says ``token_type`` DPoP; a server without DPoP answers Bearer,
        and the session is then sent as Bearer. ``code_required``: what the
        answer told of a second factor (None: nothing).
        """
        with self._lock:
            if replacing is not None:
                if self._access_token != replacing:
                    return
                key = self._dpop_key
            self._dpop_key = key if _bound(data) else None
            self._access_token = data["access_token"]
            self._refresh_token = data["refresh_token"]
            self._fresh = fresh
            self._refused = None
            self._api_token = False
            if code_required is not None:
                self._code_required = code_required

    def _new_key(self) -> DpopKey | None:
        """A login's key: a new one for each login (RFC 9449 §2: a key per
        session limits what one leaked key opens), or None without DPoP."""
        return DpopKey() if self.dpop else None

    def _held(self) -> tuple[str | None, DpopKey | None]:
        """The access token held and the key it is bound to, read together."""
        with self._lock:
            return self._access_token, self._dpop_key

    def _send(
        self,
        method: str,
        url: str,
        key: DpopKey | None,
        token: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request with a session's credentials: ``token`` in
        ``Authorization`` (the ``DPoP`` scheme when ``key`` binds it, RFC 9449
        §7.1; else ``Bearer``) and, with a ``key``, a new proof (§4.2: ``ath``
        of ``token``, and the server's latest nonce). Every ``DPoP-Nonce`` the
        server sends is kept; a ``use_dpop_nonce`` refusal is sent again once,
        with a new proof carrying the new nonce (§8, §9)."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            scheme = "Bearer" if key is None else DPOP_TOKEN_TYPE
            headers["Authorization"] = f"{scheme} {token}"
        htu = _sent_url(url) if key is not None else url

        def send() -> requests.Response:
            if key is not None:
                headers["DPoP"] = key.proof(method, htu, token, self.dpop_nonce)
            response = self.session.request(method, url, headers=headers, **kwargs)
            nonce = response.headers.get("DPoP-Nonce")
            if nonce:
                with self._lock:
                    self._dpop_nonce = nonce
            return response

        response = send()
        if key is not None and _asks_for_nonce(response):
            response.close()  # replaced by the one sent with the nonce
            response = send()
        return response

    def _drop_mfa_token(self, mfa_token: str) -> None:
        """The waiting login of ``mfa_token`` is over (unless a new login
        replaced it meanwhile)."""
        with self._lock:
            if self._mfa_token == mfa_token:
                self._mfa_token = self._mfa_key = None

    def _forget(self) -> tuple[str | None, DpopKey | None]:
        """Drop the token pair; the refresh token that was held, if any (one
        caller gets it, however many forget at the same time), and its key."""
        with self._lock:
            refresh_token, key = self._refresh_token, self._dpop_key
            self._access_token = self._refresh_token = None
            self._dpop_key = None
            self._fresh = False
            self._refused = None
            self._api_token = False
            self._mfa_token = self._mfa_key = None
            self._code_required = False
        return refresh_token, key


def _mfa_required(response: requests.Response) -> MfaRequired | None:
    """The waiting login a /login answer names (``401 mfa_required`` with an
    ``mfa_token``), or None for any other answer."""
    if response.status_code != 401:
        return None
    code, message = error_of(response)
    try:
        mfa_token = response.json().get("mfa_token")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None
    if code != "mfa_required" or not isinstance(mfa_token, str) or not mfa_token:
        return None
    return MfaRequired(message, mfa_token)


def _bound(data: dict[str, Any]) -> bool:
    """Whether a token answer's pair is bound to the proof's key (RFC 9449 §5:
    ``token_type`` DPoP, case-insensitive as RFC 6749 §5.1 has it)."""
    token_type = data.get("token_type")
    return isinstance(token_type, str) and token_type.lower() == "dpop"


def _asks_for_nonce(response: requests.Response) -> bool:
    """Whether the server refused a proof for want of its nonce, and sent one:
    ``use_dpop_nonce`` in the body (400 at a login, 401 elsewhere) or in the
    DPoP challenge (RFC 9449 §8, §9), with a ``DPoP-Nonce`` header."""
    if response.status_code not in (400, 401) or not response.headers.get("DPoP-Nonce"):
        return False
    challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
    return NONCE_ERROR in (error_of(response)[0], challenge.get("error"))


def _sent_url(url: str) -> str:
    """``url`` as ``requests`` sends it (an IDNA host, a percent-encoded path):
    what the server sees, so what a proof's ``htu`` must say (RFC 9449 §4.3)."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url or url


def _second_factor(code: str | None, recovery_code: str | None) -> dict[str, str]:
    """The request fields of a second factor, as given (the server says what is
    wrong with them: 422)."""
    fields = {"code": code, "recovery_code": recovery_code}
    return {name: value for name, value in fields.items() if value is not None}
