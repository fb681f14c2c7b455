"""Every HTTP error status has a machine-readable `error` of its own in the
envelope: the documented ones, and for any other its RFC 9110 name in snake case."""

import http
import re

import pytest
from flask import abort
from werkzeug.exceptions import default_exceptions

from tests.helpers import assert_error

SNAKE_CASE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
# What docs/api.md's table of errors documents, and what RFC 9110 names 416.
DOCUMENTED = {
    400: "bad_request",
    401: "authorization_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    416: "range_not_satisfiable",
    422: "validation_error",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
}
NAMED = {
    406: "not_acceptable",
    412: "precondition_failed",
    418: "im_a_teapot",
    451: "unavailable_for_legal_reasons",
    505: "http_version_not_supported",
}


@pytest.fixture
def app_config(app_config):
    """Unhandled exceptions reach the error handlers, as in production."""
    return {**app_config, "PROPAGATE_EXCEPTIONS": False}


@pytest.mark.parametrize("path", ["/static/swagger-initializer.js", "/demo/demo.js"])
def test_a_range_past_the_end_is_416_range_not_satisfiable(client, path):
    with client.get(path) as whole:
        assert whole.status_code == 200
        size = len(whole.get_data())

    response = client.get(path, headers={"Range": f"bytes={size + 10}-"})

    body = assert_error(response, 416, "range_not_satisfiable")
    assert body == {
        "code": 416,
        "status": "Requested Range Not Satisfiable",
        "message": "The server cannot provide the requested range.",
        "error": "range_not_satisfiable",
    }
    # RFC 9110 §15.5.17: the representation's length, for the next try.
    assert response.headers["Content-Range"] == f"bytes */{size}"


def named(code: int) -> str:
    """A status's reason phrase, word for word in snake case."""
    phrase = http.HTTPStatus(code).phrase.lower().replace("'", "")
    return "_".join(re.findall(r"[a-z0-9]+", phrase))


@pytest.mark.parametrize("code", sorted(default_exceptions))
def test_every_werkzeug_error_has_its_own_snake_case_code(app, client, code):
    app.add_url_rule(f"/abort/{code}", f"abort_{code}", lambda: abort(code))

    response = client.get(f"/abort/{code}")

    expected = DOCUMENTED.get(code) or NAMED.get(code) or named(code)
    body = assert_error(response, code, expected)
    assert SNAKE_CASE.fullmatch(body["error"]), body
    assert body["status"] == http.HTTPStatus(code).phrase
