"""CORS (core/hardening.py, CORS_ORIGINS): preflights from an allowed origin and
from others, no CORS headers without configured origins, the headers a browser
client may read."""

import json

import pytest

from tests.helpers import (
    LIMITS,
    assert_error,
    assert_invalid_credentials,
    assert_rate_limited,
    assert_security_headers,
    bearer,
    config,
    header_tokens,
    login,
)

ALLOWED_ORIGIN = "https://app.example.com"
CORS = {"CORS_ORIGINS": [ALLOWED_ORIGIN]}


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


# --- CORS -------------------------------------------------------------------


def preflight(client, origin: str, path: str = "/store"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )


@config(**CORS)
def test_cors_preflight_from_an_allowed_origin(client):
    response = preflight(client, ALLOWED_ORIGIN)

    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    headers = response.headers
    assert headers.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
    assert headers.get("Access-Control-Allow-Credentials") == "true"
    allowed = header_tokens(headers.get("Access-Control-Allow-Headers", ""))
    assert {"authorization", "content-type"} <= allowed
    assert "post" in header_tokens(headers.get("Access-Control-Allow-Methods", ""))
    assert_security_headers(response)


@config(**CORS)
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "null",
    ],
)
def test_cors_refuses_other_origins(client, auth, origin):
    response = preflight(client, origin)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers

    _, tokens = auth.user()
    response = client.get(
        "/store", headers={"Origin": origin, **bearer(tokens["access_token"])}
    )
    assert response.status_code == 200
    assert response.get_json() == []
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


@config(**CORS, **LIMITS)
def test_preflights_do_not_use_up_the_login_limit(client):
    for _ in range(5):
        response = preflight(client, ALLOWED_ORIGIN, "/login")
        assert response.status_code == 204
        assert response.headers.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
    for i in range(3):
        assert_invalid_credentials(login(client, f"nobody{i}"))
    assert_rate_limited(login(client, "nobody3"))


def test_no_cors_headers_without_configured_origins(app, client, auth):
    assert app.config["CORS_ORIGINS"] == []
    _, tokens = auth.user()
    responses = [
        preflight(client, ALLOWED_ORIGIN),
        client.get(
            "/store",
            headers={"Origin": ALLOWED_ORIGIN, **bearer(tokens["access_token"])},
        ),
    ]
    assert [r.status_code for r in responses] == [204, 200]
    assert responses[1].get_json() == []
    for response in responses:
        cors = [h for h in response.headers.keys() if h.lower().startswith("access-")]
        assert cors == [], dict(response.headers)


@config(**CORS)
def test_cors_exposes_pagination_and_request_id_on_actual_requests(client, auth):
    _, tokens = auth.user()
    headers = {"Origin": ALLOWED_ORIGIN, **bearer(tokens["access_token"])}
    response = client.get("/store", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == []
    assert response.headers.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
    assert response.headers.get("Access-Control-Allow-Credentials") == "true"
    exposed = header_tokens(response.headers.get("Access-Control-Expose-Headers", ""))
    assert {"x-pagination", "x-request-id"} <= exposed
    assert json.loads(response.headers["X-Pagination"])["total"] == 0
    # The answer depends on the Origin, so shared caches must key on it.
    assert "origin" in header_tokens(response.headers.get("Vary", ""))

    # Errors too, so the client can read the envelope (and refresh on 401).
    response = client.get("/store", headers={"Origin": ALLOWED_ORIGIN})
    assert_error(response, 401, "authorization_required")
    assert response.headers.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN


@config(**CORS)
def test_a_browser_may_send_dpop_proofs_and_read_the_nonce(client):
    """RFC 9449: a page on another origin sends the DPoP header, and reads the
    server's DPoP-Nonce (§8) and the DPoP challenge of a 401."""
    response = client.options(
        "/refresh",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, DPoP",
        },
    )
    assert response.status_code == 204
    allowed = header_tokens(response.headers.get("Access-Control-Allow-Headers", ""))
    assert {"authorization", "dpop"} <= allowed
    answer = client.get("/store", headers={"Origin": ALLOWED_ORIGIN})
    assert_error(answer, 401, "authorization_required")
    exposed = header_tokens(answer.headers.get("Access-Control-Expose-Headers", ""))
    assert {"dpop-nonce", "www-authenticate"} <= exposed
