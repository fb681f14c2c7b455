"""Every error is JSON in the one envelope: never HTML, never a stack trace."""

import re

import pytest

from app import create_app
from core.json_provider import MAX_JSON_DEPTH, ORJSONProvider
from tests.helpers import TEST_SETTINGS, assert_error, bearer

NOT_JSON = "The request body is not valid JSON."
# The OAuth endpoints answer RFC 6749's invalid_request to a body they cannot read.
OAUTH_PATHS = {"/token", "/revoke"}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


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


def _nested(shape: str, depth: int) -> str:
    """A JSON document whose arrays or objects nest `depth` levels deep."""
    if shape == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def _json_operations() -> list:
    """(method, path, secured) of every operation documented with a JSON body."""
    app = create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    spec = app.test_client().get("/openapi.json").get_json()
    return [
        pytest.param(
            method, path, bool(operation.get("security")), id=f"{method} {path}"
        )
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
        and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


JSON_OPERATIONS = _json_operations()


@pytest.fixture
def send(client, admin_headers):
    """Send a JSON body to an operation, with an admin's fresh token if it needs one
    (so the token check, which comes first, lets the body be read)."""

    def send(method: str, path: str, secured: bool, body: str):
        return client.open(
            re.sub(r"{\w+}", "1", path),
            method=method.upper(),
            data=body,
            content_type="application/json",
            headers=admin_headers if secured else {},
        )

    return send


def test_every_operation_with_a_json_body_is_checked_for_depth():
    paths = {param.values[1] for param in JSON_OPERATIONS}
    assert {"/login", "/register", "/store", "/item/{item_id}", "/revoke"} <= paths


@pytest.mark.parametrize("shape", ["array", "object"])
@pytest.mark.parametrize(("method", "path", "secured"), JSON_OPERATIONS)
def test_deeply_nested_json_is_a_400_like_any_unparsable_body(
    send, method, path, secured, shape
):
    unparsable = send(method, path, secured, '{"a": ')
    response = send(method, path, secured, _nested(shape, 1000))
    error = "invalid_request" if path in OAUTH_PATHS else "bad_request"
    body = assert_error(response, 400, error)
    assert body == unparsable.get_json()
    if path not in OAUTH_PATHS:
        assert body["message"] == NOT_JSON
        assert body["errors"] == {"json": ["Invalid JSON body."]}


@pytest.mark.parametrize("depth", [50, MAX_JSON_DEPTH])
@pytest.mark.parametrize("shape", ["array", "object"])
@pytest.mark.parametrize(("method", "path", "secured"), JSON_OPERATIONS)
def test_json_nested_within_the_limit_is_answered_like_a_shallow_body(
    send, method, path, secured, shape, depth
):
    shallow = send(method, path, secured, _nested(shape, 2))
    response = send(method, path, secured, _nested(shape, depth))
    assert response.status_code == shallow.status_code, response.get_json()
    assert response.get_json() == shallow.get_json()
    if path not in OAUTH_PATHS:
        assert_error(response, 422, "validation_error")


def test_one_level_past_the_limit_is_not_json(client):
    response = client.post(
        "/login",
        data=_nested("object", MAX_JSON_DEPTH + 1),
        content_type="application/json",
    )
    assert_error(response, 400, "bad_request", NOT_JSON)


@pytest.mark.parametrize("path", sorted(OAUTH_PATHS))
def test_deep_json_at_the_form_endpoints_is_a_400_envelope(client, path):
    response = client.post(
        path, data=_nested("array", 1000), content_type="application/json"
    )
    body = assert_error(response, 400, "invalid_request")
    assert body["error_description"] == body["message"]


@pytest.mark.parametrize("encode", [False, True], ids=["str", "bytes"])
def test_the_provider_refuses_deep_text_and_bytes_alike(app, encode):
    document = _nested("array", 1000)  # within orjson's own limit (1,024)
    with pytest.raises(ValueError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        ORJSONProvider(app).loads(document.encode() if encode else document)


def test_brackets_inside_strings_do_not_count_as_depth(app):
    document = '{"note": "' + "[{" * 1000 + '"}'
    assert ORJSONProvider(app).loads(document) == {"note": "[{" * 1000}


def test_a_list_items_validation_error_is_keyed_by_its_index(auth, client):
    """marshmallow keys the errors of a list's items by index (an int): the
    envelope carries it as a string, not a 500 (found by schemathesis on
    POST /me/passkeys, whose credential lists its transports)."""
    _, tokens = auth.user("alice")
    credential = {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {
            "clientDataJSON": "AAAA",
            "attestationObject": "AAAA",
            "transports": ["usb", 5],
        },
    }

    response = client.post(
        "/me/passkeys",
        json={"name": "laptop", "credential": credential},
        headers=bearer(tokens["access_token"]),
    )

    body = assert_error(response, 422, "validation_error")
    transports = body["errors"]["json"]["credential"]["response"]["transports"]
    assert transports == {"1": ["Not a valid string."]}
