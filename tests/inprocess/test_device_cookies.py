"""Device cookies (auth/devices.py): what a successful login sets, where it is
sent, that it cannot be forged, and that it rotates with the signing keys.

A cookie is trusted when the owner still gets in after a stranger has spent the
per-username budget (4 failures here, one from each of 4 addresses); an untrusted
one gets the 429 everyone else gets.
"""

import time

import jwt
import pytest
from sqlalchemy.exc import OperationalError

from app import create_app
from auth.keys import generate_private_key, write_private_key
from core import db
from models import UserModel
from tests.helpers import PASSWORD, TEST_SETTINGS, assert_error, set_cookies

BUDGETS = {
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_LOGIN": "100 per minute",
    "RATELIMIT_LOGIN_USERNAME": "2 per minute",
    "RATELIMIT_LOGIN_USERNAME_TOTAL": "4 per hour",
}
DEVICE_COOKIE = "login_device"
HALF_A_YEAR = 180 * 24 * 3600
CREDENTIALS = {"username": "alice", "password": PASSWORD}
OTHER_SECRET = "another-secret-of-at-least-32-bytes-0123456789"


@pytest.fixture
def app_config(request, app_config):
    """The base config, these budgets, and what `parametrize(indirect=True)` adds."""
    return {**app_config, **BUDGETS, **getattr(request, "param", {})}


def config(**overrides):
    return pytest.mark.parametrize("app_config", [overrides], indirect=True)


def device_lines(response) -> list[str]:
    """The Set-Cookie lines of the device cookie."""
    return [
        line
        for line in response.headers.getlist("Set-Cookie")
        if line.startswith(DEVICE_COOKIE + "=")
    ]


def attributes(line: str) -> dict[str, str]:
    """A Set-Cookie line's attributes (lower-case names; flags map to '')."""
    parts = [part.strip() for part in line.split(";")[1:]]
    return {name.lower(): value for name, _, value in (p.partition("=") for p in parts)}


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def spend_the_username_budget(app, username="alice"):
    stranger = app.test_client()
    for i in range(1, 5):
        response = stranger.post(
            "/login",
            json={"username": username, "password": "wrong horse battery"},
            environ_base={"REMOTE_ADDR": f"203.0.113.{i}"},
        )
        assert response.status_code == 401, response.get_json()


def owner_login(app, device: str | None):
    """The owner's correct password from a new address, with `device` as the
    device cookie (None: none)."""
    client = app.test_client()
    if device is not None:
        client.set_cookie(DEVICE_COOKIE, device, path="/login")
    return client.post(
        "/login", json=CREDENTIALS, environ_base={"REMOTE_ADDR": "192.0.2.77"}
    )


def issued_device(client) -> str:
    """Log alice in: the device cookie that login set."""
    response = client.post("/login", json=CREDENTIALS)
    assert response.status_code == 200, response.get_json()
    line = device_lines(response)[0]
    return cookie_value(line)


@pytest.mark.parametrize("delivery", ["body", "cookie"])
def test_a_successful_login_sets_a_device_cookie_for_the_login_routes(
    auth, client, delivery
):
    auth.register("alice")

    response = client.post("/login", json={**CREDENTIALS, "token_delivery": delivery})

    assert response.status_code == 200, response.get_json()
    lines = device_lines(response)
    assert [attributes(line)["path"] for line in lines] == [
        "/login",
        "/token",
        "/reauthenticate",
        "/user/password",
    ]
    assert len({cookie_value(line) for line in lines}) == 1
    for line in lines:
        found = attributes(line)
        assert found["max-age"] == str(HALF_A_YEAR)
        assert "httponly" in found
        assert found["samesite"] == "Strict"
        assert "secure" not in found  # local http outside production
    claims = jwt.decode(cookie_value(lines[0]), options={"verify_signature": False})
    assert claims["aud"] == "stores-api:device"
    assert (claims["sub"], claims["type"], claims["iss"]) == (
        "1",
        "device",
        "stores-api",
    )
    assert claims["exp"] - claims["iat"] == HALF_A_YEAR
    assert set(claims) == {"iss", "aud", "sub", "jti", "type", "iat", "exp", "cred"}
    assert jwt.get_unverified_header(cookie_value(lines[0]))["kid"].startswith("hs-")


def test_each_success_sets_a_new_device_id_and_a_failure_sets_none(auth, client):
    auth.register("alice")
    first = jwt.decode(issued_device(client), options={"verify_signature": False})
    second = jwt.decode(issued_device(client), options={"verify_signature": False})
    assert first["jti"] != second["jti"]

    failed = client.post("/login", json={**CREDENTIALS, "password": "wrong one"})

    assert failed.status_code == 401
    assert device_lines(failed) == []


def test_the_password_grant_sets_it_too(auth, client):
    auth.register("alice")

    response = client.post("/token", data={"grant_type": "password", **CREDENTIALS})

    assert response.status_code == 200, response.get_json()
    assert len(device_lines(response)) == 4


@config(
    JWT_COOKIE_SECURE=True,
    JWT_COOKIE_SAMESITE="Lax",
    DEVICE_COOKIE_MAX_AGE=3600,
)
def test_it_follows_the_cookie_settings(auth, client):
    auth.register("alice")

    response = client.post("/login", json=CREDENTIALS)

    for line in device_lines(response):
        found = attributes(line)
        assert "secure" in found
        assert found["samesite"] == "Lax"
        assert found["max-age"] == "3600"


def test_under_a_mount_path_it_goes_to_the_login_routes_there(auth, client):
    auth.register("alice")

    response = client.post(
        "/login", json=CREDENTIALS, environ_overrides={"SCRIPT_NAME": "/api"}
    )

    assert response.status_code == 200, response.get_json()
    paths = [attributes(line)["path"] for line in device_lines(response)]
    assert paths == [
        "/api/login",
        "/api/token",
        "/api/reauthenticate",
        "/api/user/password",
    ]
    assert set(set_cookies(response)) == {DEVICE_COOKIE}


def _forge(real: str, secret: str, **changes) -> str:
    """`real` re-signed with `secret` under its own kid, with `changes`."""
    claims = {**jwt.decode(real, options={"verify_signature": False}), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    kid = jwt.get_unverified_header(real)["kid"]
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


def _tampered(real: str) -> str:
    """`real` with one character of its signature changed."""
    header, payload, signature = real.split(".")
    middle = len(signature) // 2
    changed = "A" if signature[middle] != "A" else "B"
    return ".".join(
        [header, payload, signature[:middle] + changed + signature[middle + 1 :]]
    )


SECRET = TEST_SETTINGS["JWT_SECRET_KEY"]
FORGERIES = {
    "tampered": lambda real, _: _tampered(real),
    "another secret": lambda real, _: _forge(real, OTHER_SECRET),
    "expired": lambda real, _: _forge(real, SECRET, exp=int(time.time()) - 60),
    "another type": lambda real, _: _forge(real, SECRET, type="access"),
    "a subject not an id": lambda real, _: _forge(real, SECRET, sub="01"),
    "no credential tag": lambda real, _: _forge(real, SECRET, cred=None),
    "another account's id": lambda real, _: _forge(real, SECRET, sub="2"),
    "alg none": lambda real, _: jwt.encode(
        jwt.decode(real, options={"verify_signature": False}), None, algorithm="none"
    ),
    "an access token": lambda _, access: access,
    "not a JWT": lambda *_: "not-a-jwt",
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_or_foreign_device_cookie_is_an_unknown_device(
    auth, app, client, forgery
):
    auth.register("alice")
    auth.register("bob")
    real = issued_device(client)
    access = auth.login("alice")["access_token"]
    assert owner_login(app, real).status_code == 200  # the real one is trusted
    spend_the_username_budget(app)
    assert owner_login(app, real).status_code == 200

    response = owner_login(app, FORGERIES[forgery](real, access))

    assert_error(response, 429, "rate_limited")


def test_a_username_that_names_no_account_has_no_known_device(auth, app, client):
    auth.register("alice")
    real = issued_device(client)
    spend_the_username_budget(app, "not a name!")
    client = app.test_client()
    client.set_cookie(DEVICE_COOKIE, real, path="/login")

    response = client.post(
        "/login", json={"username": "not a name!", "password": PASSWORD}
    )

    assert_error(response, 429, "rate_limited")


def _failing_lookups(monkeypatch, *failing: int) -> None:
    """UserModel.find_by_username raises on these calls (1-based) of a request."""
    real = UserModel.find_by_username.__func__
    calls = []

    def find_by_username(cls, username):
        calls.append(username)
        if len(calls) in failing:
            raise OperationalError("SELECT", {}, Exception("connection lost"))
        return real(cls, username)

    monkeypatch.setattr(UserModel, "find_by_username", classmethod(find_by_username))


def test_a_database_error_makes_the_device_unknown_and_nothing_worse(
    auth, app, client, monkeypatch
):
    """The device check runs before the login: if the account cannot be read, the
    device is unknown (the spent budget holds); the login itself answers for the
    database. After a success, no cookie beats a failed request."""
    auth.register("alice")
    real = issued_device(client)
    spend_the_username_budget(app)
    _failing_lookups(monkeypatch, 1)

    assert_error(owner_login(app, real), 429, "rate_limited")

    monkeypatch.undo()
    _failing_lookups(monkeypatch, 3)  # the device check, the login, the new cookie
    response = owner_login(app, real)
    assert response.status_code == 200, response.get_json()
    assert device_lines(response) == []


def _app(tmp_path, **settings):
    app = create_app(
        {
            **TEST_SETTINGS,
            **BUDGETS,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'devices.db'}",
            **settings,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def test_device_cookies_are_signed_by_the_current_key_and_rotate_with_it(tmp_path):
    old, new = (str(tmp_path / f"{name}.pem") for name in ("old", "new"))
    write_private_key(generate_private_key("EdDSA"), old)
    write_private_key(generate_private_key("ES256"), new)
    before = _app(tmp_path, JWT_ALGORITHM="EdDSA", JWT_PRIVATE_KEY_FILE=old)
    before.test_client().post("/register", json=CREDENTIALS)
    device = issued_device(before.test_client())
    assert jwt.get_unverified_header(device)["alg"] == "EdDSA"

    rotated = _app(
        tmp_path,
        JWT_ALGORITHM="ES256",
        JWT_PRIVATE_KEY_FILE=new,
        JWT_PUBLIC_KEY_FALLBACK_FILES=[old],
    )
    spend_the_username_budget(rotated)
    response = owner_login(rotated, device)  # the old key still verifies
    assert response.status_code == 200, response.get_json()
    renewed = cookie_value(device_lines(response)[0])
    assert jwt.get_unverified_header(renewed)["alg"] == "ES256"

    dropped = _app(tmp_path, JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY_FILE=new)
    spend_the_username_budget(dropped)
    assert_error(owner_login(dropped, device), 429, "rate_limited")
    assert owner_login(dropped, renewed).status_code == 200
