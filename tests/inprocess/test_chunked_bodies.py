"""Body limits for every framing: a chunked body (no Content-Length, RFC 9112
§7.1) over MAX_CONTENT_LENGTH is a 413 before any of it is acted on, on every
route; one within the limit is read whole (issue 22, finding 5).

The requests are built as gunicorn hands them over: Transfer-Encoding: chunked,
no CONTENT_LENGTH, the body already de-chunked, and `wsgi.input_terminated` set
(tests/live/test_chunked_bodies.py sends real chunks through gunicorn).
"""

import io

import pytest

from app import create_app
from core import db
from models import SessionModel, UserModel
from tests.helpers import PASSWORD, assert_error

MIB = 1024 * 1024
FORM = "application/x-www-form-urlencoded"
CREDENTIALS = f"grant_type=password&username=alice&password={PASSWORD}".replace(
    " ", "+"
).encode()


def send_chunked(client, method: str, path: str, body: bytes, content_type: str):
    return client.open(
        path,
        method=method,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def padded(start: bytes, size: int, end: bytes = b"") -> bytes:
    """`start` + x... + `end`, `size` bytes in all."""
    return start + b"x" * (size - len(start) - len(end)) + end


def assert_413(response) -> None:
    assert_error(
        response,
        413,
        "payload_too_large",
        f"The request body is larger than {MIB} bytes.",
    )


def count(model) -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(model))


@pytest.mark.parametrize("size", [MIB + 1, 2 * MIB])
def test_a_chunked_form_over_the_limit_issues_no_tokens(app, client, auth, size):
    assert auth.register().status_code == 201

    response = send_chunked(
        client, "POST", "/token", padded(CREDENTIALS + b"&pad=", size), FORM
    )

    assert_413(response)
    with app.app_context():
        assert count(SessionModel) == 0


def test_a_chunked_form_of_exactly_the_limit_is_read_whole(client, auth):
    assert auth.register().status_code == 201

    response = send_chunked(
        client, "POST", "/token", padded(CREDENTIALS + b"&pad=", MIB), FORM
    )

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"] and body["refresh_token"]


def test_chunked_json_over_the_limit_is_a_413_not_a_400(app, client):
    body = padded(b'{"username": "bob", "password": "', 2 * MIB, b'"}')

    assert_413(send_chunked(client, "POST", "/register", body, "application/json"))
    with app.app_context():
        assert count(UserModel) == 0


def test_chunked_json_within_the_limit_is_parsed(client):
    body = b'{"username": "carol", "password": "%s"}' % PASSWORD.encode()

    response = send_chunked(client, "POST", "/register", body, "application/json")

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == "carol"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("POST", "/logout"), ("GET", "/no/such/route")],
)
def test_routes_that_never_read_the_body_refuse_it_too(client, method, path):
    assert_413(send_chunked(client, method, path, b"x" * (MIB + 1), FORM))


def test_without_a_limit_a_chunked_body_is_left_to_the_route(app_config):
    """MAX_CONTENT_LENGTH=None (Flask's own default) switches the check off."""
    app = create_app({**app_config, "MAX_CONTENT_LENGTH": None})
    response = send_chunked(
        app.test_client(), "GET", "/healthz", b"x" * (2 * MIB), FORM
    )

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    with app.app_context():
        db.engine.dispose()
