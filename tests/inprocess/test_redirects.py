"""No path makes the API redirect: a `//` in a path is a 404 in the envelope, not
werkzeug's 308 to a URL built from the Host with an HTML body (issue 22, finding
3), and no route redirects for a trailing slash or a default. So no Location the
API sends can leave its host.
"""

import pytest
from flask import url_for

from tests.helpers import assert_error

# A value for each URL variable the routes have.
SAMPLE_VALUES = {
    "store_id": 1,
    "item_id": 1,
    "tag_id": 1,
    "user_id": 1,
    "token_id": 1,
    "passkey_id": 1,
    "session_id": "abc",
    "name": "demo.js",
    "filename": "swagger-ui.css",
}


def get(client, path: str):
    """GET `path` as the server received it (the test client would read a leading
    "//" as a host)."""
    return client.get("/", environ_overrides={"PATH_INFO": path, "RAW_URI": path})


def every_path(app) -> list[str]:
    """One concrete path per route of the app."""
    with app.test_request_context():
        return sorted(
            {
                url_for(
                    rule.endpoint,
                    **{name: SAMPLE_VALUES[name] for name in rule.arguments},
                )
                for rule in app.url_map.iter_rules()
            }
        )


def variants(path: str) -> list[str]:
    """The spellings werkzeug would redirect: doubled slashes, a trailing slash.
    (Leading slashes werkzeug's router drops itself: "//store" is "/store".)"""
    doubled = [path[:i] + "/" + path[i:] for i, c in enumerate(path) if c == "/"]
    return [*doubled, path + "/", path + "//", "//evil.example" + path]


@pytest.mark.parametrize(
    "path",
    [
        "/store//1",
        "//evil.example/store/1",
        "/.well-known//jwks.json",
        "/demo//demo.js",
        "/swagger-ui-assets//swagger-ui.css",
        "/static//swagger-initializer.js",
    ],
)
def test_a_double_slash_is_not_found(client, path):
    response = get(client, path)

    assert_error(response, 404, "not_found")
    assert "Location" not in response.headers


def test_no_spelling_of_any_route_redirects(app, client):
    paths = every_path(app)
    assert len(paths) > 25  # every route, not none

    for path in paths:
        for variant in variants(path):
            with get(client, variant) as response:
                assert "Location" not in response.headers, variant
                assert not 300 <= response.status_code < 400, variant
                if response.status_code >= 400:
                    assert response.is_json, variant
