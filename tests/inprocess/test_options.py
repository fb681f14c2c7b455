"""OPTIONS (RFC 9110 §9.3.7): 204 No Content with `Allow`, no body and no
Content-Type; CORS preflights too, with flask-cors's headers when CORS_ORIGINS
allows the origin."""

import pytest

ORIGIN = "https://app.example.com"


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


def methods(response) -> set[str]:
    return {m.strip() for m in response.headers.get("Allow", "").split(",")}


def assert_no_content(response, allowed: set[str]) -> None:
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert "Content-Length" not in response.headers  # RFC 9110 §8.6, for a 204
    assert methods(response) == allowed
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/store", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/store/1", {"GET", "HEAD", "DELETE", "OPTIONS"}),
        ("/login", {"POST", "OPTIONS"}),
        ("/me", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_is_204_with_allow(client, path, allowed):
    # No token: OPTIONS describes the resource, it does not act on it.
    assert_no_content(client.options(path), allowed)


def test_options_of_an_unknown_path_is_a_404_envelope(client):
    response = client.options("/no/such/thing")

    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def preflight(client, origin: str):
    return client.options(
        "/store",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )


@pytest.mark.parametrize("app_config", [{"CORS_ORIGINS": [ORIGIN]}], indirect=True)
def test_a_cors_preflight_is_204_with_the_cors_headers(client):
    response = preflight(client, ORIGIN)

    assert_no_content(response, {"GET", "HEAD", "POST", "OPTIONS"})
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert headers["Access-Control-Max-Age"] == "600"


@pytest.mark.parametrize("app_config", [{"CORS_ORIGINS": [ORIGIN]}], indirect=True)
def test_a_preflight_from_another_origin_gets_no_cors_headers(client):
    response = preflight(client, "https://evil.example")

    assert_no_content(response, {"GET", "HEAD", "POST", "OPTIONS"})
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-")]


def test_an_options_request_refused_before_routing_keeps_its_error(client):
    response = client.options(
        "/store", data=b"x" * (1024 * 1024 + 1), content_type="text/plain"
    )

    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
