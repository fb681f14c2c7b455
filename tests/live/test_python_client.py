"""The Python client (clients/python/api_client.py) against a live gunicorn server.

One server for the module: `gunicorn "app:create_app()"` as a subprocess on
loopback, two workers of four threads, SQLite migrated with `flask db upgrade`,
the database revocation store (so refresh rotation is shared by the workers) and
two-second access tokens with no decode leeway, so an expiry takes a real
sleep of at most two seconds. Refreshes are counted by the client's own
`requests.Session` (a subclass that records every request), never from logs.
"""

import base64
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from clients.python.api_client import (
    DEFAULT_TIMEOUT,
    ApiClient,
    ApiClientError,
    LoginFailed,
    LoginRequired,
    StepUp,
)
from tests import servers
from tests.helpers import PASSWORD
from tests.servers import HOST, free_port

WORKERS = 2
ACCESS_LIFETIME = 2  # seconds
THREADS = 8


@dataclass
class Server:
    base_url: str
    log: Path


@contextmanager
def client_server(tmp: Path, **settings: str) -> Iterator[Server]:
    """A live server with short-lived access tokens and `settings` on top;
    always stopped."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "development",
        "JWT_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "DATABASE_URL": f"sqlite:///{tmp / 'client.db'}",
        "HOST": HOST,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_THREADS": "4",
        "JWT_ACCESS_TOKEN_EXPIRES": str(ACCESS_LIFETIME),
        # The default 5 s leeway would keep "expired" tokens valid for 7 s.
        "JWT_DECODE_LEEWAY": "0",
        "JWT_REFRESH_TOKEN_EXPIRES": "3600",
        "REFRESH_REUSE_GRACE_SECONDS": "10",
        "RATELIMIT_ENABLED": "false",
        "BLOCKLIST_BACKEND": "database",
        **settings,
    }
    log = tmp / "gunicorn.log"
    with servers.live_server(env, log, workers=WORKERS) as base_url:
        yield Server(base_url, log)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """The module's live server (client_server's defaults)."""
    with client_server(tmp_path_factory.mktemp("python-client")) as started:
        yield started


class CountingSession(requests.Session):
    """A requests.Session that records (method, path, status, timeout) of each call."""

    def __init__(self) -> None:
        super().__init__()
        self._calls_lock = threading.Lock()
        self.calls: list[tuple[str, str, int, object]] = []

    def request(self, method, url, *args, **kwargs):
        response = super().request(method, url, *args, **kwargs)
        with self._calls_lock:
            self.calls.append(
                (
                    method.upper(),
                    urlsplit(url).path,
                    response.status_code,
                    kwargs.get("timeout"),
                )
            )
        return response

    def count(self, method: str, path: str, status: int | None = None) -> int:
        with self._calls_lock:
            return sum(
                1
                for m, p, s, _ in self.calls
                if m == method and p == path and status in (None, s)
            )

    def statuses(self, method: str, path: str) -> list[int]:
        with self._calls_lock:
            return [s for m, p, s, _ in self.calls if m == method and p == path]

    def refreshes(self) -> int:
        return self.count("POST", "/refresh")


@pytest.fixture
def make_client(server) -> Iterator[Callable[..., tuple[ApiClient, CountingSession]]]:
    """make_client(**kwargs) -> (ApiClient on a CountingSession); all closed after."""
    sessions: list[CountingSession] = []

    def make(**kwargs) -> tuple[ApiClient, CountingSession]:
        session = CountingSession()
        sessions.append(session)
        return ApiClient(server.base_url, session=session, **kwargs), session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def username(server) -> str:
    """A newly registered user (its own, so no test sees another's sessions)."""
    name = f"client-{uuid.uuid4().hex[:12]}"
    servers.register(server.base_url, name)
    return name


# What POST /item (FRESH_MAX_AGE, default 900 s) asks of a token that is not fresh.
NOT_FRESH = StepUp(900, "The token is not fresh.")


class Reauthenticator:
    """A reauthenticate callback as the client's docstring has it: a step-up in
    the session when the client asks for one, else a new login; it counts its
    calls and records the step-ups it was asked for."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.calls = 0
        self.step_ups: list[StepUp | None] = []

    def __call__(self, client: ApiClient) -> None:
        self.calls += 1
        self.step_ups.append(client.step_up)
        if client.step_up is not None:
            client.reauthenticate(PASSWORD)
        else:
            client.login(self.username, PASSWORD)


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sleep_until_expired(*tokens: str) -> None:
    """Sleep until just past the latest `exp` (at most ACCESS_LIFETIME seconds)."""
    exp = max(_claims(token)["exp"] for token in tokens)
    time.sleep(max(0.0, exp - time.time()) + 0.05)


def _create_store(client: ApiClient) -> int:
    response = client.post("/store", json={"name": f"Shop {uuid.uuid4().hex[:10]}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _item(store_id: int) -> dict:
    return {"name": "Chair", "price": 15.99, "store_id": store_id}


def _run_together(count: int, call: Callable[[], object]) -> list:
    """`call()` from `count` threads released at the same moment; results or
    exceptions, in order."""
    barrier = threading.Barrier(count)

    def one(_: int) -> object:
        barrier.wait(timeout=10)
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


# 1. -------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_once_and_the_refresh_token_rotated(
    make_client, username
):
    client, session = make_client()
    client.login(username, PASSWORD)
    assert client.token_is_fresh
    assert client.get("/store").status_code == 200
    access, refresh = client.access_token, client.refresh_token

    sleep_until_expired(access)
    response = client.get("/store")

    assert response.status_code == 200, response.text
    assert session.refreshes() == 1
    assert session.statuses("GET", "/store") == [200, 401, 200]
    assert client.refresh_token != refresh  # rotated, and the new one kept
    assert client.access_token != access
    assert not client.token_is_fresh
    print(f"\nexpiry: {session.refreshes()} refresh for one expired token")


# 2. -------------------------------------------------------------------------------


def test_concurrent_requests_on_an_expired_token_share_one_refresh(
    make_client, username
):
    client, session = make_client()
    client.login(username, PASSWORD)
    sleep_until_expired(client.access_token)

    results = _run_together(THREADS, lambda: client.get("/store"))

    statuses = [getattr(result, "status_code", result) for result in results]
    assert statuses == [200] * THREADS
    assert session.refreshes() == 1
    expired = session.count("GET", "/store", 401)
    # The threads really ran into the expired token together (not one after the
    # other's refresh): otherwise this test would prove nothing.
    assert 2 <= expired <= THREADS, session.calls
    assert session.count("GET", "/store", 200) == THREADS
    print(
        f"\nsingle-flight: {THREADS} threads, {expired} got 401 token_expired, "
        f"{session.refreshes()} refresh"
    )


# 3. -------------------------------------------------------------------------------


def test_fresh_token_required_after_an_expiry_refresh_calls_reauthenticate_once(
    make_client, username
):
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    store_id = _create_store(client)
    sleep_until_expired(client.access_token)

    response = client.post("/item", json=_item(store_id))

    assert response.status_code == 201, response.text
    assert response.json()["store"]["id"] == store_id
    assert reauthenticate.calls == 1
    assert reauthenticate.step_ups == [NOT_FRESH]
    assert session.refreshes() == 1
    # token_expired -> refresh -> fresh_token_required -> step-up -> created.
    assert session.statuses("POST", "/item") == [401, 401, 201]
    # A step-up inside the session, not a new login (issue 24).
    assert session.statuses("POST", "/reauthenticate") == [200]
    assert session.count("POST", "/login") == 1
    assert client.token_is_fresh


def test_fresh_token_required_with_a_refreshed_token_calls_reauthenticate(
    make_client, username
):
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    store_id = _create_store(client)
    client.refresh()  # a non-fresh token, without waiting for an expiry
    assert not client.token_is_fresh

    response = client.post("/item", json=_item(store_id))

    assert response.status_code == 201, response.text
    assert reauthenticate.calls == 1
    assert reauthenticate.step_ups == [NOT_FRESH]
    assert session.refreshes() == 1
    assert session.statuses("POST", "/item") == [401, 201]
    assert session.statuses("POST", "/reauthenticate") == [200]
    assert session.count("POST", "/login") == 1


def test_fresh_token_required_without_a_callback_raises_login_required(
    make_client, username
):
    client, session = make_client()
    client.login(username, PASSWORD)
    store_id = _create_store(client)
    client.refresh()

    with pytest.raises(LoginRequired) as raised:
        client.post("/item", json=_item(store_id))

    assert raised.value.code == "fresh_token_required"
    assert raised.value.message == "The token is not fresh."
    assert raised.value.status_code == 401
    assert raised.value.step_up == NOT_FRESH
    assert session.statuses("POST", "/item") == [401]
    # The non-fresh token still works where freshness is not needed.
    assert client.get("/store").status_code == 200


# 4. -------------------------------------------------------------------------------


def test_refused_refresh_calls_reauthenticate_or_raises_login_required(
    make_client, username
):
    """Sessions ended elsewhere (/logout/all): the refresh is refused with
    token_revoked. With a callback: one login for all threads, then 200; without:
    every thread gets LoginRequired(token_revoked), after one refresh."""
    reauthenticate = Reauthenticator(username)
    with_callback, with_session = make_client(reauthenticate=reauthenticate)
    without_callback, without_session = make_client()
    with_callback.login(username, PASSWORD)
    without_callback.login(username, PASSWORD)
    sleep_until_expired(with_callback.access_token, without_callback.access_token)
    elsewhere, _ = make_client()
    elsewhere.login(username, PASSWORD)
    assert elsewhere.post("/logout/all").status_code == 200

    half = THREADS // 2
    recovered = _run_together(half, lambda: with_callback.get("/store"))
    refused = _run_together(half, lambda: without_callback.get("/store"))

    assert [getattr(r, "status_code", r) for r in recovered] == [200] * half
    assert reauthenticate.calls == 1
    assert reauthenticate.step_ups == [None]  # the session is over: a login
    assert with_session.refreshes() == 1
    assert with_session.statuses("POST", "/refresh") == [401]
    assert all(isinstance(error, LoginRequired) for error in refused), refused
    assert {(error.code, error.status_code, error.step_up) for error in refused} == {
        ("token_revoked", 401, None)
    }
    assert refused[0].message == "The token has been revoked."
    assert without_session.refreshes() == 1
    assert without_callback.access_token is None  # the dead pair is forgotten
    assert without_callback.refresh_token is None
    print(
        f"\nrefused refresh: with callback {with_session.refreshes()} refresh, "
        f"{reauthenticate.calls} login for {half} threads; without callback "
        f"{without_session.refreshes()} refresh, {len(refused)} LoginRequired"
    )


def test_explicit_refresh_after_logout_elsewhere_raises_login_required(
    make_client, username
):
    client, _ = make_client()
    client.login(username, PASSWORD)
    elsewhere, _ = make_client()
    elsewhere.login(username, PASSWORD)
    assert elsewhere.post("/logout/all").status_code == 200

    # A live but revoked access token is not a refresh matter: returned as is.
    response = client.get("/store")
    assert response.status_code == 401
    assert response.json()["error"] == "token_revoked"

    with pytest.raises(LoginRequired) as raised:
        client.refresh()
    assert raised.value.code == "token_revoked"


# 5. -------------------------------------------------------------------------------


def test_logout_forgets_the_tokens_and_later_requests_get_the_servers_401(
    make_client, username, server
):
    """Documented behaviour: logged out, a request is sent without a token and
    the server's 401 authorization_required is returned (no exception, and no
    reauthenticate call, so a logout is never undone behind the caller's back)."""
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    access, refresh = client.access_token, client.refresh_token

    response = client.logout()

    assert response is not None and response.status_code == 200, response
    assert client.access_token is None and client.refresh_token is None
    assert not client.logged_in
    later = client.get("/store")
    assert later.status_code == 401
    assert later.json()["error"] == "authorization_required"
    assert reauthenticate.calls == 0
    assert session.refreshes() == 0
    assert client.logout() is None  # nothing to log out: no request
    # The server revoked the login's tokens, the refresh token included.
    for path, token in (("/me", access), ("/refresh", refresh)):
        method = "GET" if path == "/me" else "POST"
        old = servers.request(server.base_url, method, path, token=token)
        assert (old.status, old.error) == (401, "token_revoked")
    # Public endpoints work without a login.
    assert client.get("/healthz").status_code == 200


def test_logout_with_an_expired_access_token_ends_the_session(
    make_client, username, server
):
    """logout() revokes with the refresh token (RFC 7009): no refresh first, and
    the whole session ends, the refresh token included."""
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    access, refresh = client.access_token, client.refresh_token
    sleep_until_expired(access)

    response = client.logout()

    assert response is not None
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "The token is revoked."}
    sent = response.request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in sent.headers
    assert sent.body == f"token={refresh}&token_type_hint=refresh_token"
    assert session.statuses("POST", "/revoke") == [200]
    assert session.count("POST", "/logout") == 0
    assert session.refreshes() == 0
    assert reauthenticate.calls == 0
    assert not client.logged_in and client.refresh_token is None
    old = servers.request(server.base_url, "POST", "/refresh", token=refresh)
    assert (old.status, old.error) == (401, "token_revoked")


def test_logout_after_the_session_ended_elsewhere_forgets_and_does_not_raise(
    make_client, username, server
):
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    refresh = client.refresh_token
    elsewhere, _ = make_client()
    elsewhere.login(username, PASSWORD)
    assert elsewhere.post("/logout/all").status_code == 200

    response = client.logout()

    # RFC 7009 §2.2: the same answer for a token whose session had already ended.
    assert response is not None and response.status_code == 200, response
    assert response.json() == {"message": "The token is revoked."}
    assert client.access_token is None and client.refresh_token is None
    assert reauthenticate.calls == 0
    assert session.refreshes() == 0
    assert client.logout() is None  # nothing held any more: no request
    assert session.count("POST", "/revoke") == 1
    old = servers.request(server.base_url, "POST", "/refresh", token=refresh)
    assert (old.status, old.error) == (401, "token_revoked")


def test_concurrent_logouts_send_one_revocation(make_client, username):
    client, session = make_client()
    client.login(username, PASSWORD)

    results = _run_together(THREADS, client.logout)

    answered = [result for result in results if result is not None]
    assert len(answered) == 1, results
    assert answered[0].status_code == 200
    assert session.statuses("POST", "/revoke") == [200]
    assert not client.logged_in


# 6. -------------------------------------------------------------------------------


def test_a_script_with_an_api_token_gets_every_answer_unchanged(
    server, make_client, username
):
    owner, _ = make_client()
    owner.login(username, PASSWORD)
    made = owner.post("/me/api-tokens", json={"name": "script", "expires_in_days": 1})
    assert made.status_code == 201, made.text
    session = CountingSession()
    script = ApiClient.from_api_token(
        server.base_url, made.json()["token"], session=session
    )
    try:
        assert script.uses_api_token and script.logged_in
        assert not script.token_is_fresh and script.refresh_token is None
        # It outlives any access token of a session, and is never refreshed.
        time.sleep(ACCESS_LIFETIME + 0.1)
        me = script.get("/me")
        assert (me.status_code, me.json()["username"]) == (200, username)
        store_id = _create_store(script)
        refused = script.post("/item", json=_item(store_id))  # fresh only
        assert refused.status_code == 401
        assert refused.json()["error"] == "fresh_token_required"
        with pytest.raises(ApiClientError) as caught:
            script.refresh()
        assert caught.value.code == "not_refreshable"

        deleted = owner.delete(f"/me/api-tokens/{made.json()['id']}")
        assert deleted.status_code == 200, deleted.text
        revoked = script.get("/me")
        assert (revoked.status_code, revoked.json()["error"]) == (401, "token_revoked")
        assert session.refreshes() == 0 and session.count("POST", "/token") == 0
        assert script.logout() is None  # forgotten; nothing to send
        assert not script.logged_in
    finally:
        session.close()


def test_an_api_token_client_refuses_an_empty_token(server):
    for token in ("", "   "):
        with pytest.raises(ValueError, match="non-empty API token"):
            ApiClient.from_api_token(server.base_url, token)


def test_other_errors_pass_through_unchanged(make_client, username):
    client, session = make_client()
    client.login(username, PASSWORD)

    missing = client.get("/item/999999")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert client.put("/item/999999", json={"price": 1}).status_code == 404
    invalid = client.post("/store", json={"name": "Shop", "unknown": 1})
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "validation_error"
    assert "unknown" in invalid.json()["errors"]["json"]
    forbidden = client.delete("/item/999999")  # administrators only
    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "forbidden")
    bad_json = client.post(
        "/store", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "bad_request")
    assert session.refreshes() == 0
    assert client.access_token is not None


def test_failed_login_raises_login_failed_with_the_envelope(make_client, username):
    client, _ = make_client()
    with pytest.raises(LoginFailed) as raised:
        client.login(username, "wrong password!")
    assert raised.value.code == "invalid_credentials"
    assert raised.value.message == "Invalid credentials."
    assert raised.value.status_code == 401
    assert not client.logged_in

    with pytest.raises(LoginFailed) as invalid:
        client.login("", "")
    assert (invalid.value.code, invalid.value.status_code) == (
        "validation_error",
        422,
    )


# Plumbing: timeouts and URL joining ------------------------------------------------


def test_every_request_has_a_timeout(make_client, username):
    client, session = make_client()
    client.login(username, PASSWORD)
    client.get("/store")
    client.get("/store", timeout=3)
    assert [call[3] for call in session.calls] == [
        DEFAULT_TIMEOUT,
        DEFAULT_TIMEOUT,
        3,
    ]
    short, short_session = make_client(timeout=4.5)
    short.get("/healthz")
    assert short_session.calls[0][3] == 4.5


def test_urls_are_joined_safely():
    with ApiClient("http://api.example:8000/v1/") as client:
        assert client.url("store") == "http://api.example:8000/v1/store"
        assert client.url("/item/1?x=2") == "http://api.example:8000/v1/item/1?x=2"
        for foreign in ("https://evil.example/store", "//evil.example/store"):
            with pytest.raises(ValueError):
                client.url(foreign)
    for bad in ("api.example:8000", "ftp://api.example", "http://h/?q=1"):
        with pytest.raises(ValueError):
            ApiClient(bad)
