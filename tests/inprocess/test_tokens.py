"""Refused tokens: every failure is a 401 envelope with an `error` and a challenge."""

import base64
import json
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import jwt
import pytest
from flask_jwt_extended import decode_token

from auth import signing_keys
from tests.helpers import assert_error, bearer

ENVELOPE_KEYS = {"code", "status", "message", "error"}
NO_TOKEN_CHALLENGE = 'Bearer realm="api"'
TOKEN_CHALLENGE = 'Bearer realm="api", error="invalid_token", error_description="'
ITEM = {"name": "x", "price": 1, "store_id": 1}

HEADER_FORMAT = (
    "The Authorization header must be 'Bearer <token>', or 'DPoP <token>' with a "
    "DPoP proof."
)
MALFORMED = "The token is malformed."
BAD_SIGNATURE = "The token's signature is invalid."
BAD_ALGORITHM = "The token is signed with an algorithm this API does not accept."
USER_GONE = "The user of this token no longer exists."
EXPIRED = "The token has expired."
REVOKED = "The token has been revoked."
NOT_FRESH = "The token is not fresh."
REFRESH_AS_ACCESS = "A refresh token was sent where an access token is required."
ACCESS_AS_REFRESH = "An access token was sent where a refresh token is required."
CURRENT = object()  # forge(): the kid of the app's current key


def assert_token_refused(response, error: str, message: str | None = None) -> dict:
    """A sent token was refused: a 401 envelope and an invalid_token challenge."""
    body = assert_error(response, 401, error, message)
    assert set(body) == ENVELOPE_KEYS, body
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(TOKEN_CHALLENGE), challenge
    assert challenge == f'{TOKEN_CHALLENGE}{body["message"]}"'
    return body


def assert_no_token(response, message: str) -> dict:
    """No bearer token was sent: 401 envelope and a bare challenge."""
    body = assert_error(response, 401, "authorization_required", message)
    assert set(body) == ENVELOPE_KEYS, body
    assert response.headers["WWW-Authenticate"] == NO_TOKEN_CHALLENGE
    return body


def payload(sub: str, **overrides) -> dict:
    """The claims of one of our access tokens, for hand-built tokens."""
    now = int(time.time())
    claims = {
        "sub": sub,
        "jti": str(uuid.uuid4()),
        "type": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "fresh": True,
        "is_admin": False,
        "iss": "stores-api",
        "aud": "stores-api",
    }
    claims.update(overrides)
    return claims


def forge(
    app, claims: dict, *, key: str | None = None, algorithm="HS256", kid=CURRENT
) -> str:
    """Sign claims with PyJWT (by default exactly as the app would: its secret,
    and the `kid` that names it)."""
    if kid is CURRENT:
        with app.app_context():
            kid = signing_keys().current.kid
    headers = None if kid is None else {"kid": kid}
    secret = key or app.config["JWT_SECRET_KEY"]
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def user(auth):
    """A registered, logged-in user: (id, token pair)."""
    return auth.user("alice")


# --- no token, or not a bearer token ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/store"), ("post", "/refresh"), ("post", "/item"), ("post", "/logout")],
)
def test_no_authorization_header(client, method, path):
    response = getattr(client, method)(path, json=ITEM)

    assert_no_token(response, "Missing Authorization header with a Bearer token.")


@pytest.mark.parametrize("header", ["Basic abc", "Token abc", "bearer"])
def test_non_bearer_authorization_header(client, header):
    response = client.get("/store", headers={"Authorization": header})

    assert_no_token(response, HEADER_FORMAT)


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer  "])
def test_malformed_bearer_header(client, header):
    """No token in the expected form: like any other header's shape."""
    response = client.get("/store", headers={"Authorization": header})

    assert_no_token(response, HEADER_FORMAT)


# --- a well-formed token of ours is accepted (the baseline for the forgeries) ------


def test_a_token_built_like_ours_is_accepted(app, client, user):
    user_id, _ = user

    response = client.get("/store", headers=bearer(forge(app, payload(str(user_id)))))

    assert response.status_code == 200
    assert response.get_json() == []


# --- expiry -------------------------------------------------------------------------


def test_expired_access_token(auth, client, user):
    user_id, _ = user
    token = auth.expired_access_token(str(user_id))

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(response, "token_expired", EXPIRED)


def test_expired_refresh_token(auth, user):
    user_id, _ = user
    token = auth.refresh_token(str(user_id), expires_delta=timedelta(minutes=-1))

    response = auth.refresh(token)

    assert_token_refused(response, "token_expired", EXPIRED)


def test_expired_hand_built_token(app, client, user):
    user_id, _ = user
    now = int(time.time())
    # Past the 5-second decode leeway.
    token = forge(
        app, payload(str(user_id), iat=now - 1200, nbf=now - 1200, exp=now - 6)
    )

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(response, "token_expired", EXPIRED)


# --- forged, tampered and malformed tokens ------------------------------------------


def test_tampered_signature(client, user):
    _, tokens = user
    header, claims, signature = tokens["access_token"].split(".")
    flipped = "".join("B" if c == "A" else "A" for c in signature[:8]) + signature[8:]
    assert flipped != signature

    response = client.get("/store", headers=bearer(f"{header}.{claims}.{flipped}"))

    assert_token_refused(response, "invalid_token", BAD_SIGNATURE)


def test_tampered_claims_do_not_grant_admin_rights(client, user):
    """Rewriting the payload (is_admin: true) breaks the signature."""
    user_id, tokens = user
    header, _, signature = tokens["access_token"].split(".")
    escalated = b64(payload(str(user_id), is_admin=True))

    response = client.delete(
        "/store/1", headers=bearer(f"{header}.{escalated}.{signature}")
    )

    assert_token_refused(response, "invalid_token", BAD_SIGNATURE)


def test_token_signed_with_another_secret(app, client, user):
    user_id, _ = user
    other_key = "another-secret-that-is-long-enough-for-hs256-0123456789"
    token = forge(app, payload(str(user_id)), key=other_key)

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(response, "invalid_token", BAD_SIGNATURE)


@pytest.mark.parametrize(
    "token",
    [
        "abc.def.ghi",
        "notajwt",
        "a.b",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.bm90anNvbg.abc",  # payload is not JSON
        "eyJhbGciOiJIUzI1NiJ9.WzFd.abc",  # payload is a JSON array
        "eyJhbGciOiJIUzI1NiJ9.!!!.abc",  # payload is not base64url
    ],
)
def test_garbage_token_is_malformed(client, token):
    response = client.get("/store", headers=bearer(token))

    assert_token_refused(response, "invalid_token", MALFORMED)


def test_alg_none_token(client, user):
    user_id, _ = user
    token = jwt.encode(payload(str(user_id)), None, algorithm="none")
    assert token.endswith(".")

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(response, "invalid_token", BAD_ALGORITHM)


def test_alg_none_header_with_a_valid_signature_is_still_refused(client, user):
    """Swapping a signed token's header to alg none must not skip verification."""
    _, tokens = user
    _, claims, signature = tokens["access_token"].split(".")
    none_header = b64({"alg": "none", "typ": "JWT"})

    response = client.get("/store", headers=bearer(f"{none_header}.{claims}."))
    assert_token_refused(response, "invalid_token", BAD_ALGORITHM)
    response = client.get(
        "/store", headers=bearer(f"{none_header}.{claims}.{signature}")
    )
    assert_token_refused(response, "invalid_token", BAD_ALGORITHM)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_algorithm_is_pinned_to_hs256(app, client, user, algorithm):
    user_id, _ = user
    token = forge(app, payload(str(user_id)), algorithm=algorithm)

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(response, "invalid_token", BAD_ALGORITHM)


# --- wrong kind of token ------------------------------------------------------------


def test_refresh_token_used_as_access_token(client, user):
    _, tokens = user

    response = client.get("/store", headers=bearer(tokens["refresh_token"]))

    assert_token_refused(response, "invalid_token", REFRESH_AS_ACCESS)


def test_refresh_token_cannot_log_out(client, user):
    _, tokens = user

    response = client.post("/logout", headers=bearer(tokens["refresh_token"]))

    assert_token_refused(response, "invalid_token", REFRESH_AS_ACCESS)


def test_access_token_used_on_refresh(auth, user):
    _, tokens = user

    response = auth.refresh(tokens["access_token"])

    assert_token_refused(response, "invalid_token", ACCESS_AS_REFRESH)


# --- revocation ---------------------------------------------------------------------


def test_revoked_access_token(client, user):
    _, tokens = user
    client.post("/logout", headers=bearer(tokens["access_token"]))

    response = client.get("/store", headers=bearer(tokens["access_token"]))

    assert_token_refused(response, "token_revoked", REVOKED)


def test_revoked_refresh_token(auth, client, user):
    _, tokens = user
    logout = client.post("/logout", headers=bearer(tokens["access_token"]))
    assert logout.status_code == 200

    response = auth.refresh(tokens["refresh_token"])

    assert_token_refused(response, "token_revoked", REVOKED)


# --- freshness ----------------------------------------------------------------------


def test_non_fresh_token_is_refused_where_a_fresh_one_is_required(auth, client, user):
    _, tokens = user
    stale = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    response = client.post("/item", json=ITEM, headers=bearer(stale))

    # The seed's error code, and RFC 9470's challenge: step up, do not refresh.
    body = assert_error(response, 401, "fresh_token_required", NOT_FRESH)
    assert set(body) == ENVELOPE_KEYS, body
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_user_authentication", '
        f'error_description="{NOT_FRESH}", max_age="900"'
    )


def test_fresh_token_passes_authentication_where_one_is_required(client, user):
    _, tokens = user

    response = client.post("/item", json=ITEM, headers=bearer(tokens["access_token"]))

    body = assert_error(
        response, 422, "validation_error", "The item's store does not exist."
    )
    assert body["errors"] == {"json": {"store_id": ["Store not found."]}}


def test_non_fresh_token_still_works_where_freshness_is_not_required(
    auth, client, user
):
    _, tokens = user
    stale = auth.refresh(tokens["refresh_token"]).get_json()["access_token"]

    assert client.get("/store", headers=bearer(stale)).status_code == 200


# --- claims -------------------------------------------------------------------------


def test_integer_subject_is_refused(app, client, user):
    user_id, _ = user
    token = forge(app, payload(user_id))

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(
        response,
        "invalid_token",
        "The token is invalid: The token's 'sub' claim must be a user id: "
        "a positive integer in a string.",
    )


@pytest.mark.parametrize("claim", ["jti", "type", "sub", "iat", "exp"])
def test_token_missing_a_required_claim(app, client, user, claim):
    user_id, _ = user
    claims = payload(str(user_id))
    del claims[claim]

    response = client.get("/store", headers=bearer(forge(app, claims)))

    assert_token_refused(
        response,
        "invalid_token",
        f"The token is invalid: The token is missing the '{claim}' claim.",
    )


# Malformed subjects: tests/inprocess/test_malformed_claims.py.
@pytest.mark.parametrize("sub", ["999", "2147483647"])
@pytest.mark.parametrize(
    ("path", "kind"), [("/store", "access"), ("/refresh", "refresh")]
)
def test_token_of_an_unknown_user(app, client, user, sub, path, kind):
    token = forge(app, payload(sub, type=kind, fresh=False, fam=uuid.uuid4().hex))
    method = client.get if kind == "access" else client.post

    response = method(path, headers=bearer(token))

    assert_token_refused(response, "invalid_token", USER_GONE)


def test_token_not_yet_valid(app, client, user):
    user_id, _ = user
    later = int(time.time()) + 600
    token = forge(app, payload(str(user_id), nbf=later, exp=later + 600))

    response = client.get("/store", headers=bearer(token))

    assert_token_refused(
        response,
        "invalid_token",
        "The token is invalid: The token is not yet valid (nbf).",
    )


# --- no default Flask-JWT-Extended answers survive ----------------------------------


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/store"),
        ("post", "/store"),
        ("post", "/refresh"),
        ("post", "/logout"),
        ("post", "/item"),
        ("get", "/user/1"),
        ("delete", "/user/1"),
        ("delete", "/store/1"),
    ],
)
def test_every_token_problem_is_a_401_envelope_without_msg(
    app, auth, client, user, method, path
):
    user_id, _ = user
    sub = str(user_id)
    bad_tokens = {
        "garbage": "abc.def.ghi",
        "expired": auth.expired_access_token(sub),
        "alg-none": jwt.encode(payload(sub), None, algorithm="none"),
        "hs512": forge(app, payload(sub), algorithm="HS512"),
        "int-sub": forge(app, payload(user_id)),
        "no-jti": forge(app, {k: v for k, v in payload(sub).items() if k != "jti"}),
        "unknown-user": forge(app, payload("999", type="refresh", fresh=False)),
        "other-secret": forge(app, payload(sub), key="x" * 64),
    }
    headers = {name: bearer(token) for name, token in bad_tokens.items()}
    headers["no-header"] = {}
    headers["basic"] = {"Authorization": "Basic abc"}
    headers["bare-bearer"] = {"Authorization": "Bearer"}

    for name, header in headers.items():
        response = getattr(client, method)(path, json=ITEM, headers=header)
        assert response.status_code == 401, (name, response.get_json())
        body = response.get_json()
        assert "msg" not in body, (name, body)
        assert set(body) == ENVELOPE_KEYS, (name, body)
        assert body["code"] == 401
        assert body["error"] in {
            "authorization_required",
            "invalid_token",
            "token_expired",
        }, (name, body)
        assert response.headers["WWW-Authenticate"].startswith(NO_TOKEN_CHALLENGE)


# --- issuer, audience, leeway -------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{"iss": "someone-else"}, {"aud": "another-api"}, {"aud": ["x", "y"]}],
    ids=["wrong-issuer", "wrong-audience", "other-audiences"],
)
def test_tokens_for_another_issuer_or_audience_are_refused(
    app, client, user, overrides
):
    user_id, _ = user
    token = forge(app, payload(str(user_id), **overrides))

    response = client.get("/store", headers=bearer(token))

    body = assert_error(response, 401, "invalid_token")
    assert "WWW-Authenticate" in response.headers
    assert body["message"].startswith("The token is invalid")


@pytest.mark.parametrize("claim", ["iss", "aud"])
def test_tokens_without_issuer_or_audience_are_refused(app, client, user, claim):
    user_id, _ = user
    claims = payload(str(user_id))
    del claims[claim]

    response = client.get("/store", headers=bearer(forge(app, claims)))

    assert_error(response, 401, "invalid_token")


def test_our_tokens_name_issuer_and_audience(app, user):
    _, tokens = user
    with app.app_context():
        claims = jwt.decode(
            tokens["access_token"],
            app.config["JWT_SECRET_KEY"],
            algorithms=["HS256"],
            audience="stores-api",
        )
    assert claims["iss"] == "stores-api"
    assert claims["aud"] == "stores-api"


def test_a_small_clock_skew_is_tolerated(app, client, user):
    """exp two seconds ago is inside the 5-second leeway; six seconds is not."""
    user_id, _ = user
    now = int(time.time())
    recent = forge(app, payload(str(user_id), exp=now - 2))
    stale = forge(app, payload(str(user_id), exp=now - 6))

    assert client.get("/store", headers=bearer(recent)).status_code == 200
    assert_token_refused(
        client.get("/store", headers=bearer(stale)), "token_expired", EXPIRED
    )


def _delete_user_row(app, user_id: int) -> None:
    """Remove the user behind the API's back: no revocation mark is set."""
    from core import db
    from models import UserModel

    with app.app_context():
        db.session.execute(db.delete(UserModel).where(UserModel.id == user_id))
        db.session.commit()


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("get", "/store", "access"),
        ("get", "/item/1", "access"),
        ("get", "/me", "access"),
        ("post", "/refresh", "refresh"),
    ],
)
def test_token_of_a_user_removed_from_the_database(
    app, auth, client, method, path, kind
):
    user_id, tokens = auth.user("alice")
    _delete_user_row(app, user_id)

    response = getattr(client, method)(path, headers=bearer(tokens[f"{kind}_token"]))

    assert_token_refused(response, "invalid_token", USER_GONE)


def test_a_user_deleted_after_the_token_check_is_still_refused(
    app, auth, client, monkeypatch
):
    """/me loads the user after the check; if it vanished meanwhile, 401, not 500."""
    from models import UserModel

    user_id, tokens = auth.user("alice")
    _delete_user_row(app, user_id)
    # The check still sees the user, as if the deletion came just after it.
    seen = SimpleNamespace(id=user_id, is_admin=False)
    monkeypatch.setattr(UserModel, "subject", classmethod(lambda cls, _id: seen))

    response = client.get("/me", headers=bearer(tokens["access_token"]))

    assert_token_refused(response, "invalid_token", USER_GONE)


def test_a_rotation_mark_outlives_every_grace_copy_of_the_token(app, auth):
    """A retry's copy shares the jti of the winner's successor and is minted up to
    REFRESH_REUSE_GRACE_SECONDS later, so it may expire that much later: the
    rotation mark must still be there when that copy could be replayed."""
    _, tokens = auth.user("alice")
    with app.app_context():
        claims = decode_token(tokens["refresh_token"])
    assert auth.refresh(tokens["refresh_token"]).status_code == 200

    blocklist = app.extensions["blocklist"]
    expires_at, _ = blocklist._entries[("rotation", claims["jti"])]
    grace = app.config["REFRESH_REUSE_GRACE_SECONDS"]
    assert expires_at >= claims["exp"] + grace
