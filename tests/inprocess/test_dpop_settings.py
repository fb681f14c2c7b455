"""DPoP's settings (issue 27): the server's nonces (RFC 9449 §8), DPOP_REQUIRED,
the algorithms, the proof window, the URL a proof names behind a proxy or under
PUBLIC_URL, the metrics, and a revocation store that is down."""

import time

import pytest

from app import create_app
from auth.nonces import Nonces
from core import db
from core.settings import ConfigError, load_settings
from tests.dpop import ProofKey, bound_login
from tests.helpers import PASSWORD, assert_error, bearer, claims, config
from tests.inprocess.test_metrics import Delta, counted, only

SESSIONS = "/me/sessions"
NONCES = {"DPOP_NONCE_REQUIRED": True}


@pytest.fixture
def app_config(request, app_config) -> dict:
    return {**app_config, **getattr(request, "param", {})}


def login_with(client, key: ProofKey, nonce: str | None = None, **body):
    return client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, **body},
        headers={"DPoP": key.proof("POST", "/login", nonce=nonce)},
    )


def assert_nonce_asked(response, status: int) -> str:
    """§8: `use_dpop_nonce` with the nonce to use in DPoP-Nonce."""
    body = assert_error(response, status, "use_dpop_nonce")
    assert "DPoP-Nonce" in body["message"]
    nonce = response.headers["DPoP-Nonce"]
    assert len(nonce) == 32
    return nonce


# --- nonces ---------------------------------------------------------------------------


@config(**NONCES)
def test_a_login_without_the_servers_nonce_gets_one_and_succeeds_with_it(
    app, auth, client, key
):
    auth.register()
    refused = login_with(client, key)
    nonce = assert_nonce_asked(refused, 400)  # §8.1: the token endpoint's 400
    assert "WWW-Authenticate" not in refused.headers
    assert refused.get_json()["error_description"]
    response = login_with(client, key, nonce)
    assert response.status_code == 200, response.get_json()
    assert claims(app, response.get_json()["access_token"])["cnf"] == {"jkt": key.jkt}


@config(**NONCES)
def test_a_protected_route_asks_for_the_nonce_with_a_dpop_challenge(auth, client, key):
    auth.register()
    nonce = assert_nonce_asked(login_with(client, key), 400)
    token = login_with(client, key, nonce).get_json()["access_token"]
    response = client.get(SESSIONS, headers=key.headers("GET", SESSIONS, token))
    assert assert_nonce_asked(response, 401) == nonce
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP realm="api", error="use_dpop_nonce"')
    forged = key.headers(
        "GET",
        SESSIONS,
        token,
        nonce=nonce[:-2] + ("BB" if nonce.endswith("AA") else "AA"),
    )
    assert_nonce_asked(client.get(SESSIONS, headers=forged), 401)
    good = key.headers("GET", SESSIONS, token, nonce=nonce)
    response = client.get(SESSIONS, headers=good)
    assert response.status_code == 200
    assert "DPoP-Nonce" not in response.headers  # the current one: nothing new


@config(**NONCES)
def test_the_token_endpoint_asks_for_the_nonce_with_a_400(auth, client, key):
    auth.register()
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    response = client.post(
        "/token", data=form, headers={"DPoP": key.proof("POST", "/token")}
    )
    nonce = assert_nonce_asked(response, 400)
    response = client.post(
        "/token", data=form, headers={"DPoP": key.proof("POST", "/token", nonce=nonce)}
    )
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "DPoP"


@config(**NONCES, DPOP_NONCE_LIFETIME=60)
def test_nonces_rotate_and_a_retired_one_brings_the_next(
    auth, client, key, monkeypatch
):
    """A nonce is good in its window and the next one, which hands out the new
    nonce on the answer; two windows later it is refused."""
    auth.register()
    window = int(time.time() // 60)
    monkeypatch.setattr(Nonces, "_window", lambda _self: window)
    nonce = assert_nonce_asked(login_with(client, key), 400)
    token = login_with(client, key, nonce).get_json()["access_token"]

    monkeypatch.setattr(Nonces, "_window", lambda _self: window + 1)
    response = client.get(
        SESSIONS, headers=key.headers("GET", SESSIONS, token, nonce=nonce)
    )
    assert response.status_code == 200
    following = response.headers["DPoP-Nonce"]
    assert following != nonce

    monkeypatch.setattr(Nonces, "_window", lambda _self: window + 2)
    stale = key.headers("GET", SESSIONS, token, nonce=nonce)
    assert assert_nonce_asked(client.get(SESSIONS, headers=stale), 401) != following
    fresh = key.headers("GET", SESSIONS, token, nonce=following)
    assert client.get(SESSIONS, headers=fresh).status_code == 200


@config(**NONCES)
def test_two_apps_with_one_signing_key_accept_each_others_nonces(
    app, app_config, auth, client, key
):
    """Nonces need no store: every worker and instance derives the same ones."""
    auth.register()
    nonce = assert_nonce_asked(login_with(client, key), 400)
    other = create_app(app_config).test_client()
    assert login_with(other, key, nonce).status_code == 200


# --- DPOP_REQUIRED --------------------------------------------------------------------


@config(DPOP_REQUIRED=True)
def test_required_refuses_unbound_logins_in_the_body_but_not_cookies(auth, client):
    auth.register()
    response = client.post("/login", json={"username": "alice", "password": PASSWORD})
    body = assert_error(response, 400, "invalid_dpop_proof")
    assert "DPoP-bound sessions only" in body["error_description"]
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    assert_error(client.post("/token", data=form), 400, "invalid_dpop_proof")
    cookie = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD, "token_delivery": "cookie"},
    )
    assert cookie.status_code == 200
    assert client.get(SESSIONS, headers={"X-CSRF-TOKEN": "x"}).status_code == 200


@config(DPOP_REQUIRED=True)
def test_required_refuses_unbound_session_tokens_but_not_api_tokens(
    app, auth, client, key
):
    auth.register()
    bound = bound_login(client, key).get_json()
    created = client.post(
        "/me/api-tokens",
        json={"name": "script"},
        headers=key.headers("POST", "/me/api-tokens", bound["access_token"]),
    )
    assert created.status_code == 201, created.get_json()
    api_token = created.get_json()["token"]
    assert client.get(SESSIONS, headers=bearer(api_token)).status_code == 200

    unbound = auth.access_token("1", additional_claims={"fam": "f" * 32})
    body = assert_error(
        client.get(SESSIONS, headers=bearer(unbound)), 401, "invalid_token"
    )
    assert "DPoP-bound sessions only" in body["message"]
    refresh = auth.refresh_token("1")
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    assert_error(client.post("/token", data=form), 400, "invalid_dpop_proof")


# --- algorithms and the window --------------------------------------------------------


@config(DPOP_ALGORITHMS=["ES256"])
def test_only_the_listed_algorithms_are_accepted_and_advertised(auth, client):
    auth.register()
    response = bound_login(client, ProofKey("EdDSA"))
    body = assert_error(response, 400, "invalid_dpop_proof")
    assert "ES256" in body["error_description"]
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256"]
    token = bound_login(client, ProofKey()).get_json()["access_token"]
    challenge = client.get(SESSIONS, headers=bearer(token)).headers["WWW-Authenticate"]
    assert challenge.endswith('algs="ES256"')


@config(DPOP_PROOF_MAX_AGE=5, JWT_DECODE_LEEWAY=2)
def test_a_proof_is_good_for_the_max_age_and_the_leeway(auth, client, key):
    auth.register()
    now = int(time.time())
    for iat, good in (
        (now - 6, True),
        (now - 9, False),
        (now + 1, True),
        (now + 4, False),
    ):
        response = client.post(
            "/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"DPoP": key.proof("POST", "/login", iat=iat)},
        )
        if good:
            assert response.status_code == 200, (iat - now, response.get_json())
        else:
            body = assert_error(response, 400, "invalid_dpop_proof")
            assert "at most 5 seconds ago" in body["error_description"]


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("DPOP_ALGORITHMS", "HS256", "HS256 is not one"),
        ("DPOP_ALGORITHMS", "ES256,none", "none is not one"),
        ("DPOP_PROOF_MAX_AGE", "0", "DPOP_PROOF_MAX_AGE must be at least"),
        ("DPOP_NONCE_LIFETIME", "0", "DPOP_NONCE_LIFETIME must be at least"),
    ],
)
def test_settings_that_cannot_work_refuse_to_start(
    monkeypatch, setting, value, message
):
    monkeypatch.setenv(setting, value)
    with pytest.raises(ConfigError, match=message):
        load_settings({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


# --- the URL a proof names ------------------------------------------------------------


@config(PUBLIC_URL="https://api.example.com/api", TRUSTED_HOSTS=["localhost"])
def test_under_public_url_the_proof_names_the_public_url(auth, client, key):
    auth.register()
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"DPoP": key.proof("POST", "https://api.example.com/api/login")},
    )
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["access_token"]
    local = client.get(SESSIONS, headers=key.headers("GET", SESSIONS, token))
    body = assert_error(local, 401, "invalid_dpop_proof")
    assert body["message"].endswith("https://api.example.com/api/me/sessions")
    public = key.headers("GET", "https://api.example.com/api" + SESSIONS, token)
    assert client.get(SESSIONS, headers=public).status_code == 200


@config(TRUSTED_PROXIES=1, TRUSTED_HOSTS=["shop.example"])
def test_behind_a_trusted_proxy_the_proof_names_the_forwarded_url(auth, client, key):
    forwarded = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
        "X-Forwarded-Prefix": "/api",
    }
    client.post(
        "/register",
        json={"username": "alice", "password": PASSWORD},
        headers=forwarded,
    )
    url = "https://shop.example/api"
    response = client.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={**forwarded, "DPoP": key.proof("POST", url + "/login")},
    )
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["access_token"]
    upstream = {
        **forwarded,
        **key.headers("GET", "http://shop.example" + SESSIONS, token),
    }
    assert_error(client.get(SESSIONS, headers=upstream), 401, "invalid_dpop_proof")
    seen = {**forwarded, **key.headers("GET", url + SESSIONS, token)}
    assert client.get(SESSIONS, headers=seen).status_code == 200


# --- metrics and a store that is down -------------------------------------------------


def test_proofs_are_counted_by_outcome(auth, client, key):
    auth.register()
    token = bound_login(client, key).get_json()["access_token"]
    delta = Delta(client)
    headers = key.headers("GET", SESSIONS, token)
    assert client.get(SESSIONS, headers=headers).status_code == 200
    assert client.get(SESSIONS, headers=headers).status_code == 401  # replayed
    thief = ProofKey().headers("GET", SESSIONS, token)
    assert client.get(SESSIONS, headers=thief).status_code == 401
    bad = {**headers, "DPoP": "not-a-proof"}
    assert client.get(SESSIONS, headers=bad).status_code == 401
    assert only(delta.now(), "auth_dpop_proofs_total") == {
        counted("auth_dpop_proofs_total", outcome="valid"): 1.0,
        counted("auth_dpop_proofs_total", outcome="replayed"): 1.0,
        counted("auth_dpop_proofs_total", outcome="key_mismatch"): 1.0,
        counted("auth_dpop_proofs_total", outcome="invalid"): 1.0,
    }


def test_an_unreachable_redis_refuses_a_proof_with_503(app_config, key):
    """A proof whose single use cannot be recorded is never taken on trust."""
    app = create_app(
        {
            **app_config,
            "BLOCKLIST_BACKEND": "redis",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "REDIS_SOCKET_TIMEOUT": 0.5,
        }
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    client.post("/register", json={"username": "alice", "password": PASSWORD})
    response = bound_login(client, key)
    assert_error(
        response, 503, "service_unavailable", "The revocation store is unavailable."
    )
    with app.app_context():
        db.engine.dispose()


OLD_SECRET = "old-signing-secret-0123456789abcdefghij"
NEW_SECRET = "new-signing-secret-0123456789abcdefghij"


def test_nonces_cross_a_signing_key_rotation(app_config, key):
    """Mid-rotation (docs/keys.md), one instance signs with the new secret and the
    other with the old, each holding the other's as a fallback: each accepts the
    other's nonce, and hands out its own for the next proof."""
    rolled = create_app(
        {
            **app_config,
            **NONCES,
            "JWT_SECRET_KEY": NEW_SECRET,
            "JWT_SECRET_KEY_FALLBACKS": [OLD_SECRET],
        }
    )
    behind = create_app(
        {
            **app_config,
            **NONCES,
            "JWT_SECRET_KEY": OLD_SECRET,
            "JWT_SECRET_KEY_FALLBACKS": [NEW_SECRET],
        }
    )
    with rolled.app_context():
        db.create_all()
    new, old = rolled.test_client(), behind.test_client()
    new.post("/register", json={"username": "alice", "password": PASSWORD})
    nonce = assert_nonce_asked(login_with(new, key), 400)
    response = login_with(old, key, nonce)
    assert response.status_code == 200, response.get_json()
    assert response.headers["DPoP-Nonce"] != nonce  # its own, for the next proof
    assert login_with(new, key, response.headers["DPoP-Nonce"]).status_code == 200


def test_a_percent_encoded_path_is_named_as_the_client_sent_it(auth, client, key):
    """WSGI decodes the path; the proof names it encoded (RFC 3986 §2.1)."""
    auth.register()
    token = bound_login(client, key).get_json()["access_token"]
    for path in ("/me/sessions/caf%C3%A9", "/me/sessions/a%20b", "/me/sessions/%7Eu"):
        response = client.delete(path, headers=key.headers("DELETE", path, token))
        assert_error(response, 404, "not_found", "Session not found.")
