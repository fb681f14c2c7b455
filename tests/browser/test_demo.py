"""The /demo page in a real browser (tests/browser/conftest.py): it must refresh
silently — once for several requests in flight — and ask for a login when a fresh
token is needed, log out with an expired access token so that the session ends on
the server, and list the user's sessions and end one, in header mode and in cookie
mode; and the same under a path prefix, behind nginx. Screenshots of the key steps
go to the test's temporary folder.
"""

import base64
import http.client
import json
import time
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from tests import proxy
from tests.browser.pages import ACCESS_LIFETIME, Page, create_user_with_an_item
from tests.helpers import PASSWORD
from tests.servers import REQUEST_TIMEOUT, request


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


def test_demo_under_a_prefix_refreshes_silently_in_cookie_mode(prefixed_page):
    page = prefixed_page
    user = create_user_with_an_item(page.server)
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
