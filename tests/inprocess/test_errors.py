"""Every error is JSON in the one envelope: never HTML, never a stack trace."""

import pytest

from tests.helpers import assert_error, bearer


@pytest.fixture
def app_config(app_config):
    """Let unhandled exceptions reach the 500 handler, as in production."""
    return {**app_config, "PROPAGATE_EXCEPTIONS": False}


def test_unknown_route_is_a_404_envelope(client):
    response = client.get("/no/such/thing")
    assert_error(response, 404, "not_found")
    assert b"<html" not in response.data.lower()


def test_unknown_method_is_a_405_envelope_with_allow(client):
    response = client.put("/login", json={})
    body = assert_error(response, 405, "method_not_allowed")
    assert body["status"] == "Method Not Allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {
        "OPTIONS",
        "POST",
    }


def test_malformed_json_is_a_400_envelope(client):
    response = client.post(
        "/register", data='{"username": ', content_type="application/json"
    )
    body = assert_error(
        response, 400, "bad_request", "The request body is not valid JSON."
    )
    assert body["errors"] == {"json": ["Invalid JSON body."]}


def test_body_over_one_mebibyte_is_a_413_envelope(client):
    response = client.post(
        "/register",
        data=b'{"username": "' + b"a" * (1024 * 1024) + b'"}',
        content_type="application/json",
    )
    assert_error(response, 413, "payload_too_large")


def test_oversized_body_is_refused_even_where_the_body_is_never_read(client):
    response = client.post(
        "/logout", data=b"x" * (1024 * 1024 + 1), content_type="application/json"
    )
    assert_error(response, 413, "payload_too_large")


def test_validation_error_lists_fields(client):
    response = client.post("/register", json={"username": "ab", "extra": 1})
    body = assert_error(response, 422, "validation_error")
    assert set(body["errors"]["json"]) == {"username", "password", "extra"}
    assert body["errors"]["json"]["extra"] == ["Unknown field."]
    assert body["errors"]["json"]["password"] == ["Missing data for required field."]


def test_unhandled_exception_is_a_500_envelope_without_details(app, client, caplog):
    def explode():
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/explode", "explode", explode)
    response = client.get("/explode")
    body = assert_error(response, 500, "internal_error", "An internal error occurred.")
    assert "hunter2" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert set(body) == {"code", "status", "message", "error"}
    # The details go to the log, for the operator.
    assert any("Exception on /explode" in r.getMessage() for r in caplog.records)


def test_errors_are_json_even_when_the_client_prefers_html(client):
    response = client.get("/nowhere", headers={"Accept": "text/html"})
    assert response.content_type == "application/json"
    assert_error(response, 404, "not_found")


def test_protected_endpoint_checks_the_token_before_the_body(client):
    response = client.post("/store", data="{not json", content_type="application/json")
    assert_error(response, 401, "authorization_required")


def test_query_argument_errors_are_422_envelopes(client, auth):
    _, tokens = auth.user()
    response = client.get(
        "/store?page_size=1000", headers=bearer(tokens["access_token"])
    )
    body = assert_error(response, 422, "validation_error")
    assert "page_size" in body["errors"]["query"]
