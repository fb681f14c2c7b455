"""The OpenAPI document and Swagger UI, served offline by the app."""

import re

import pytest

from tests.inprocess.test_session_list import FIELDS as SESSION_FIELDS

PUBLIC_OPERATIONS = {
    ("post", "/register"),
    ("post", "/login"),
    ("post", "/revoke"),
    ("post", "/token"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("post", "/login/mfa"),
    ("post", "/login/passkey/options"),
    ("post", "/login/passkey"),
}
OPERATIONS = PUBLIC_OPERATIONS | {
    ("post", "/refresh"),
    ("post", "/reauthenticate"),
    ("post", "/logout"),
    ("post", "/logout/all"),
    ("get", "/me"),
    ("get", "/me/sessions"),
    ("delete", "/me/sessions"),
    ("delete", "/me/sessions/{session_id}"),
    ("get", "/me/api-tokens"),
    ("post", "/me/api-tokens"),
    ("delete", "/me/api-tokens/{token_id}"),
    ("get", "/me/mfa"),
    ("post", "/me/mfa/totp"),
    ("delete", "/me/mfa/totp"),
    ("post", "/me/mfa/totp/confirm"),
    ("post", "/me/mfa/recovery-codes"),
    ("post", "/me/passkeys/options"),
    ("get", "/me/passkeys"),
    ("post", "/me/passkeys"),
    ("patch", "/me/passkeys/{passkey_id}"),
    ("delete", "/me/passkeys/{passkey_id}"),
    ("post", "/reauthenticate/options"),
    ("put", "/user/password"),
    ("get", "/user/{user_id}"),
    ("delete", "/user/{user_id}"),
    ("get", "/store"),
    ("post", "/store"),
    ("get", "/store/{store_id}"),
    ("delete", "/store/{store_id}"),
    ("get", "/item"),
    ("post", "/item"),
    ("get", "/item/{item_id}"),
    ("put", "/item/{item_id}"),
    ("delete", "/item/{item_id}"),
    ("get", "/store/{store_id}/tag"),
    ("post", "/store/{store_id}/tag"),
    ("post", "/item/{item_id}/tag/{tag_id}"),
    ("delete", "/item/{item_id}/tag/{tag_id}"),
    ("get", "/tag/{tag_id}"),
    ("delete", "/tag/{tag_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "delete", "patch"}:
                yield method, path, operation


def test_spec_declares_the_bearer_scheme(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_every_operation_has_a_summary_and_the_right_security(spec):
    operations = list(_operations(spec))
    assert {(method, path) for method, path, _ in operations} == OPERATIONS
    for method, path, operation in operations:
        assert operation.get("summary"), (method, path)
        if (method, path) in PUBLIC_OPERATIONS:
            assert operation["security"] == [], (method, path)
        else:
            assert operation["security"] == [
                {"bearerAuth": []},
                {"oauth2": []},
                {"dpop": []},
            ], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_the_dpop_scheme_and_its_proof_header_are_described(spec):
    """RFC 9449 §7.1's scheme, and the proof header (§4.1) on every operation that
    takes a token or issues one; never on another public one."""
    scheme = spec["components"]["securitySchemes"]["dpop"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "DPoP")
    assert "DPoP proof" in scheme["description"]
    parameter = spec["components"]["parameters"]["DPoP"]
    assert (parameter["in"], parameter["required"]) == ("header", False)
    assert "RFC 9449" in parameter["description"]
    reference = {"$ref": "#/components/parameters/DPoP"}
    issuers = {("post", path) for path in ("/login", "/login/mfa", "/token")}
    issuers |= {("post", "/login/passkey"), ("post", "/revoke")}
    for method, path, operation in _operations(spec):
        reads_proofs = (method, path) not in PUBLIC_OPERATIONS or (
            (method, path) in issuers
        )
        assert (reference in operation.get("parameters", [])) == reads_proofs, (
            method,
            path,
        )


def test_error_responses_use_the_envelope_schema(spec):
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {
        "code",
        "status",
        "message",
        "error",
        "errors",
        "error_description",
    }
    for method, path, operation in _operations(spec):
        assert "default" in operation["responses"], (method, path)
    item = spec["paths"]["/item/{item_id}"]
    assert {"401", "404"} <= set(item["get"]["responses"])
    assert {"401", "403", "404"} <= set(item["delete"]["responses"])
    assert "409" in spec["paths"]["/register"]["post"]["responses"]


def test_lists_document_pagination(spec):
    for path in ("/store", "/item", "/store/{store_id}/tag"):
        get = spec["paths"][path]["get"]
        names = {p["name"] for p in get["parameters"] if "name" in p}
        assert {"page", "page_size"} <= names, path
        assert "X-Pagination" in get["responses"]["200"]["headers"], path


def test_swagger_ui_loads_its_assets_from_the_app(client):
    response = client.get("/swagger-ui")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '"/openapi.json"' in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, html
    # Every script is a file of the app's own: no CDN, and no inline script that
    # the Content-Security-Policy would block.
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == [], html
    for source in sources:
        assert source.startswith(("/swagger-ui-assets/", "/static/")), source
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.data) > 200, source
        asset.close()


def test_revocation_takes_form_or_json_and_documents_invalid_request(spec):
    operation = spec["paths"]["/revoke"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/x-www-form-urlencoded", "application/json"}
    schema = spec["components"]["schemas"]["Revocation"]
    assert schema["required"] == ["token"]
    assert set(schema["properties"]) == {"token", "token_type_hint"}
    assert {"200", "400", "413", "429", "503"} <= set(operation["responses"])
    assert "invalid_request" in operation["responses"]["400"]["description"]


def test_the_session_operations_document_their_answers(spec):
    listing = spec["paths"]["/me/sessions"]["get"]["responses"]["200"]
    assert listing["content"]["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/Session"
    }
    session = spec["components"]["schemas"]["Session"]["properties"]
    assert set(session) == SESSION_FIELDS
    assert session["expires_at"]["format"] == "date-time"
    end_one = spec["paths"]["/me/sessions/{session_id}"]["delete"]["responses"]
    assert {"200", "401", "404", "503"} <= set(end_one)


def test_a_new_api_token_links_to_its_revocation(spec):
    created = spec["paths"]["/me/api-tokens"]["post"]["responses"]["201"]
    (link,) = created["links"].values()
    assert link["operationRef"] == "#/paths/~1me~1api-tokens~1{token_id}/delete"
    assert link["parameters"] == {"token_id": "$response.body#/id"}
    assert "token" in created["content"]["application/json"]["schema"]["$ref"].lower()


def test_a_response_with_links_keeps_its_schema(spec):
    linked = [
        (method, path, status, response)
        for method, path, operation in _operations(spec)
        for status, response in operation["responses"].items()
        if "links" in response
    ]
    assert len(linked) >= 3  # /register, /store, /me/api-tokens at least
    for method, path, status, response in linked:
        assert "schema" in response["content"]["application/json"], (method, path)
        assert response["description"], (method, path, status)
