"""Security headers (core/hardening.py) and request ids on every kind of answer,
and token answers that are never cached (Cache-Control: no-store)."""

import pytest

from tests.helpers import (
    HEX_ID,
    NEW_PASSWORD,
    PASSWORD,
    TOKEN_KEYS,
    assert_error,
    assert_security_headers,
    bearer,
    config,
    header_tokens,
    login,
)


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


# --- Security headers ----------------------------------------------------------


def test_a_security_header_set_by_a_view_is_kept(app, client):
    app.add_url_rule(
        "/framed",
        "framed",
        lambda: ("ok", 200, {"X-Frame-Options": "SAMEORIGIN"}),
    )

    response = client.get("/framed")

    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@config(PROPAGATE_EXCEPTIONS=False)
def test_security_headers_and_request_id_on_every_kind_of_response(app, client, auth):
    app.add_url_rule("/explode", "explode", lambda: 1 / 0)
    _, tokens = auth.user()
    assets = app.config["OPENAPI_SWAGGER_UI_URL"]
    responses = {
        "500": client.get("/explode"),
        "413": client.post("/store", data=b"x" * (1024 * 1024 + 1)),
        "json 200": client.get("/store", headers=bearer(tokens["access_token"])),
        "401": client.get("/store"),
        "404": client.get("/no/such/route"),
        "405": client.delete("/login"),
        "422": login(client, "alice", ""),
        "openapi": client.get("/openapi.json"),
        "swagger ui": client.get("/swagger-ui"),
        "static asset": client.get(assets + "swagger-ui.css"),
    }
    for response in responses.values():  # buffer the bodies, release the files
        response.get_data()
        response.close()
    statuses = {name: r.status_code for name, r in responses.items()}
    assert statuses == {
        "500": 500,
        "413": 413,
        "json 200": 200,
        "401": 401,
        "404": 404,
        "405": 405,
        "422": 422,
        "openapi": 200,
        "swagger ui": 200,
        "static asset": 200,
    }
    assert responses["json 200"].get_json() == []
    assert_error(responses["500"], 500, "internal_error")
    assert_error(responses["413"], 413, "payload_too_large")
    assert_error(responses["401"], 401, "authorization_required")
    assert_error(responses["404"], 404, "not_found")
    assert_error(responses["405"], 405, "method_not_allowed")
    assert_error(responses["422"], 422, "validation_error")
    assert responses["openapi"].get_json()["info"]["title"] == "Stores REST API"
    assert responses["swagger ui"].mimetype == "text/html"
    assert "<html" in responses["swagger ui"].get_data(as_text=True).lower()
    assert responses["static asset"].mimetype == "text/css"
    assert responses["static asset"].get_data()
    for name, response in responses.items():
        try:
            assert_security_headers(response)
            assert HEX_ID.fullmatch(response.headers.get("X-Request-ID", ""))
        except AssertionError as exc:
            raise AssertionError(f"{name}: {dict(response.headers)}") from exc


# --- Token responses are never cached --------------------------------------------


def test_token_responses_carry_no_store(client, auth):
    assert auth.register().status_code == 201
    responses = {"login": login(client)}
    tokens = responses["login"].get_json()
    responses["refresh"] = auth.refresh(tokens["refresh_token"])
    responses["password"] = client.put(
        "/user/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    for name, response in responses.items():
        assert response.status_code == 200, (name, response.get_json())
        body = response.get_json()
        assert set(body) == TOKEN_KEYS
        assert body["token_type"] == "Bearer"
        assert "no-store" in header_tokens(response.headers.get("Cache-Control", ""))
        assert response.headers.get("Pragma") == "no-cache"
