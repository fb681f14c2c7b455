"""End to end in a real browser: Debian's chromium driven by Playwright.

A live gunicorn serves the app with 2-second access tokens. Swagger UI must work
offline (every request outside 127.0.0.1 is blocked and counted), and the /demo
page must refresh silently — once for several requests in flight — and ask for a
login when a fresh token is needed, in header mode and in cookie mode.
Screenshots of the key steps go to the test's temporary folder.
"""

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from tests import servers
from tests.helpers import PASSWORD
from tests.servers import free_port, request

ACCESS_LIFETIME = 3

playwright_api = pytest.importorskip("playwright.sync_api")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)."
        if os.environ.get("CI"):
            pytest.fail(message + " CI must run the browser tests.")
        pytest.skip(message)
    return path


@contextlib.contextmanager
def _live_server(folder: Path, access_lifetime: int):
    """A live gunicorn on a fresh SQLite database; yields its base URL."""
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
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
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
    """A fresh browser context: blocks the outside world, counts /refresh."""

    def __init__(self, browser, server: str, shots: Path) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.server = server
        self.shots = shots
        self.outside: list[str] = []
        self.refreshes: list[int] = []
        self.token_bodies: list[str] = []
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
        if path == "/refresh":
            self.refreshes.append(response.status)
        if path in ("/login", "/refresh"):
            self.token_bodies.append(response.text())

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser, server, tmp_path):
    page = Page(browser, server, tmp_path)
    yield page
    page.close()
    assert page.outside == [], f"requests left the machine: {page.outside}"


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
