"""Defences: rate limits, trusted proxies, security headers, CORS, request ids,
access and audit logs, timing-safe login, password limits, no-store token answers."""

import json
import logging
import re
import statistics
import time

import pytest

from auth import passwords
from core.telemetry.logs import JSONFormatter
from tests.helpers import NEW_PASSWORD, PASSWORD, assert_error, bearer

# Small limits, switched on: rate-limit tests exhaust them in a few requests.
LIMITS = {
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_LOGIN": "3 per minute",
    "RATELIMIT_LOGIN_USERNAME": "2 per minute",
    "RATELIMIT_REGISTER": "2 per minute",
    "RATELIMIT_REFRESH": "2 per minute",
}
ALLOWED_ORIGIN = "https://app.example.com"
CORS = {"CORS_ORIGINS": [ALLOWED_ORIGIN]}
WRONG_PASSWORD = "wrong horse battery"
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
HEX_ID = re.compile(r"[0-9a-f]{32}")
INVALID_CREDENTIALS = {
    "code": 401,
    "status": "Unauthorized",
    "message": "Invalid credentials.",
    "error": "invalid_credentials",
}


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


def config(**overrides):
    """Run a test on an app built with these overrides."""
    return pytest.mark.parametrize("app_config", [overrides], indirect=True)


def limited(**overrides):
    """Run a test with rate limiting on (small limits, then these overrides)."""
    return config(**{**LIMITS, **overrides})


def login(client, username="alice", password=PASSWORD, *, addr=None, headers=None):
    """POST /login, optionally from another client address."""
    return client.post(
        "/login",
        json={"username": username, "password": password},
        headers=headers or {},
        environ_base={"REMOTE_ADDR": addr} if addr else {},
    )


def register(client, username="alice", password=PASSWORD, *, addr=None):
    return client.post(
        "/register",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": addr} if addr else {},
    )


def assert_invalid_credentials(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json() == INVALID_CREDENTIALS


def assert_rate_limited(response) -> dict:
    """429 in the envelope (nothing else in it) with a positive Retry-After."""
    body = assert_error(response, 429, "rate_limited")
    assert set(body) == {"code", "status", "message", "error"}
    assert body["status"] == "Too Many Requests"
    retry_after = response.headers.get("Retry-After", "")
    assert re.fullmatch(r"[1-9][0-9]*", retry_after), retry_after
    assert int(retry_after) <= 61  # the limits here are per minute
    assert_security_headers(response)
    return body


def assert_security_headers(response):
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy") == "no-referrer"
    assert headers.get("X-Frame-Options") == "DENY"
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp
    assert "Server" not in headers


def records(caplog, logger: str, event: str | None = None) -> list:
    return [
        r
        for r in caplog.records
        if r.name == logger and (event is None or getattr(r, "event", None) == event)
    ]


def header_tokens(value: str) -> set[str]:
    """A comma-separated header as a set of lower-case items."""
    return {item.strip().lower() for item in value.split(",") if item.strip()}


# --- Rate limits -------------------------------------------------------------


@limited()
def test_login_is_limited_per_client_address(client, caplog):
    caplog.set_level(logging.INFO)
    # Different usernames: only the per-address limit (3 per minute) applies.
    for i in range(3):
        assert_invalid_credentials(login(client, f"nobody{i}"))

    response = login(client, "nobody3", headers={"X-Request-ID": "over-the-limit"})

    body = assert_rate_limited(response)
    assert "3 per 1 minute" in body["message"]
    assert response.headers["X-Request-ID"] == "over-the-limit"
    # Another address has its own counter.
    assert_invalid_credentials(login(client, "nobody4", addr="10.0.0.9"))
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "127.0.0.1"
    assert hit.request_id == "over-the-limit"
    assert hit.user_id is None
    assert hit.levelno >= logging.INFO


@limited()
def test_failed_logins_are_limited_per_username_and_client_address(
    client, auth, caplog
):
    caplog.set_level(logging.INFO)
    assert auth.register().status_code == 201
    # Two failures from one address, in two spellings of the name...
    assert_invalid_credentials(login(client, "alice", WRONG_PASSWORD, addr="10.0.0.1"))
    assert_invalid_credentials(login(client, "ALICE", WRONG_PASSWORD, addr="10.0.0.1"))

    # ...lock the username at that address, even with the right password.
    response = login(client, "Alice", PASSWORD, addr="10.0.0.1")

    body = assert_rate_limited(response)
    assert "2 per 1 minute" in body["message"]
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "10.0.0.1"
    assert hit.request_id == response.headers["X-Request-ID"]
    # Other usernames from that address are not affected...
    assert_invalid_credentials(login(client, "bob", WRONG_PASSWORD, addr="10.0.0.1"))
    # ...nor the owner at another address: a stranger cannot lock an account out.
    response = login(client, "alice", PASSWORD, addr="10.0.0.3")
    assert response.status_code == 200, response.get_json()


@limited()
def test_successful_logins_do_not_count_towards_the_username_limit(app, client, auth):
    assert auth.register().status_code == 201
    for i in range(4):  # more than the username limit of 2, one per address
        response = login(client, addr=f"10.0.1.{i}")
        assert response.status_code == 200, response.get_json()
        assert set(response.get_json()) >= {"access_token", "refresh_token"}

    # Only failures count: two are allowed, the third attempt is refused (from a
    # client without the device cookie those logins set: test_login_budgets.py).
    stranger = app.test_client()
    for _ in range(2):
        response = login(stranger, "alice", WRONG_PASSWORD, addr="10.0.2.1")
        assert_invalid_credentials(response)
    response = login(stranger, "alice", WRONG_PASSWORD, addr="10.0.2.1")
    assert "2 per 1 minute" in assert_rate_limited(response)["message"]


@limited()
def test_register_is_limited_per_client_address(client, caplog):
    caplog.set_level(logging.INFO)
    assert register(client, "user1").status_code == 201
    assert register(client, "user2").status_code == 201

    response = register(client, "user3")

    body = assert_rate_limited(response)
    assert "2 per 1 minute" in body["message"]
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "127.0.0.1"
    assert hit.request_id == response.headers["X-Request-ID"]
    # The refused registration created nothing: user3 is still free elsewhere.
    response = register(client, "user3", addr="10.0.0.7")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == "user3"


@limited()
def test_refresh_is_limited(client, auth, caplog):
    caplog.set_level(logging.INFO)
    refresh_token = auth.user()[1]["refresh_token"]
    for _ in range(2):
        response = auth.refresh(refresh_token)
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]

    response = auth.refresh(refresh_token)

    assert_rate_limited(response)
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "127.0.0.1"
    assert hit.request_id == response.headers["X-Request-ID"]


@limited(RATELIMIT_LOGIN="1 per minute")
def test_a_client_that_waits_retry_after_seconds_is_let_in(client, monkeypatch):
    # A fake clock makes the sub-second arithmetic deterministic: the first
    # attempt at .9 of a second, the refused one at .2 of a later second.
    clock = [1_000_000.9]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    assert_invalid_credentials(login(client, "nobody0"))
    clock[0] = 1_000_001.2

    response = login(client, "nobody1")

    body = assert_rate_limited(response)
    retry_after = int(response.headers["Retry-After"])
    # The window reopens at 1_000_060.9: Retry-After must not promise earlier.
    assert clock[0] + retry_after >= 1_000_060.9, (retry_after, body["message"])
    # The envelope and the header give the same figure.
    assert body["message"].endswith(f"Retry in {retry_after} seconds."), (
        retry_after,
        body["message"],
    )
    clock[0] += retry_after
    assert_invalid_credentials(login(client, "nobody2"))


@limited(RATELIMIT_DEFAULT="3 per minute")
def test_an_app_wide_default_limit_applies_to_every_route(client, headers):
    """Only the route decorators are checked unless app-wide limits are set."""
    for _ in range(3):
        assert client.get("/store", headers=headers).status_code == 200

    assert_rate_limited(client.get("/store", headers=headers))


@limited()
def test_without_app_wide_limits_other_routes_are_not_counted(client, headers):
    for _ in range(10):
        response = client.get("/store", headers=headers)
        assert response.status_code == 200, response.get_json()


@config(**{**LIMITS, "RATELIMIT_ENABLED": False})
def test_rate_limits_can_be_switched_off(client, auth, caplog):
    caplog.set_level(logging.INFO)
    for i in range(6):
        response = register(client, f"user{i}")
        assert response.status_code == 201, response.get_json()
    for _ in range(8):
        response = login(client, "user0", WRONG_PASSWORD)
        assert_invalid_credentials(response)
        assert "Retry-After" not in response.headers
    refresh_token = auth.login("user0")["refresh_token"]
    for _ in range(5):
        response = auth.refresh(refresh_token)
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]
    assert records(caplog, "api.audit", "rate_limit_hit") == []


# --- Trusted proxies -----------------------------------------------------------


@limited()
def test_without_trusted_proxies_x_forwarded_for_is_ignored(client, caplog):
    caplog.set_level(logging.INFO)
    for i in range(3):
        response = login(
            client, f"nobody{i}", headers={"X-Forwarded-For": f"198.51.100.{i}"}
        )
        assert_invalid_credentials(response)

    response = login(client, "nobody3", headers={"X-Forwarded-For": "198.51.100.3"})

    assert_rate_limited(response)
    clients = {r.client for r in records(caplog, "api.audit")}
    assert clients == {"127.0.0.1"}
    assert {r.client for r in records(caplog, "api.request")} == {"127.0.0.1"}


@limited(TRUSTED_PROXIES=1)
def test_one_trusted_proxy_makes_the_last_hop_the_client(client, caplog):
    caplog.set_level(logging.INFO)
    # Spoofed leftmost values change nothing: the proxy appended 203.0.113.7.
    for i in range(3):
        forwarded = f"10.{i}.{i}.{i}, 203.0.113.7"
        response = login(client, f"nobody{i}", headers={"X-Forwarded-For": forwarded})
        assert_invalid_credentials(response)
    response = login(
        client, "nobody3", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}
    )
    assert_rate_limited(response)
    (hit,) = records(caplog, "api.audit", "rate_limit_hit")
    assert hit.client == "203.0.113.7"

    # A different client behind the same proxy has its own counter.
    response = login(client, "nobody4", headers={"X-Forwarded-For": "203.0.113.8"})
    assert_invalid_credentials(response)
    failures = records(caplog, "api.audit", "login_failure")
    assert [r.client for r in failures] == ["203.0.113.7"] * 3 + ["203.0.113.8"]

    response = login(client, "nobody5", headers={"X-Forwarded-For": "1.2.3.4, 5.6.7.8"})
    assert_invalid_credentials(response)
    assert records(caplog, "api.audit", "login_failure")[-1].client == "5.6.7.8"
    assert records(caplog, "api.request")[-1].client == "5.6.7.8"


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


# --- Audit log -----------------------------------------------------------------


@limited(
    RATELIMIT_LOGIN="50 per minute",
    RATELIMIT_LOGIN_USERNAME="5 per minute",
    RATELIMIT_REGISTER="1 per minute",
    RATELIMIT_REFRESH="30 per minute",
    REFRESH_REUSE_GRACE_SECONDS=0,
)
def test_audit_log_records_security_events_without_secrets(client, caplog):
    caplog.set_level(logging.INFO)
    issued: list[str] = []

    def call(method, path, rid, token=None, **kwargs):
        headers = {"X-Request-ID": rid, **(bearer(token) if token else {})}
        response = client.open(path, method=method, headers=headers, **kwargs)
        assert response.headers["X-Request-ID"] == rid
        body = response.get_json()
        if isinstance(body, dict):
            issued.extend(v for k, v in body.items() if k.endswith("_token"))
        return response

    credentials = {"username": "alice", "password": PASSWORD}
    response = call("POST", "/register", "r-register", json=credentials)
    assert response.status_code == 201
    user_id = str(response.get_json()["id"])
    wrong = {"username": "alice", "password": WRONG_PASSWORD}
    assert_invalid_credentials(call("POST", "/login", "r-login-failure", json=wrong))
    first = call("POST", "/login", "r-login-1", json=credentials).get_json()
    response = call("POST", "/refresh", "r-refresh", first["refresh_token"])
    assert response.status_code == 200
    response = call("POST", "/refresh", "r-reuse", first["refresh_token"])
    assert_error(response, 401, "token_revoked")
    second = call("POST", "/login", "r-login-2", json=credentials).get_json()
    response = call("POST", "/logout", "r-logout", second["access_token"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "Successfully logged out."}
    third = call("POST", "/login", "r-login-3", json=credentials).get_json()
    response = call("POST", "/logout/all", "r-logout-all", third["access_token"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "Logged out of every session."}
    fourth = call("POST", "/login", "r-login-4", json=credentials).get_json()
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = call(
        "PUT", "/user/password", "r-password", fourth["access_token"], json=change
    )
    assert response.status_code == 200, response.get_json()
    fresh = response.get_json()["access_token"]
    response = call("DELETE", f"/user/{user_id}", "r-delete", fresh)
    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted."}
    bob = {"username": "bob", "password": NEW_PASSWORD}
    assert_rate_limited(call("POST", "/register", "r-rate", json=bob))

    audit = records(caplog, "api.audit")
    assert [(r.event, r.request_id) for r in audit] == [
        ("register", "r-register"),
        ("login_failure", "r-login-failure"),
        ("login_success", "r-login-1"),
        ("refresh", "r-refresh"),
        ("refresh_token_reuse", "r-reuse"),
        ("login_success", "r-login-2"),
        ("logout", "r-logout"),
        ("login_success", "r-login-3"),
        ("logout_all", "r-logout-all"),
        ("login_success", "r-login-4"),
        ("password_change", "r-password"),
        ("account_deletion", "r-delete"),
        ("rate_limit_hit", "r-rate"),
    ]
    anonymous = {"login_failure", "rate_limit_hit"}
    for record in audit:
        assert record.client == "127.0.0.1", record.event
        expected = None if record.event in anonymous else user_id
        assert record.user_id == expected, record.event
    reuse = next(r for r in audit if r.event == "refresh_token_reuse")
    assert reuse.levelno == logging.WARNING
    deletion = next(r for r in audit if r.event == "account_deletion")
    assert deletion.deleted_user_id == user_id

    # No record of any logger carries a password or a token, in any field.
    assert len(issued) == 12  # pairs from 4 logins, a refresh, a password change
    secrets = [PASSWORD, WRONG_PASSWORD, NEW_PASSWORD, *issued]
    formatter = JSONFormatter()
    assert caplog.records
    for record in caplog.records:
        line = formatter.format(record)
        entry = json.loads(line)
        assert entry["logger"] == record.name
        for secret in secrets:
            assert secret not in line, (record.name, entry)
            # Token parts (header.payload.signature) must not leak either.
            for part in secret.split(".")[1:]:
                assert part not in line, (record.name, entry)


# --- Passwords: timing-safe login, length limits --------------------------------

REALISTIC_HASHING = {
    "PASSWORD_ARGON2_MEMORY_COST": 19456,
    "PASSWORD_ARGON2_TIME_COST": 2,
    "RATELIMIT_ENABLED": False,
}


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, response


@config(**REALISTIC_HASHING)
def test_unknown_username_costs_the_same_as_a_wrong_password(client, auth):
    assert auth.register().status_code == 201
    unknown = lambda: login(client, "nobody", WRONG_PASSWORD)  # noqa: E731
    wrong = lambda: login(client, "alice", WRONG_PASSWORD)  # noqa: E731
    no_hash = lambda: login(client, "alice", "x" * 257)  # noqa: E731
    for call in (unknown, wrong, no_hash):  # warm up
        call()

    durations: dict[str, list[float]] = {"unknown": [], "wrong": [], "no_hash": []}
    bodies: dict[str, list] = {"unknown": [], "wrong": []}
    for round_ in range(15):
        order = [("unknown", unknown), ("wrong", wrong), ("no_hash", no_hash)]
        if round_ % 2:
            order.reverse()
        for name, call in order:
            seconds, response = timed(call)
            durations[name].append(seconds)
            if name in bodies:
                bodies[name].append(
                    (
                        response.status_code,
                        response.get_json(),
                        response.headers.get("WWW-Authenticate"),
                    )
                )
            else:
                assert_error(response, 422, "validation_error")

    medians = {name: statistics.median(values) for name, values in durations.items()}
    ratio = medians["unknown"] / medians["wrong"]
    print(
        "timing medians (ms): "
        + ", ".join(f"{k}={v * 1000:.2f}" for k, v in medians.items())
        + f"; unknown/wrong ratio={ratio:.3f}"
    )
    expected = (401, INVALID_CREDENTIALS, 'Bearer realm="api"')
    assert bodies["unknown"] == bodies["wrong"] == [expected] * 15
    # Hashing really happens (and dominates) on both paths...
    assert medians["wrong"] >= 3 * medians["no_hash"], medians
    assert medians["unknown"] >= 3 * medians["no_hash"], medians
    # ...and the two paths cost the same, within noise.
    assert 0.75 <= ratio <= 1.33, medians


@pytest.fixture
def hash_calls(monkeypatch) -> list[str]:
    """Record every hashing operation of the password hasher."""
    calls: list[str] = []
    for name in ("hash", "verify_and_update", "dummy_verify"):
        original = getattr(passwords, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(passwords, name, spy)
    return calls


@pytest.mark.parametrize("path", ["/register", "/login"])
def test_over_long_passwords_are_refused_before_hashing(client, hash_calls, path):
    minimum = 8 if path == "/register" else 1
    response = client.post(path, json={"username": "alice", "password": "p" * 257})

    body = assert_error(response, 422, "validation_error")
    assert body["errors"] == {
        "json": {"password": [f"Length must be between {minimum} and 256."]}
    }
    assert hash_calls == []


def test_passwords_up_to_256_characters_are_hashed(client, auth, hash_calls):
    password = "p" * 256
    response = auth.register("alice", password)
    assert response.status_code == 201, response.get_json()
    assert hash_calls == ["hash"]

    assert_invalid_credentials(login(client, "alice", "q" * 256))
    assert_invalid_credentials(login(client, "nobody", "q" * 256))
    assert hash_calls == ["hash", "verify_and_update", "dummy_verify"]
    assert set(auth.login("alice", password)) >= {"access_token", "refresh_token"}


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
