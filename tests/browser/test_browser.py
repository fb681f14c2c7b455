"""End to end in a real browser: Debian's chromium driven by Playwright.

A live gunicorn serves the app with 3-second access tokens. Swagger UI must work
offline (every request outside 127.0.0.1 is blocked and counted) and keep an OAuth
2.0 password login alive (one silent refresh at /token for requests in flight, the
password asked again only when the refresh is refused, a new login offered when a
fresh token is needed; a pasted bearer token left alone). The /demo page must
refresh silently — once for several requests in flight — and ask for a login when
a fresh token is needed, log out with an expired access token so that the session
ends on the server, and list the user's sessions and end one, in header mode and
in cookie mode.
Screenshots of the key steps go to the test's temporary folder.
"""

import base64
import contextlib
import http.client
import json
import os
import secrets
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import proxy, servers
from tests.helpers import PASSWORD
from tests.servers import REQUEST_TIMEOUT, free_port, request
from tests.services import program

ACCESS_LIFETIME = 3

playwright_api = pytest.importorskip("playwright.sync_api")


def _chromium() -> str:
    return program(
        "chromium", "chromium-browser", package="chromium", tests="the browser tests"
    )


@contextlib.contextmanager
def _live_server(folder: Path, access_lifetime: int, **settings: str):
    """A live gunicorn on a fresh SQLite database (and `settings`); yields its
    base URL."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "APP_ENV": "development",
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{folder / 'browser.db'}",
        "BLOCKLIST_BACKEND": "database",
        "JWT_ACCESS_TOKEN_EXPIRES": str(access_lifetime),
        "JWT_DECODE_LEEWAY": "0",
        "RATELIMIT_ENABLED": "false",
        "AUTH_COOKIE_SECURE": "false",  # plain http on loopback
        "DEMO_ENABLED": "true",  # the page these tests drive
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        **settings,
    }
    # Ready when /readyz answers 200, within 30 s (this server keeps gunicorn's
    # default control socket, as before).
    with servers.live_server(
        env, folder / "server.log", ready_path="/readyz", args=(), deadline=30
    ) as base:
        yield base


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo's server: access tokens live ACCESS_LIFETIME seconds."""
    with _live_server(tmp_path_factory.mktemp("demo-server"), ACCESS_LIFETIME) as base:
        yield base


@pytest.fixture(scope="module")
def swagger_server(tmp_path_factory):
    """Swagger UI's server: tokens that outlive a person clicking through the UI."""
    with _live_server(tmp_path_factory.mktemp("swagger-server"), 900) as base:
        yield base


@pytest.fixture(scope="module")
def prefixed_server(tmp_path_factory):
    """The demo's server behind nginx under /api (tests/proxy.py): the API's base
    URL, nginx's address + /api."""
    folder = tmp_path_factory.mktemp("prefixed-server")
    with _live_server(folder, ACCESS_LIFETIME, TRUSTED_PROXIES="1") as upstream:
        with proxy.nginx(folder / "nginx", upstream) as site:
            yield site + proxy.PREFIX


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


class Page:
    """A fresh browser context: blocks the outside world, records the API calls
    (and counts /refresh, and the grants sent to /token)."""

    def __init__(self, browser, server: str, shots: Path) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.server = server
        self.shots = shots
        self.outside: list[str] = []
        self.calls: list[tuple[str, str, int]] = []  # method, path, status
        self.refreshes: list[int] = []
        self.token_bodies: list[str] = []
        self.refresh_cookies: list[str] = []  # as Set-Cookie delivered them
        self.revocations: list[tuple[str | None, str | None]] = []  # type, body
        self.grants: list[tuple[str, int]] = []  # POST /token: grant_type, status
        self.context.route("**/*", self._only_loopback)
        self.page.on("response", self._watch)

    def _only_loopback(self, route) -> None:
        if route.request.url.startswith(self.server):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _watch(self, response) -> None:
        path = response.url[len(self.server) :].split("?")[0]
        if response.request.resource_type == "fetch":
            self.calls.append((response.request.method, path, response.status))
        if path == "/refresh":
            self.refreshes.append(response.status)
        if path in ("/login", "/refresh"):
            self.token_bodies.append(response.text())
            for cookie in response.header_values("set-cookie"):
                name, _, rest = cookie.partition("=")
                value = rest.split(";")[0]
                if name == "refresh_token_cookie" and value:
                    self.refresh_cookies.append(value)
        if path == "/revoke":
            sent = response.request
            self.revocations.append((sent.headers.get("content-type"), sent.post_data))
        if path == "/token":
            [grant] = parse_qs(response.request.post_data or "")["grant_type"]
            self.grants.append((grant, response.status))

    def shot(self, name: str, full_page: bool = True) -> None:
        path = str(self.shots / f"{name}.png")
        self.page.screenshot(path=path, full_page=full_page)

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def open_page(browser, server: str, tmp_path: Path):
    """A page of its own; afterwards, no request may have gone outside `server`."""
    page = Page(browser, server, tmp_path)
    yield page
    page.close()
    assert page.outside == [], f"requests outside {server}: {page.outside}"


@pytest.fixture
def page(browser, server, tmp_path):
    with open_page(browser, server, tmp_path) as page:
        yield page


@pytest.fixture
def user(server):
    """A registered user, a store and an item of theirs: the username."""
    return _create_user_with_an_item(server)


def _create_user_with_an_item(server: str) -> str:
    username = f"user_{secrets.token_hex(4)}"
    _, tokens = servers.sign_up(server, username)
    token = tokens["access_token"]
    store = request(
        server, "POST", "/store", token=token, body={"name": f"shop-{username}"}
    )
    assert store.status == 201
    body = {"name": "Chair", "price": 15.99, "store_id": store.body["id"]}
    assert request(server, "POST", "/item", token=token, body=body).status == 201
    return username


def test_swagger_ui_works_offline_and_try_it_out_succeeds(
    browser, swagger_server, tmp_path
):
    username = _create_user_with_an_item(swagger_server)
    tokens = servers.login(swagger_server, username)
    page = Page(browser, swagger_server, tmp_path)
    p = page.page
    p.goto(swagger_server + "/swagger-ui")
    p.wait_for_selector(".swagger-ui .info .title")
    assert "Stores REST API" in p.inner_text(".swagger-ui .info .title")
    page.shot("swagger-loaded")

    p.click("button.authorize")
    p.fill(".modal-ux input[type=text]", tokens["access_token"])
    p.click(".modal-ux .auth-btn-wrapper button.authorize")
    p.click(".modal-ux button.btn-done")
    page.shot("swagger-authorized")

    operation = p.locator(".opblock-get").filter(
        has=p.locator('.opblock-summary-path[data-path="/item"]')
    )
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = operation.locator(
        ".live-responses-table .response-col_description pre"
    ).first
    assert '"name": "Chair"' in body.inner_text()
    page.shot("swagger-try-it-out")
    page.close()
    assert page.outside == [], f"requests left the machine: {page.outside}"


def _log_in(page: Page, user: str, mode: str) -> None:
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")
    assert p.inner_text("#mode") == mode
    p.fill("#username", user)
    p.fill("#password", PASSWORD)
    p.click("#login-button")
    p.wait_for_selector("#app-section:not([hidden])")
    p.wait_for_selector("#items li")
    assert p.inner_text("#whoami") == user
    page.shot(f"{mode}-logged-in")


def _silent_refresh_then_relogin(page: Page, user: str, mode: str) -> None:
    p = page.page
    time.sleep(ACCESS_LIFETIME + 0.5)  # the access token expires in the browser

    p.click("#load-button")  # three requests at once
    # (Selectors, not wait_for_function: the page's CSP forbids eval, rightly.)
    p.wait_for_selector("#refresh-indicator[data-count='1']")
    p.wait_for_selector("#status:has-text('Loaded ')")
    assert page.refreshes == [200], "exactly one /refresh for all requests in flight"
    assert not p.is_visible("#relogin")
    page.shot(f"{mode}-silently-refreshed")

    # Creating an item needs a fresh token: the page asks for the password again.
    p.fill("#item-name", f"Lamp {mode}")
    p.click("#create-item")
    p.wait_for_selector("#relogin[open]")
    assert "fresh login" in p.inner_text("#relogin-reason")
    page.shot(f"{mode}-relogin-prompt")
    p.fill("#relogin-password", PASSWORD)
    p.click("#relogin-button")
    p.wait_for_selector(f"#status:has-text('Created item Lamp {mode}')")
    p.wait_for_selector(f"#items li:has-text('Lamp {mode}')")
    # More refreshes may have happened since (the tokens are that short-lived);
    # every one of them worked.
    assert page.refreshes and set(page.refreshes) == {200}
    page.shot(f"{mode}-item-created")


def test_demo_header_mode_refreshes_silently_and_asks_for_a_fresh_login(page, user):
    _log_in(page, user, "header")
    _silent_refresh_then_relogin(page, user, "header")


def test_demo_cookie_mode_keeps_tokens_away_from_javascript(page, user):
    _log_in(page, user, "cookie")
    p = page.page
    # The tokens are in HttpOnly cookies: page JavaScript sees only the CSRF values.
    visible = p.evaluate("document.cookie")
    assert (
        "access_token_cookie" not in visible and "refresh_token_cookie" not in visible
    )
    assert "csrf_access_token" in visible
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["access_token_cookie"]["httpOnly"] is True
    assert cookies["refresh_token_cookie"]["httpOnly"] is True
    assert cookies["refresh_token_cookie"]["path"] == "/refresh"
    assert cookies["access_token_cookie"]["sameSite"] == "Strict"

    _silent_refresh_then_relogin(page, user, "cookie")

    storage = p.evaluate("JSON.stringify([localStorage, sessionStorage])")
    assert "eyJ" not in storage and "eyJ" not in p.evaluate("document.cookie")
    assert page.token_bodies and all("eyJ" not in body for body in page.token_bodies)
    # Logging out clears the cookies.
    p.click("#logout-button")
    p.wait_for_selector("#status:has-text('Logged out.')")
    names = {c["name"] for c in page.context.cookies()}
    assert not names & {"access_token_cookie", "refresh_token_cookie"}


def _claims(token: str) -> dict:
    """A JWT's payload, not verified (the server checks the signature)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _page_tokens(page: Page, mode: str) -> tuple[str, str]:
    """The page's (access, refresh) tokens now: from its last token answer in
    header mode, from the HttpOnly cookies in cookie mode (Playwright reads them;
    page JavaScript cannot)."""
    if mode == "header":
        body = json.loads(page.token_bodies[-1])
        return body["access_token"], body["refresh_token"]
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies["access_token_cookie"], cookies["refresh_token_cookie"]


def _assert_revoked(server: str, *refresh_tokens: str, access: str | None = None):
    """Each refresh token (and the access token) now answers 401 token_revoked."""
    checks = [("POST", "/refresh", token) for token in refresh_tokens]
    if access is not None:
        checks.append(("GET", "/me", access))
    for method, path, token in checks:
        reply = request(server, method, path, token=token)
        assert (reply.status, reply.error) == (401, "token_revoked"), (path, reply)
        assert reply.body["message"] == "The token has been revoked."


@pytest.mark.parametrize("mode", ["header", "cookie"])
def test_demo_logout_with_an_expired_access_token_ends_the_session(page, user, mode):
    _log_in(page, user, mode)
    p = page.page
    _, refresh = _page_tokens(page, mode)
    time.sleep(ACCESS_LIFETIME + 0.5)  # the access token expires in the browser
    before = len(page.calls)

    p.click("#logout-button")
    p.wait_for_selector("#status:has-text('Logged out.')")
    page.shot(f"{mode}-logged-out-after-expiry")

    assert not p.is_visible("#relogin"), "a logout never asks for a login"
    assert p.is_visible("#login-section") and not p.is_visible("#app-section")
    calls = page.calls[before:]
    if mode == "header":
        # RFC 7009 with the refresh token it holds: no access token, no refresh.
        assert calls == [("POST", "/revoke", 200)]
        [(content_type, body)] = page.revocations
        assert content_type.startswith("application/x-www-form-urlencoded")
        assert body == f"token={refresh}&token_type_hint=refresh_token"
        refresh_tokens = [refresh]
    else:
        # The refresh cookie goes to /refresh only: refresh once, repeat /logout.
        assert calls == [
            ("POST", "/logout", 401),
            ("POST", "/refresh", 200),
            ("POST", "/logout", 200),
        ]
        assert page.revocations == []
        names = {c["name"] for c in page.context.cookies()}
        assert not names & {"access_token_cookie", "refresh_token_cookie"}
        # The cookie read before the logout, and the one its refresh set.
        refresh_tokens = [refresh, page.refresh_cookies[-1]]
        assert refresh_tokens[1] != refresh
    _assert_revoked(page.server, *refresh_tokens)


OTHER_DEVICE = "stores-cli/1.0 (another device)"


def _log_in_elsewhere(server: str, username: str) -> dict:
    """POST /login as another device would (its own User-Agent): the token pair."""
    url = urlsplit(server)
    connection = http.client.HTTPConnection(
        url.hostname, url.port, timeout=REQUEST_TIMEOUT
    )
    try:
        connection.request(
            "POST",
            "/login",
            body=json.dumps({"username": username, "password": PASSWORD}),
            headers={"Content-Type": "application/json", "User-Agent": OTHER_DEVICE},
        )
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 200, body
    return body


def _rows(p) -> list[str]:
    """The session ids the panel lists, in its order."""
    return [
        row.get_attribute("data-session-id") for row in p.locator("#sessions li").all()
    ]


@pytest.mark.parametrize("mode", ["header", "cookie"])
def test_demo_lists_the_sessions_and_ends_another(page, user, mode):
    other = _log_in_elsewhere(page.server, user)
    # The other device's list: its own session and the user fixture's login.
    listed = request(page.server, "GET", "/me/sessions", token=other["access_token"])
    assert listed.status == 200 and len(listed.body) == 2, listed.body
    [other_id] = [row["id"] for row in listed.body if row["current"]]
    _log_in(page, user, mode)
    p = page.page
    this_id = _claims(_page_tokens(page, mode)[0])["fam"]
    p.wait_for_selector("#sessions li >> nth=2")
    # Newest first: this page, the other device, the fixture's login.
    assert _rows(p) == [this_id, *(row["id"] for row in listed.body)]
    current = p.locator("#sessions li.current")
    assert current.count() == 1
    assert current.get_attribute("data-session-id") == this_id
    assert "this device" in current.inner_text()
    assert "HeadlessChrome on Linux" in current.inner_text()
    assert current.locator("button.end-session").inner_text() == "Log out"
    another = p.locator(f"#sessions li[data-session-id='{other_id}']")
    assert OTHER_DEVICE in another.inner_text()
    assert "this device" not in another.inner_text()
    assert another.locator("button.end-session").inner_text() == "End"
    assert p.locator("#sessions .this-device").count() == 1
    page.shot(f"{mode}-sessions-listed")

    # A silent refresh moves this session's "last used", and the panel shows it.
    used = current.locator("time.last-used").get_attribute("datetime")
    time.sleep(ACCESS_LIFETIME + 0.5)
    p.click("#load-button")
    p.wait_for_selector("#refresh-indicator[data-count='1']")
    p.wait_for_selector(f"#sessions li.current time:not([datetime='{used}'])")
    moved = current.locator("time.last-used").get_attribute("datetime")
    assert datetime.fromisoformat(moved) > datetime.fromisoformat(used)
    assert page.refreshes == [200]
    page.shot(f"{mode}-sessions-after-refresh")

    # End the other device's session: gone from the panel, its tokens refused.
    # (A live pair of it first: its access token from /login has expired.)
    renewed = request(page.server, "POST", "/refresh", token=other["refresh_token"])
    assert renewed.status == 200, renewed.body
    before = len(page.calls)
    another.locator("button.end-session").click()
    p.wait_for_selector("#status:has-text('Session ended.')")
    another.wait_for(state="detached")
    # (Had this page's 3-second access token expired meanwhile, a 401 and a
    # /refresh would come in between: left out.)
    ended = [c for c in page.calls[before:] if c[1] != "/refresh" and c[2] != 401]
    assert ended == [
        ("DELETE", f"/me/sessions/{other_id}", 200),
        ("GET", "/me/sessions", 200),
    ]
    assert other_id not in _rows(p) and this_id in _rows(p) and len(_rows(p)) == 2
    _assert_revoked(
        page.server,
        renewed.body["refresh_token"],
        other["refresh_token"],
        access=renewed.body["access_token"],
    )
    page.shot(f"{mode}-session-ended")

    # End all the others (the fixture's login and a new one): only this one stays.
    third = _log_in_elsewhere(page.server, user)
    p.click("#end-others-button")
    p.wait_for_selector("#status:has-text('Ended 2 other session(s).')")
    p.wait_for_selector("#sessions li >> nth=1", state="detached")
    assert _rows(p) == [this_id]
    _assert_revoked(page.server, third["refresh_token"])
    # This session lives on.
    p.click("#load-button")
    p.wait_for_selector("#status:has-text('Loaded ')")
    assert not p.is_visible("#relogin")
    page.shot(f"{mode}-other-sessions-ended")


# Swagger UI's OAuth 2.0 login (Authorize with a username and a password), kept
# alive by core/pages/static/swagger-refresh.js, on the 3-second-token server.

REFRESHED = ("refresh_token", 200)
PASSWORD_GRANT = ("password", 200)
OAUTH2_DIALOG = ".modal-ux .auth-container:has(label[for=oauth_username])"


def _new_store(server: str, username: str) -> int:
    """A new store of the user's: its id."""
    token = servers.login(server, username)["access_token"]
    body = {"name": f"lamps-{username}"}
    store = request(server, "POST", "/store", token=token, body=body)
    assert store.status == 201, store.body
    return store.body["id"]


def _open_swagger_ui(page: Page) -> None:
    page.page.goto(page.server + "/swagger-ui")
    page.page.wait_for_selector(".swagger-ui .info .title")


def _authorize_with_password(page: Page, username: str) -> None:
    """Authorize, then the oauth2 scheme's username and password, then Close."""
    p = page.page
    p.click(".auth-wrapper button.authorize")
    _log_in_in_the_dialog(page, username)


def _log_in_in_the_dialog(page: Page, username: str) -> None:
    p = page.page
    oauth2 = p.locator(OAUTH2_DIALOG)
    oauth2.locator("#oauth_username").fill(username)
    oauth2.locator("#oauth_password").fill(PASSWORD)
    oauth2.locator("button.authorize").click()
    oauth2.locator("h6:has-text('Authorized')").wait_for()
    assert username in oauth2.inner_text()
    oauth2.locator("button.btn-done").click()
    p.locator(".modal-ux").wait_for(state="detached")


def _operation(page: Page, method: str, path: str):
    """An operation, expanded, in Try it out mode."""
    p = page.page
    operation = p.locator(f".opblock-{method}").filter(
        has=p.locator(f'.opblock-summary-path[data-path="{path}"]')
    )
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    return operation


def _answer(operation) -> tuple[int, str]:
    """The live response Swagger UI shows: status and body."""
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    body = operation.locator(".live-responses-table .response-col_description pre")
    return int(status.inner_text().strip()), body.first.inner_text()


def _execute(operation) -> tuple[int, str]:
    """Clear the last response, Execute, and read the new one."""
    clear = operation.locator("button.btn-clear")
    if clear.count():
        clear.click()
    operation.locator("button.execute").click()
    return _answer(operation)


def _execute_at_once(page: Page, *operations) -> list[tuple[int, str]]:
    """Execute several operations in one JavaScript task: their requests (and any
    refresh they need) overlap."""
    for operation in operations:
        clear = operation.locator("button.btn-clear")
        if clear.count():
            clear.click()
    page.page.evaluate(
        "document.querySelectorAll('.opblock.is-open button.execute')"
        ".forEach((button) => button.click())"
    )
    return [_answer(operation) for operation in operations]


def _api_calls(page: Page) -> list[tuple[str, str, int]]:
    """The page's fetches but the spec's."""
    return [call for call in page.calls if call[1] != "/openapi.json"]


def _persisted(page: Page) -> dict:
    """What persistAuthorization keeps in localStorage."""
    return json.loads(page.page.evaluate("localStorage.getItem('authorized')"))


def test_swagger_ui_refreshes_an_oauth2_login_silently_and_once(page, user):
    store_id = _new_store(page.server, user)
    p = page.page
    _open_swagger_ui(page)
    _authorize_with_password(page, user)
    assert page.grants == [PASSWORD_GRANT]
    # The refresh token stands in for the password, which is not kept.
    persisted = _persisted(page)["oauth2"]
    assert "password" not in persisted and PASSWORD not in json.dumps(persisted)
    assert persisted["token"]["refresh_token"].startswith("eyJ")
    assert persisted["token"]["expires_in"] == ACCESS_LIFETIME

    me = _operation(page, "get", "/me")
    status, body = _execute(me)
    assert status == 200 and f'"username": "{user}"' in body
    page.shot("swagger-oauth2-authorized", full_page=False)

    # Past the access token's expiry, three operations at once: one refresh, before
    # the requests go out (no 401 first), and every one answers 200.
    time.sleep(ACCESS_LIFETIME + 0.5)
    stores, items = _operation(page, "get", "/store"), _operation(page, "get", "/item")
    before, grants_before = len(_api_calls(page)), len(page.grants)
    answers = _execute_at_once(page, me, stores, items)
    assert [status for status, _ in answers] == [200, 200, 200], answers
    assert f'"username": "{user}"' in answers[0][1]
    # (Both lists are paginated, over every user's stores and items.)
    assert '"name": "shop-user_' in answers[1][1] and '"name": "Chair"' in answers[2][1]
    assert page.grants[grants_before:] == [REFRESHED], "exactly one refresh"
    # (On a slow machine the first GET /me may have come late enough to refresh.)
    assert set(page.grants[1:]) == {REFRESHED}
    assert sorted(_api_calls(page)[before:]) == [
        ("GET", "/item", 200),
        ("GET", "/me", 200),
        ("GET", "/store", 200),
        ("POST", "/token", 200),
    ]
    assert not p.is_visible("#swagger-reauth") and not p.is_visible(".modal-ux")
    # The new pair is in Swagger UI's auth state, persisted.
    refreshed = _persisted(page)["oauth2"]["token"]
    assert refreshed["refresh_token"] != persisted["token"]["refresh_token"]
    assert refreshed["access_token"] != persisted["token"]["access_token"]
    page.shot("swagger-oauth2-refreshed", full_page=False)

    # The refreshed token is not fresh: creating an item asks for a new login.
    create = _operation(page, "post", "/item")
    lamp = {"name": "Lamp", "price": 9.5, "store_id": store_id}
    create.locator("textarea.body-param__text").fill(json.dumps(lamp))
    status, body = _execute(create)
    assert status == 401 and "fresh_token_required" in body
    p.wait_for_selector("#swagger-reauth:not([hidden])")
    assert "fresh login" in p.inner_text("#swagger-reauth-message")
    page.shot("swagger-oauth2-fresh-login-offered", full_page=False)

    abandoned = _persisted(page)["oauth2"]["token"]["refresh_token"]
    with p.expect_response(lambda answer: answer.url.endswith("/revoke")) as revoked:
        p.click("#swagger-reauth-button")
    assert revoked.value.status == 200
    oauth2 = p.locator(OAUTH2_DIALOG)
    oauth2.locator("#oauth_password").wait_for()
    assert oauth2.locator("#oauth_username").is_visible()
    assert not p.is_visible("#swagger-reauth")
    page.shot("swagger-oauth2-authorize-again", full_page=False)
    # The abandoned login's session ends on the server (RFC 7009), not just here.
    assert page.revocations == [
        (
            "application/x-www-form-urlencoded;charset=UTF-8",
            f"token={abandoned}&token_type_hint=refresh_token",
        )
    ]
    replay = request(page.server, "POST", "/refresh", token=abandoned)
    assert (replay.status, replay.body["error"]) == (401, "token_revoked")
    _log_in_in_the_dialog(page, user)
    status, body = _execute(create)
    assert status == 201 and '"name": "Lamp"' in body
    # (Tokens this short-lived may have been refreshed again before POST /item:
    # every refresh worked, and the fresh login came last.)
    assert page.grants[-1] == PASSWORD_GRANT
    assert set(page.grants[1:-1]) == {REFRESHED}


def test_swagger_ui_refreshes_on_token_expired_and_repeats_the_requests(page, user):
    """A token whose expiry the page does not know (persisted before it kept
    expires_at): the 401 token_expired answers trigger one refresh, and each
    request is repeated once with the new token."""
    _open_swagger_ui(page)
    _authorize_with_password(page, user)
    persisted = _persisted(page)
    del persisted["oauth2"]["token"]["expires_at"]
    persisted["oauth2"]["password"] = PASSWORD  # as Swagger UI alone keeps it
    p = page.page
    p.evaluate(
        f"localStorage.setItem('authorized', {json.dumps(json.dumps(persisted))})"
    )
    p.reload()  # persistAuthorization restores the login
    p.wait_for_selector(".swagger-ui .info .title")
    assert p.is_visible(".auth-wrapper button.authorize.locked")
    assert "password" not in _persisted(page)["oauth2"]  # scrubbed on restore

    time.sleep(ACCESS_LIFETIME + 0.5)
    me, stores = _operation(page, "get", "/me"), _operation(page, "get", "/store")
    before = len(_api_calls(page))
    answers = _execute_at_once(page, me, stores)
    assert [status for status, _ in answers] == [200, 200], answers
    assert f'"username": "{user}"' in answers[0][1]
    assert page.grants == [PASSWORD_GRANT, REFRESHED], "one refresh for both"
    assert sorted(_api_calls(page)[before:]) == [
        ("GET", "/me", 200),
        ("GET", "/me", 401),
        ("GET", "/store", 200),
        ("GET", "/store", 401),
        ("POST", "/token", 200),
    ]
    assert not p.is_visible("#swagger-reauth") and not p.is_visible(".modal-ux")
    assert _persisted(page)["oauth2"]["token"]["expires_at"]  # known from now on


def test_swagger_ui_asks_for_the_password_when_the_refresh_is_refused(page, user):
    p = page.page
    _open_swagger_ui(page)
    _authorize_with_password(page, user)
    me = _operation(page, "get", "/me")
    assert _execute(me)[0] == 200
    # Another device logs out everywhere: this page's session ends too.
    other = servers.login(page.server, user)
    ended = request(page.server, "POST", "/logout/all", token=other["access_token"])
    assert ended.status == 200, ended.body

    time.sleep(ACCESS_LIFETIME + 0.5)
    status, body = _execute(me)  # the refresh is refused; the request still goes
    assert status == 401 and "token_expired" in body
    oauth2 = p.locator(OAUTH2_DIALOG)
    oauth2.locator("#oauth_password").wait_for()  # the dialog asks for the password
    p.wait_for_selector("#swagger-reauth:not([hidden])")
    assert "session has ended" in p.inner_text("#swagger-reauth-message")
    # One refused refresh, no second try. (Before the logout, a slow first GET /me
    # may have refreshed once.)
    *worked, refused = page.grants
    assert refused == ("refresh_token", 400)
    assert worked[0] == PASSWORD_GRANT and set(worked[1:]) <= {REFRESHED}
    page.shot("swagger-oauth2-refresh-refused", full_page=False)
    # The persisted login is gone with it.
    assert "oauth2" not in _persisted(page)

    _log_in_in_the_dialog(page, user)
    status, body = _execute(me)
    assert status == 200 and f'"username": "{user}"' in body
    assert page.grants == [*worked, refused, PASSWORD_GRANT]
    assert not p.is_visible("#swagger-reauth")


def test_swagger_ui_leaves_a_pasted_bearer_token_alone(page, user):
    """bearerAuth: no refresh, no prompt; its expiry shows as the API's 401."""
    p = page.page
    _open_swagger_ui(page)
    me = _operation(page, "get", "/me")
    tokens = servers.login(page.server, user)  # lives 3 seconds from now
    p.click(".auth-wrapper button.authorize")
    p.fill("#auth-bearer-value", tokens["access_token"])
    p.click(".modal-ux form button.authorize")
    p.click(".modal-ux form button.btn-done")
    status, body = _execute(me)
    assert status == 200 and f'"username": "{user}"' in body, body

    time.sleep(ACCESS_LIFETIME + 0.5)
    status, body = _execute(me)
    assert status == 401 and "token_expired" in body
    assert page.grants == []
    assert not p.is_visible("#swagger-reauth") and not p.is_visible(".modal-ux")


# Mounted under /api behind nginx: the pages' own requests, Swagger UI's Try it out
# and its refreshes, the demo's cookies and refreshes, all under the prefix. (Page
# lets through only the URLs under the server's, so a request to the host's root
# is refused and reported.)


@pytest.fixture
def prefixed_page(browser, prefixed_server, tmp_path):
    with open_page(browser, prefixed_server, tmp_path) as page:
        yield page


def test_swagger_ui_under_a_prefix_authorizes_and_tries_it_out(prefixed_page):
    page = prefixed_page
    user = _create_user_with_an_item(page.server)
    _open_swagger_ui(page)  # at /api/swagger-ui
    _authorize_with_password(page, user)
    assert page.grants == [PASSWORD_GRANT]  # POST /api/token

    me = _operation(page, "get", "/me")
    status, body = _execute(me)
    assert status == 200 and f'"username": "{user}"' in body
    assert ("GET", "/me", 200) in page.calls  # the request went to /api/me
    page.shot("prefixed-swagger-try-it-out", full_page=False)

    # The silent refresh goes to the spec's refreshUrl, under the prefix too.
    time.sleep(ACCESS_LIFETIME + 0.5)
    status, body = _execute(me)
    assert status == 200 and f'"username": "{user}"' in body
    assert page.grants[0] == PASSWORD_GRANT and set(page.grants[1:]) == {REFRESHED}

    # Authorizing again ends the session at /api/revoke.
    p = page.page
    with p.expect_response(lambda answer: answer.url.endswith("/revoke")) as revoked:
        p.evaluate("window.ui.authActions.logoutWithPersistOption(['oauth2'])")
    assert revoked.value.status == 200
    assert revoked.value.url == f"{page.server}/revoke"


def test_demo_under_a_prefix_refreshes_silently_in_cookie_mode(prefixed_page):
    page = prefixed_page
    user = _create_user_with_an_item(page.server)
    _log_in(page, user, "cookie")  # at /api/demo
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["refresh_token_cookie"]["path"] == f"{proxy.PREFIX}/refresh"
    assert cookies["access_token_cookie"]["path"] == f"{proxy.PREFIX}/"
    assert cookies["csrf_refresh_token"]["path"] == f"{proxy.PREFIX}/"

    p = page.page
    time.sleep(ACCESS_LIFETIME + 0.5)  # the access token expires in the browser
    p.click("#load-button")
    p.wait_for_selector("#refresh-indicator[data-count='1']")
    p.wait_for_selector("#status:has-text('Loaded ')")
    assert page.refreshes == [200], "one POST /api/refresh with the cookie"
    assert not p.is_visible("#relogin")
    page.shot("prefixed-cookie-silently-refreshed")
