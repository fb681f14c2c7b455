"""Swagger UI in a real browser (tests/browser/conftest.py): it must work offline
(every request outside 127.0.0.1 is blocked and counted) and keep an OAuth 2.0
password login alive (one silent refresh at /token for requests in flight, the
password asked again only when the refresh is refused, a new login offered when a
fresh token is needed; a pasted bearer token left alone); and the same under a path
prefix, behind nginx. Screenshots of the key steps go to the test's temporary
folder.
"""

import json
import time

from tests import servers
from tests.browser.pages import ACCESS_LIFETIME, Page, create_user_with_an_item
from tests.helpers import PASSWORD
from tests.servers import request


def test_swagger_ui_works_offline_and_try_it_out_succeeds(
    browser, swagger_server, tmp_path
):
    username = create_user_with_an_item(swagger_server)
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
    status, body = _fresh_login_then(page, user, create)
    assert status == 201 and '"name": "Lamp"' in body
    # (Tokens this short-lived may have been refreshed again before POST /item:
    # every refresh worked, and the fresh login came last.)
    assert page.grants[-1] == PASSWORD_GRANT
    assert set(page.grants[1:-1]) == {REFRESHED}


def _fresh_login_then(page: Page, user: str, operation) -> tuple[int, str]:
    """Log in in the open dialog and execute `operation` (a fresh-only one).

    A 3-second token is refreshed 0.3 s before it expires: on a slow machine the
    refresh may come between the login and the request, which is then rightly
    refused as not fresh, and the notice offers a fresh login again. That is
    checked, and the login tried again (3 times at most)."""
    p = page.page
    for _ in range(3):
        logins = len(page.grants)
        _log_in_in_the_dialog(page, user)
        status, body = _execute(operation)
        if status != 401:
            return status, body
        assert "fresh_token_required" in body
        assert page.grants[logins] == PASSWORD_GRANT
        assert page.grants[-1] == REFRESHED, "refused although no refresh came"
        p.wait_for_selector("#swagger-reauth:not([hidden])")
        p.click("#swagger-reauth-button")
        p.locator(OAUTH2_DIALOG).locator("#oauth_password").wait_for()
    return status, body


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
    for _ in range(3):  # a slow machine may take the token's 3 seconds to paste it
        tokens = servers.login(page.server, user)  # lives 3 seconds from now
        p.click(".auth-wrapper button.authorize")
        logout = p.locator(".modal-ux form button:has-text('Logout')")
        if logout.count():  # the token of the try before: replace it
            logout.first.click()
        p.fill("#auth-bearer-value", tokens["access_token"])
        p.click(".modal-ux form button.authorize")
        p.click(".modal-ux form button.btn-done")
        status, body = _execute(me)
        if "token_expired" not in body:
            break
    assert status == 200 and f'"username": "{user}"' in body, body

    time.sleep(ACCESS_LIFETIME + 0.5)
    status, body = _execute(me)
    assert status == 401 and "token_expired" in body
    assert page.grants == []
    assert not p.is_visible("#swagger-reauth") and not p.is_visible(".modal-ux")


def test_swagger_ui_under_a_prefix_authorizes_and_tries_it_out(prefixed_page):
    page = prefixed_page
    user = create_user_with_an_item(page.server)
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
