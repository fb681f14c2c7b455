"""Signing keys: every token names its key (`kid`) and is verified with that key
and its algorithm only; rotation keeps old tokens working while their key is a
fallback; the JWKS publishes public keys only; forged headers are refused (bad
key settings: test_key_settings.py)."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import auth.callbacks
from auth import signing_keys
from auth.keys import NO_KID, UNKNOWN_KID, WRONG_ALGORITHM, thumbprint
from tests.helpers import (
    ASYMMETRIC,
    TEST_SETTINGS,
    assert_error,
    bearer,
    header,
    key_file,
    log_in,
    make_app,
    me,
    public_file,
)

OLD_SECRET = "an-older-secret-that-still-verifies-0123456789abcdef"
JWK_MEMBERS = {"OKP": {"crv", "x"}, "EC": {"crv", "x", "y"}, "RSA": {"n", "e"}}


def kid_of(token: str) -> str:
    return header(token)["kid"]


def assert_invalid(response, message: str) -> None:
    assert_error(response, 401, "invalid_token", message)


@pytest.fixture(params=["HS256", *ASYMMETRIC])
def algorithm_settings(request, tmp_path) -> dict:
    """The settings of each algorithm in turn."""
    if request.param == "HS256":
        return {"JWT_ALGORITHM": "HS256"}
    return {
        "JWT_ALGORITHM": request.param,
        "JWT_PRIVATE_KEY_FILE": key_file(tmp_path, request.param),
    }


def test_every_token_names_its_key_and_works(tmp_path, algorithm_settings):
    app = make_app(tmp_path, **algorithm_settings)
    tokens = log_in(app)

    algorithm = algorithm_settings["JWT_ALGORITHM"]
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert header(token)["alg"] == algorithm
    with app.app_context():
        kid = app.extensions["signing_keys"].current.kid
    assert header(tokens["access_token"])["kid"] == kid
    response = me(app, tokens["access_token"])
    assert response.status_code == 200 and response.get_json()["username"] == "alice"
    refreshed = app.test_client().post(
        "/refresh", headers=bearer(tokens["refresh_token"])
    )
    assert refreshed.status_code == 200
    assert header(refreshed.get_json()["access_token"])["kid"] == kid


def test_the_kid_of_an_asymmetric_key_is_its_rfc7638_thumbprint(tmp_path):
    # RFC 7638 §3.1's example key and thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhD"
        "R1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6C"
        "f0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1"
        "n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1"
        "jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(base64.urlsafe_b64decode("AQAB"), "big"),
        int.from_bytes(base64.urlsafe_b64decode(n + "=="), "big"),
    )
    assert thumbprint(numbers.public_key()) == (
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    )


def test_a_secrets_kid_reveals_nothing_of_it(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        kid = app.extensions["signing_keys"].current.kid
    secret = TEST_SETTINGS["JWT_SECRET_KEY"]
    assert kid.startswith("hs-") and len(kid) == 25
    assert kid[3:] not in base64.urlsafe_b64encode(secret.encode()).decode()
    plain = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
    assert kid[3:] not in plain.decode()  # keyed, not a plain hash
    other = make_app(tmp_path, JWT_SECRET_KEY="x" * 40)
    with other.app_context():
        assert other.extensions["signing_keys"].current.kid != kid


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_the_jwks_publishes_the_public_keys_only(tmp_path, algorithm):
    old = key_file(tmp_path, "ES256", "old")
    app = make_app(
        tmp_path,
        JWT_ALGORITHM=algorithm,
        JWT_PRIVATE_KEY_FILE=key_file(tmp_path, algorithm),
        JWT_PUBLIC_KEY_FALLBACK_FILES=[public_file(tmp_path, old)],
        JWT_SECRET_KEY_FALLBACKS=[OLD_SECRET],
    )
    response = app.test_client().get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    keys = response.get_json()["keys"]
    assert [key["alg"] for key in keys] == [algorithm, "ES256"]  # current first
    with app.app_context():
        current = app.extensions["signing_keys"].current.kid
    assert keys[0]["kid"] == current
    for key in keys:
        assert set(key) == {"kid", "kty", "alg", "use"} | JWK_MEMBERS[key["kty"]]
        assert key["use"] == "sig"
        assert "d" not in key and "p" not in key  # no private part
        # Each verifies what it names: PyJWT reads it back as a public key.
        assert jwt.PyJWK(key).key_id == key["kid"]
    assert OLD_SECRET not in response.get_data(as_text=True)


def test_with_secrets_only_the_jwks_is_empty(tmp_path):
    app = make_app(tmp_path, JWT_SECRET_KEY_FALLBACKS=[OLD_SECRET])
    response = app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.get_json() == {"keys": []}


def test_the_server_metadata_names_the_endpoints(tmp_path):
    app = make_app(
        tmp_path,
        JWT_ENCODE_ISSUER="https://api.example.com",
        PUBLIC_URL="https://api.example.com",
    )
    response = app.test_client().get(
        "/.well-known/oauth-authorization-server", base_url="https://api.example.com"
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.get_json() == {
        "issuer": "https://api.example.com",
        "token_endpoint": "https://api.example.com/token",
        "revocation_endpoint": "https://api.example.com/revoke",
        "jwks_uri": "https://api.example.com/.well-known/jwks.json",
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "dpop_signing_alg_values_supported": [
            "ES256",
            "ES384",
            "EdDSA",
            "RS256",
            "PS256",
        ],
    }


# --- rotation -------------------------------------------------------------------


def test_a_rotated_secret_keeps_old_tokens_until_it_is_dropped(tmp_path):
    before = make_app(tmp_path, JWT_SECRET_KEY=OLD_SECRET)
    old = log_in(before)

    new_secret = "the-new-secret-that-signs-from-now-on-0123456789abcdef"
    during = make_app(
        tmp_path,
        JWT_SECRET_KEY=new_secret,
        JWT_SECRET_KEY_FALLBACKS=[OLD_SECRET],
    )
    assert me(during, old["access_token"]).status_code == 200
    refreshed = during.test_client().post(
        "/refresh", headers=bearer(old["refresh_token"])
    )
    assert refreshed.status_code == 200, refreshed.get_json()
    new = refreshed.get_json()
    assert header(new["access_token"])["kid"] != header(old["access_token"])["kid"]

    after = make_app(tmp_path, JWT_SECRET_KEY=new_secret)
    assert_invalid(me(after, old["access_token"]), UNKNOWN_KID)
    assert me(after, new["access_token"]).status_code == 200
    # The fallback verifies, and signs nothing: the new token has the new key's kid.
    with during.app_context():
        assert header(new["access_token"])["kid"] == signing_keys().current.kid


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_a_rotated_key_keeps_old_tokens_until_it_is_dropped(tmp_path, algorithm):
    first, second = (
        key_file(tmp_path, algorithm, "a"),
        key_file(tmp_path, algorithm, "b"),
    )
    before = make_app(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=first)
    old = log_in(before)

    during = make_app(
        tmp_path,
        JWT_ALGORITHM=algorithm,
        JWT_PRIVATE_KEY_FILE=second,
        JWT_PUBLIC_KEY_FALLBACK_FILES=[public_file(tmp_path, first)],
    )
    assert me(during, old["access_token"]).status_code == 200
    refreshed = during.test_client().post(
        "/refresh", headers=bearer(old["refresh_token"])
    )
    assert refreshed.status_code == 200, refreshed.get_json()
    new = refreshed.get_json()

    after = make_app(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=second)
    assert_invalid(me(after, old["access_token"]), UNKNOWN_KID)
    assert me(after, new["access_token"]).status_code == 200


def test_moving_from_hs256_to_eddsa_keeps_the_hs256_tokens(tmp_path):
    before = make_app(tmp_path, JWT_SECRET_KEY=OLD_SECRET)
    old = log_in(before)
    eddsa = {
        "JWT_ALGORITHM": "EdDSA",
        "JWT_PRIVATE_KEY_FILE": key_file(tmp_path, "EdDSA"),
    }

    during = make_app(tmp_path, JWT_SECRET_KEY_FALLBACKS=[OLD_SECRET], **eddsa)
    assert me(during, old["access_token"]).status_code == 200
    refreshed = during.test_client().post(
        "/refresh", headers=bearer(old["refresh_token"])
    )
    assert refreshed.status_code == 200
    assert header(refreshed.get_json()["access_token"])["alg"] == "EdDSA"
    assert (
        during.test_client().get("/.well-known/jwks.json").get_json()["keys"][0]["alg"]
        == "EdDSA"
    )

    after = make_app(tmp_path, **eddsa)
    assert_invalid(me(after, old["access_token"]), UNKNOWN_KID)


def test_the_claims_cache_never_outlives_a_dropped_key(tmp_path):
    """The cache is the app's own: a restart without the key refuses the token the
    old process had cached (the cache size is on in TEST_SETTINGS' defaults)."""
    before = make_app(tmp_path, JWT_SECRET_KEY=OLD_SECRET)
    assert before.config["JWT_VERIFIED_CLAIMS_CACHE_SIZE"] > 0
    old = log_in(before)
    assert me(before, old["access_token"]).status_code == 200  # now cached
    after = make_app(tmp_path, JWT_SECRET_KEY="y" * 48)
    assert_invalid(me(after, old["access_token"]), UNKNOWN_KID)
    assert me(before, old["access_token"]).status_code == 200


# --- forgeries ------------------------------------------------------------------


def forged(claims_from: str, header_: dict, signing_input_key, algorithm) -> str:
    """The claims of a real token, re-signed under another header."""
    claims = jwt.decode(claims_from, options={"verify_signature": False})
    return jwt.encode(claims, signing_input_key, algorithm=algorithm, headers=header_)


def test_a_token_without_a_kid_is_refused(tmp_path):
    app = make_app(tmp_path)
    token = log_in(app)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    unnamed = jwt.encode(claims, TEST_SETTINGS["JWT_SECRET_KEY"], algorithm="HS256")
    assert "kid" not in header(unnamed)
    assert_invalid(me(app, unnamed), NO_KID)


def test_an_unknown_kid_is_refused(tmp_path):
    app = make_app(tmp_path)
    token = log_in(app)["access_token"]
    other = forged(
        token, {"kid": "hs-unknown"}, TEST_SETTINGS["JWT_SECRET_KEY"], "HS256"
    )
    assert_invalid(me(app, other), UNKNOWN_KID)


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_an_hs256_token_signed_with_the_public_key_is_refused(tmp_path, algorithm):
    """Algorithm confusion (RFC 8725 §2.1): the public key, which anyone may read in
    the JWKS, used as an HMAC secret under the key's own kid."""
    path = key_file(tmp_path, algorithm)
    app = make_app(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=path)
    token = log_in(app)["access_token"]
    with open(public_file(tmp_path, path), "rb") as file:
        public_pem = file.read()
    kid = header(token)["kid"]
    claims = jwt.decode(token, options={"verify_signature": False})
    # PyJWT itself refuses a PEM as an HMAC secret; sign by hand, as an attacker would.
    head = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()
    ).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, head + b"." + body, hashlib.sha256).digest()
    ).rstrip(b"=")
    confused = b".".join((head, body, signature)).decode()

    assert_invalid(me(app, confused), WRONG_ALGORITHM)


def test_alg_none_with_a_real_kid_is_refused(tmp_path):
    app = make_app(tmp_path)
    token = log_in(app)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    none = jwt.encode(
        claims, None, algorithm="none", headers={"kid": header(token)["kid"]}
    )
    assert_invalid(me(app, none), WRONG_ALGORITHM)


def test_a_token_of_one_algorithm_is_not_verified_under_another_keys_kid(tmp_path):
    """An EdDSA key and an HS256 fallback: a token naming the EdDSA kid with HS256
    (signed with the fallback secret) is refused."""
    app = make_app(
        tmp_path,
        JWT_ALGORITHM="EdDSA",
        JWT_PRIVATE_KEY_FILE=key_file(tmp_path, "EdDSA"),
        JWT_SECRET_KEY_FALLBACKS=[OLD_SECRET],
    )
    token = log_in(app)["access_token"]
    mixed = forged(token, {"kid": header(token)["kid"]}, OLD_SECRET, "HS256")
    assert_invalid(me(app, mixed), WRONG_ALGORITHM)


def test_a_cached_token_is_not_verified_again_whatever_its_algorithm(
    tmp_path, algorithm_settings, monkeypatch
):
    """Why an asymmetric key costs an authenticated read (case 1 of bench/run.py)
    nothing after a token's first request: the verified-claims cache skips the
    signature check, and with it the key lookup, on every later request."""
    app = make_app(tmp_path, **algorithm_settings)
    token = log_in(app)["access_token"]
    assert me(app, token).status_code == 200  # verified, and cached
    looked_up = []
    real = auth.callbacks.verifying_key
    monkeypatch.setattr(
        auth.callbacks, "verifying_key", lambda h: looked_up.append(h) or real(h)
    )

    for _ in range(3):
        assert me(app, token).status_code == 200
    assert looked_up == []
    other = log_in(app)["access_token"]  # a new token is verified in full, once
    for _ in range(3):
        assert me(app, other).status_code == 200
    assert [header["kid"] for header in looked_up] == [kid_of(other)]
