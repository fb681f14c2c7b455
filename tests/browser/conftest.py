"""Fixtures of the browser tests: chromium (Debian's, through Playwright) and the
live servers, one of each for the whole folder; a fresh page for each test."""

import pytest

from tests import proxy
from tests.browser.pages import (
    ACCESS_LIFETIME,
    chromium,
    create_user_with_an_item,
    live_server,
    open_page,
)
from tests.servers import free_port


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    """The demo's server: access tokens live ACCESS_LIFETIME seconds."""
    with live_server(tmp_path_factory.mktemp("demo-server"), ACCESS_LIFETIME) as base:
        yield base


@pytest.fixture(scope="package")
def passkey_server(tmp_path_factory):
    """The demo's server for passkeys, at http://localhost:PORT: browsers run
    WebAuthn on a domain only, never on an IP address (127.0.0.1), and the server
    accepts exactly this origin."""
    port = free_port()
    origin = f"http://localhost:{port}"
    with live_server(
        tmp_path_factory.mktemp("passkey-server"),
        ACCESS_LIFETIME,
        port=port,
        WEBAUTHN_RP_ID="localhost",
        WEBAUTHN_ORIGINS=origin,
    ):
        yield origin


@pytest.fixture(scope="package")
def swagger_server(tmp_path_factory):
    """Swagger UI's server: tokens that outlive a person clicking through the UI."""
    with live_server(tmp_path_factory.mktemp("swagger-server"), 900) as base:
        yield base


@pytest.fixture(scope="package")
def prefixed_server(tmp_path_factory):
    """The demo's server behind nginx under /api (tests/proxy.py): the API's base
    URL, nginx's address + /api."""
    folder = tmp_path_factory.mktemp("prefixed-server")
    with live_server(folder, ACCESS_LIFETIME, TRUSTED_PROXIES="1") as upstream:
        with proxy.nginx(folder / "nginx", upstream) as site:
            yield site + proxy.PREFIX


@pytest.fixture(scope="package")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = chromium()
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


@pytest.fixture
def page(browser, server, tmp_path):
    with open_page(browser, server, tmp_path) as page:
        yield page


@pytest.fixture
def passkey_page(browser, passkey_server, tmp_path):
    with open_page(browser, passkey_server, tmp_path) as page:
        yield page


@pytest.fixture
def user(server):
    """A registered user, a store and an item of theirs: the username."""
    return create_user_with_an_item(server)


# Mounted under /api behind nginx: the pages' own requests, Swagger UI's Try it out
# and its refreshes, the demo's cookies and refreshes, all under the prefix. (Page
# lets through only the URLs under the server's, so a request to the host's root
# is refused and reported.)


@pytest.fixture
def prefixed_page(browser, prefixed_server, tmp_path):
    with open_page(browser, prefixed_server, tmp_path) as page:
        yield page
