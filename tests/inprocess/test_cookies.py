"""Cookie mode for browser apps: HttpOnly token cookies, the refresh cookie only
sent to /refresh, CSRF double submit on state-changing requests, logout clears.
Header mode keeps working beside it.
"""

import pytest

from tests.helpers import PASSWORD, assert_error, bearer, set_cookies

COOKIE_LOGIN = {"username": "alice", "password": PASSWORD, "token_delivery": "cookie"}


@pytest.fixture
def cookie_login(auth, client):
    """Register alice and log in with cookie delivery; the login response."""
    auth.register("alice")
    response = client.post("/login", json=COOKIE_LOGIN)
    assert response.status_code == 200, response.get_json()
    return response


def csrf(client, name: str = "csrf_access_token") -> dict:
    return {"X-CSRF-TOKEN": client.get_cookie(name).value}


def test_login_sets_httponly_cookies_and_no_token_in_the_body(cookie_login):
    body = cookie_login.get_json()
    assert body == {"token_type": "Bearer", "expires_in": 900}
    assert cookie_login.headers["Cache-Control"] == "no-store"
    cookies = set_cookies(cookie_login)
    assert set(cookies) == {
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "csrf_refresh_token",
    }
    access = cookies["access_token_cookie"]
    assert "HttpOnly" in access and "SameSite=Strict" in access and "Path=/;" in access
    refresh = cookies["refresh_token_cookie"]
    assert "HttpOnly" in refresh and "Path=/refresh" in refresh
    # The CSRF values are for page JavaScript to read and send back.
    assert "HttpOnly" not in cookies["csrf_access_token"]
    assert "HttpOnly" not in cookies["csrf_refresh_token"]
    # Local http by default outside production; production says Secure.
    assert "Secure" not in access


def test_reads_work_with_the_cookie_alone(cookie_login, client):
    response = client.get("/me")

    assert response.status_code == 200
    assert response.get_json()["username"] == "alice"


def test_state_changing_requests_need_the_csrf_header(cookie_login, client):
    missing = client.post("/store", json={"name": "Shop"})
    wrong = client.post(
        "/store", json={"name": "Shop"}, headers={"X-CSRF-TOKEN": "forged"}
    )
    right = client.post("/store", json={"name": "Shop"}, headers=csrf(client))

    assert_error(missing, 403, "csrf_failed")
    assert_error(wrong, 403, "csrf_failed")
    assert right.status_code == 201
    assert right.get_json() == {"id": 1, "name": "Shop"}


def test_refresh_rotates_the_cookies(app, cookie_login, client):
    old_refresh = client.get_cookie("refresh_token_cookie", path="/refresh").value
    assert_error(client.post("/refresh"), 403, "csrf_failed")

    response = client.post("/refresh", headers=csrf(client, "csrf_refresh_token"))

    assert response.status_code == 200
    assert response.get_json() == {"token_type": "Bearer", "expires_in": 900}
    assert set(set_cookies(response)) >= {"access_token_cookie", "refresh_token_cookie"}
    new_refresh = client.get_cookie("refresh_token_cookie", path="/refresh").value
    assert new_refresh != old_refresh
    assert client.get("/me").status_code == 200
    # The refreshed access cookie is not fresh.
    stale = client.post(
        "/item", json={"name": "x", "price": 1, "store_id": 1}, headers=csrf(client)
    )
    assert_error(stale, 401, "fresh_token_required")


def test_logout_revokes_and_clears_the_cookies(cookie_login, client):
    access = client.get_cookie("access_token_cookie").value

    response = client.post("/logout", headers=csrf(client))

    assert response.status_code == 200
    cleared = set_cookies(response)
    assert set(cleared) == {
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "csrf_refresh_token",
    }
    assert all("Expires=Thu, 01 Jan 1970" in line for line in cleared.values())
    assert client.get_cookie("access_token_cookie") is None
    # And the token itself is revoked, wherever it might have been copied to.
    assert_error(client.get("/me", headers=bearer(access)), 401, "token_revoked")


def test_header_mode_works_beside_cookie_mode(auth, client):
    _, tokens = auth.user("bob")

    assert client.get("/me", headers=bearer(tokens["access_token"])).status_code == 200
    created = client.post(
        "/store",
        json={"name": "No CSRF needed"},
        headers=bearer(tokens["access_token"]),
    )
    assert created.status_code == 201


@pytest.mark.parametrize("app_config", [{"AUTH_COOKIES_ENABLED": False}], indirect=True)
def test_cookie_mode_can_be_switched_off(auth, client):
    auth.register("alice")

    response = client.post("/login", json=COOKIE_LOGIN)

    body = assert_error(response, 422, "validation_error")
    assert body["errors"] == {
        "json": {"token_delivery": ["Cookie delivery is disabled."]}
    }
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("app_config", [{"JWT_COOKIE_SECURE": True}], indirect=True)
def test_cookies_can_be_secure_only(auth, client):
    auth.register("alice")

    response = client.post("/login", json=COOKIE_LOGIN)

    assert all("Secure" in line for line in set_cookies(response).values())


@pytest.fixture
def app_config(request, app_config):
    return {**app_config, **getattr(request, "param", {})}
