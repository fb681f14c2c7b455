"""What the browser tests share: a page that keeps to loopback and records the
API calls, and the live servers they drive (gunicorn on a fresh SQLite database,
the /demo page on, short-lived access tokens)."""

import contextlib
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs

from tests import servers
from tests.servers import free_port, request
from tests.services import program

ACCESS_LIFETIME = 3
# The routes whose answers carry tokens (in the body, or as cookies).
TOKEN_PATHS = ("/login", "/login/mfa", "/login/passkey", "/refresh", "/reauthenticate")


def chromium() -> str:
    return program(
        "chromium", "chromium-browser", package="chromium", tests="the browser tests"
    )


@contextlib.contextmanager
def live_server(
    folder: Path, access_lifetime: int, port: int | None = None, **settings: str
):
    """A live gunicorn on a fresh SQLite database (and `settings`), on `port` or a
    free one; yields its base URL."""
    port = port or free_port()
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
        self.token_bodies: list[str] = []  # the answers of the routes that issue tokens
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
        if path in TOKEN_PATHS:
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


def create_user_with_an_item(server: str) -> str:
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
