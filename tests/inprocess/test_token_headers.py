"""How a token may be sent: the Bearer scheme in any case (RFC 9110 §11.1), one
or more spaces after it (RFC 6750 §2.1), and every other shape of the
Authorization header a 401 `authorization_required`; a CSRF header that is not
ASCII is a 403 `csrf_failed`, not a 500."""

import pytest

from tests.helpers import PASSWORD, assert_error

BAD_HEADER = (
    "The Authorization header must be 'Bearer <token>', or 'DPoP <token>' with a "
    "DPoP proof."
)
CHALLENGE = 'Bearer realm="api"'


def assert_no_token(response) -> None:
    body = assert_error(response, 401, "authorization_required", BAD_HEADER)
    assert set(body) == {"code", "status", "message", "error"}
    assert response.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize(
    "template",
    [
        "bearer {}",
        "BEARER {}",
        "BeArEr {}",
        "Bearer  {}",  # RFC 6750 §2.1: "Bearer" 1*SP b64token
        "bearer   {}",
        "Basic YWxpY2U6eA==, bearer {}",  # the library reads one Bearer credential
    ],
)
def test_any_case_of_the_scheme_is_accepted(auth, client, template):
    _, tokens = auth.user("alice")

    response = client.get(
        "/me", headers={"Authorization": template.format(tokens["access_token"])}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["username"] == "alice"

    response = client.post(
        "/refresh",
        headers={"Authorization": template.format(tokens["refresh_token"])},
    )
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }


@pytest.mark.parametrize(
    "header",
    ["Bearer", "bearer", "BEARER ", "Bearer ,", "Bearer a b", "bEaReR a b"],
)
@pytest.mark.parametrize(("method", "path"), [("get", "/me"), ("post", "/refresh")])
def test_a_bearer_header_without_one_token_is_authorization_required(
    client, header, method, path
):
    response = getattr(client, method)(path, headers={"Authorization": header})

    assert_no_token(response)


@pytest.mark.parametrize("header", ["Bearerx {}", "Token {}", "{}"])
def test_another_scheme_is_authorization_required(auth, client, header):
    _, tokens = auth.user("alice")

    response = client.get(
        "/me", headers={"Authorization": header.format(tokens["access_token"])}
    )

    assert_no_token(response)


@pytest.fixture
def cookie_session(auth, client) -> None:
    auth.register("alice")
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, "token_delivery": "cookie"},
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("path", ["/logout", "/refresh"])
@pytest.mark.parametrize("value", ["\u00e9t\u00e9", "a\u00ff", "\u0080"])
def test_a_csrf_header_that_is_not_ascii_is_csrf_failed(
    cookie_session, client, path, value
):
    # WSGI carries header bytes as latin-1 characters.
    response = client.post(path, headers={"X-CSRF-TOKEN": value})

    assert_error(response, 403, "csrf_failed")
    # The session is untouched: the right header still works.
    name = "csrf_refresh_token" if path == "/refresh" else "csrf_access_token"
    right = {"X-CSRF-TOKEN": client.get_cookie(name).value}
    assert client.post(path, headers=right).status_code == 200
