"""DPoP (RFC 9449) against a thief, on every revocation store: tokens stolen from
a bound session are of no use without the owner's key (§1, §7.1), whatever the
endpoint, the thief's own proofs are refused and audited (`dpop_key_mismatch`),
and the owner's session goes on as if nothing had happened. A captured proof is
good once, for its one request and token (§4.3, §11.1); reuse detection of
refresh tokens (RFC 9700 §4.14.2) works for bound sessions as for bearer ones;
a token whose `cnf` is not what this server issues is refused (RFC 7800 §3.1).
"""

import jwt
import pytest

from tests.dpop import ProofKey, bound_login
from tests.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    bearer,
    claims,
    records,
)
from tests.inprocess.test_dpop import (
    SESSIONS,
    assert_dpop_refusal,
    get_sessions,
    refresh,
)

OTHER_KEY = (
    "The DPoP proof is signed by another key than the one the token is bound to."
)
USED_BEFORE = "This DPoP proof was used before: make a new one for every request."
REVOKED = "The token has been revoked."
NO_GRACE = pytest.mark.parametrize(
    "app_config", [{"REFRESH_REUSE_GRACE_SECONDS": 0}], indirect=True
)


@pytest.fixture
def app_config(request, app_config, backend) -> dict:
    """Each revocation store in turn (plus a test's own settings)."""
    return {**app_config, **backend, **getattr(request, "param", {})}


@pytest.fixture
def thief() -> ProofKey:
    """The thief's own key: his proofs are sound, of another key."""
    return ProofKey()


@pytest.fixture
def owner(app, auth, client, key) -> dict:
    """alice (an administrator) logged in with a proof of `key`, with a store and
    an item: her tokens, ids and session (`fam`)."""
    user_id = auth.register().get_json()["id"]
    auth.make_admin(user_id)
    tokens = bound_login(client, key).get_json()
    assert tokens["token_type"] == "DPoP"
    access = tokens["access_token"]
    store = send(client, key, "POST", "/store", access, json={"name": "Shop"})
    assert store.status_code == 201, store.get_json()
    item = {"name": "Chair", "price": 15.99, "store_id": store.get_json()["id"]}
    created = send(client, key, "POST", "/item", access, json=item)
    assert created.status_code == 201, created.get_json()
    return {
        **tokens,
        "user": user_id,
        "item": created.get_json()["id"],
        "store": store.get_json()["id"],
        "fam": claims(app, access)["fam"],
    }


def send(client, key: ProofKey, method: str, path: str, token: str, **kwargs):
    """A request with `token` as `DPoP <token>` and a proof of `key` for it."""
    headers = key.headers(method, path, token)
    return client.open(path, method=method, headers=headers, **kwargs)


def assert_owner_unharmed(client, key: ProofKey, owner: dict) -> None:
    """alice's session is her one session still, her item as it was, no API token
    made; and her session refreshes, its new token served."""
    access = owner["access_token"]
    listed = get_sessions(client, key, access)
    assert listed.status_code == 200, listed.get_json()
    assert [entry["id"] for entry in listed.get_json()] == [owner["fam"]]
    item = send(client, key, "GET", f"/item/{owner['item']}", access)
    assert item.status_code == 200, item.get_json()
    assert (item.get_json()["name"], item.get_json()["price"]) == ("Chair", 15.99)
    api_tokens = send(client, key, "GET", "/me/api-tokens", access)
    assert api_tokens.status_code == 200 and api_tokens.get_json() == []
    refreshed = refresh(client, key, owner["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert refreshed.get_json()["token_type"] == "DPoP"
    new_access = refreshed.get_json()["access_token"]
    assert get_sessions(client, key, new_access).status_code == 200


def assert_audited(caplog, owner: dict, thief: ProofKey, count: int = 1) -> None:
    """Each refusal of the thief's key is audited, naming alice's session and the
    thief's key (for an operator to act on)."""
    events = records(caplog, "api.audit", "dpop_key_mismatch")
    assert len(events) == count, [event.getMessage() for event in events]
    for event in events:
        assert event.levelname == "WARNING"
        assert event.user_id == str(owner["user"])
        assert event.family == owner["fam"]
        assert event.jkt == thief.jkt


def assert_revoked(response) -> None:
    """The refusal of a token of an ended session, with a DPoP challenge."""
    assert_error(response, 401, "token_revoked", REVOKED)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP realm="api", error="invalid_token"')


# --- a thief with the tokens and his own key ------------------------------------------

ACCESS, REFRESH = "access_token", "refresh_token"
# (method, path, the stolen token sent, the body): everything a token opens.
THEFTS = [
    ("GET", "/me", ACCESS, None),
    ("GET", SESSIONS, ACCESS, None),
    ("GET", "/item/{item}", ACCESS, None),
    ("POST", "/store", ACCESS, {"name": "Loot"}),
    ("POST", "/item", ACCESS, {"name": "Loot", "price": 1, "store_id": 1}),
    ("PUT", "/item/{item}", ACCESS, {"name": "Loot", "price": 0.01}),
    ("DELETE", "/item/{item}", ACCESS, None),
    ("DELETE", "/store/{store}", ACCESS, None),
    ("POST", "/me/api-tokens", ACCESS, {"name": "backdoor"}),
    ("POST", "/me/mfa/totp", ACCESS, None),
    (
        "PUT",
        "/user/password",
        ACCESS,
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    ),
    ("DELETE", "/user/{user}", ACCESS, None),
    ("POST", "/reauthenticate", ACCESS, {"password": PASSWORD}),
    ("DELETE", SESSIONS, ACCESS, None),
    ("DELETE", SESSIONS + "/{fam}", ACCESS, None),
    ("POST", "/logout", ACCESS, None),
    ("POST", "/logout/all", ACCESS, None),
    ("POST", "/refresh", REFRESH, None),
]


@pytest.mark.parametrize(
    "method, path, stolen, body",
    THEFTS,
    ids=[f"{method} {path}" for method, path, _, _ in THEFTS],
)
def test_a_stolen_token_with_the_thiefs_own_proof_is_refused_and_audited(
    client, owner, key, thief, caplog, method, path, stolen, body
):
    path = path.format(**owner)

    response = send(client, thief, method, path, owner[stolen], json=body)

    assert_dpop_refusal(response, "invalid_token", OTHER_KEY)
    assert_audited(caplog, owner, thief)
    assert_owner_unharmed(client, key, owner)


# The form of each endpoint that takes a token as a parameter.
FORMS = {
    "/token": lambda token: {"grant_type": "refresh_token", "refresh_token": token},
    "/revoke": lambda token: {"token": token},
}
# (endpoint, the stolen token it is sent, the refusal's error code)
PARAMETER_THEFTS = [
    ("/token", REFRESH, "invalid_grant"),
    ("/revoke", REFRESH, "invalid_dpop_proof"),
    ("/revoke", ACCESS, "invalid_dpop_proof"),
]


@pytest.mark.parametrize(
    "path, stolen, error",
    PARAMETER_THEFTS,
    ids=["refresh-grant", "revoke-refresh-token", "revoke-access-token"],
)
def test_a_stolen_token_as_a_parameter_with_the_thiefs_proof_is_refused_and_audited(
    client, owner, key, thief, caplog, path, stolen, error
):
    """§5: where the token is a parameter the proof has no `ath`; its key must
    still be the token's. The thief can neither trade the session for his own
    tokens, nor end it."""
    data = FORMS[path](owner[stolen])

    response = client.post(path, data=data, headers={"DPoP": thief.proof("POST", path)})

    body = assert_error(response, 400, error, OTHER_KEY)
    assert body["error_description"] == OTHER_KEY
    assert_audited(caplog, owner, thief)
    assert_owner_unharmed(client, key, owner)


@pytest.mark.parametrize("path", ["/refresh", "/logout", "/token", "/revoke"])
def test_a_stolen_token_without_any_proof_is_refused(client, owner, key, path):
    """The thief drops the DPoP scheme and the proof: a bound token is no bearer
    token, wherever it is sent."""
    token = owner[ACCESS if path == "/logout" else REFRESH]
    if path in FORMS:
        response = client.post(path, data=FORMS[path](token))
        body = assert_error(response, 400, "invalid_dpop_proof")
    else:
        response = client.post(path, headers=bearer(token))
        body = assert_dpop_refusal(response, "invalid_token")
    assert "DPoP-bound" in body["message"]
    assert_owner_unharmed(client, key, owner)


def test_a_stolen_token_in_a_cookie_with_the_thiefs_proof_is_refused(
    app, client, owner, key, thief
):
    """Bound tokens are served from the Authorization header only: carried in
    the cookies instead (with the CSRF header the token names), they are refused."""
    access, refresh_token = owner[ACCESS], owner[REFRESH]
    client.set_cookie("access_token_cookie", access)
    route = client.get(
        SESSIONS, headers={"DPoP": thief.proof("GET", SESSIONS, token=access)}
    )
    assert_error(route, 401, "invalid_token")
    assert "DPoP-bound" in route.get_json()["message"]
    client.set_cookie("refresh_token_cookie", refresh_token, path="/refresh")
    csrf = jwt.decode(refresh_token, options={"verify_signature": False})["csrf"]
    headers = {
        "X-CSRF-TOKEN": csrf,
        "DPoP": thief.proof("POST", "/refresh", token=refresh_token),
    }
    response = client.post("/refresh", headers=headers)
    assert_error(response, 401, "invalid_token")
    client.delete_cookie("access_token_cookie")
    client.delete_cookie("refresh_token_cookie", path="/refresh")
    assert_owner_unharmed(client, key, owner)


@NO_GRACE
def test_a_refresh_token_stolen_before_a_rotation_ends_nothing_in_the_thiefs_hands(
    client, owner, key, thief, caplog
):
    """Replayed by anyone who can use it, a rotated refresh token ends its session
    (RFC 9700 §4.14.2). The thief cannot use it: refused for his key, before any
    rotation is looked at, so he cannot end alice's session with it either."""
    rotated = refresh(client, key, owner[REFRESH])
    assert rotated.status_code == 200, rotated.get_json()

    response = send(client, thief, "POST", "/refresh", owner[REFRESH])

    assert_dpop_refusal(response, "invalid_token", OTHER_KEY)
    assert_audited(caplog, owner, thief)
    assert_owner_unharmed(client, key, {**owner, **rotated.get_json()})


# --- captured proofs ------------------------------------------------------------------


def test_a_captured_request_replayed_is_refused(client, owner, key):
    """The thief copies alice's request, token and proof: the proof was spent by
    her request (§11.1), at a route as at /refresh, whose rotation his replay
    never reaches."""
    headers = key.headers("GET", SESSIONS, owner[ACCESS])
    assert client.get(SESSIONS, headers=headers).status_code == 200
    assert_dpop_refusal(
        client.get(SESSIONS, headers=headers), "invalid_dpop_proof", USED_BEFORE
    )
    refresh_headers = key.headers("POST", "/refresh", owner[REFRESH])
    rotated = client.post("/refresh", headers=refresh_headers)
    assert rotated.status_code == 200, rotated.get_json()

    replay = client.post("/refresh", headers=refresh_headers)

    assert_dpop_refusal(replay, "invalid_dpop_proof", USED_BEFORE)
    assert_owner_unharmed(client, key, {**owner, **rotated.get_json()})


# (the request alice made the proof for, the request the thief sends it with,
# what the refusal names)
ELSEWHERE = [
    (("GET", SESSIONS), ("DELETE", SESSIONS), "htm must be 'DELETE'"),
    (("GET", SESSIONS), ("GET", "/me"), "htu must be this request's URL"),
    (("GET", SESSIONS), ("POST", "/logout"), "htm must be 'POST'"),
    (("GET", "/item"), ("DELETE", "/item/{item}"), "htm must be 'DELETE'"),
    (("DELETE", "/item/999"), ("DELETE", "/item/{item}"), "htu must be this"),
    (("GET", "/item/{item}"), ("GET", "/item/{item}?x=1"), None),
]


@pytest.mark.parametrize(
    "made_for, sent_to, problem",
    ELSEWHERE,
    ids=[f"{a[0]} {a[1]} to {b[0]} {b[1]}" for a, b, _ in ELSEWHERE],
)
def test_a_captured_proof_sent_with_another_request_is_refused(
    client, owner, key, made_for, sent_to, problem
):
    """A proof is for one method and one URL (§4.3 checks 8-9); the query is no
    part of it (sent_to with a query is the same request: that one passes)."""
    (made_method, made_path), (method, path) = made_for, sent_to
    made_path, path = made_path.format(**owner), path.format(**owner)
    captured = key.proof(made_method, made_path, token=owner[ACCESS])
    headers = {"Authorization": f"DPoP {owner[ACCESS]}", "DPoP": captured}

    response = client.open(path, method=method, headers=headers)

    if problem is None:
        assert response.status_code == 200, response.get_json()
        return
    body = assert_dpop_refusal(response, "invalid_dpop_proof")
    assert problem in body["message"], body
    # Refused, the proof was not spent: alice's own request still goes through.
    own = client.open(made_path, method=made_method, headers=headers)
    assert own.status_code in (200, 404), own.get_json()  # /item/999: none such
    assert_owner_unharmed(client, key, owner)


def test_a_proof_for_the_access_token_is_refused_with_the_refresh_token(
    client, owner, key
):
    """§4.3 check 12: a proof made for POST /refresh with the access token's `ath`
    is not a proof for the refresh token."""
    headers = {
        "Authorization": f"DPoP {owner[REFRESH]}",
        "DPoP": key.proof("POST", "/refresh", token=owner[ACCESS]),
    }

    response = client.post("/refresh", headers=headers)

    body = assert_dpop_refusal(response, "invalid_dpop_proof")
    assert "ath" in body["message"]
    assert_owner_unharmed(client, key, owner)


# --- rotation and reuse detection, bound ----------------------------------------------


@NO_GRACE
def test_the_owners_replay_of_a_rotated_refresh_token_ends_the_session(
    client, owner, key, caplog
):
    """As for a bearer session (test_sessions.py): a rotated refresh token sent
    again, with a sound proof of its key, is a replay: the session ends."""
    second = refresh(client, key, owner[REFRESH]).get_json()

    replay = refresh(client, key, owner[REFRESH])

    assert_revoked(replay)
    assert_revoked(refresh(client, key, second[REFRESH]))
    assert_revoked(get_sessions(client, key, second[ACCESS]))
    assert_revoked(get_sessions(client, key, owner[ACCESS]))
    events = records(caplog, "api.audit", "refresh_token_reuse")
    assert [event.family for event in events] == [owner["fam"]]


@NO_GRACE
def test_a_replay_at_the_token_endpoint_ends_the_session_too(client, owner, key):
    def grant(refresh_token: str):
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return client.post(
            "/token", data=form, headers={"DPoP": key.proof("POST", "/token")}
        )

    second = grant(owner[REFRESH])
    assert second.status_code == 200, second.get_json()

    replay = grant(owner[REFRESH])

    assert_error(replay, 400, "invalid_grant")
    assert_revoked(refresh(client, key, second.get_json()[REFRESH]))


def test_the_replay_of_an_older_refresh_token_ends_the_session_within_the_grace(
    client, owner, key
):
    second = refresh(client, key, owner[REFRESH]).get_json()
    third = refresh(client, key, second[REFRESH]).get_json()

    assert_revoked(refresh(client, key, owner[REFRESH]))
    assert_revoked(get_sessions(client, key, third[ACCESS]))
    assert_revoked(refresh(client, key, third[REFRESH]))


def test_a_retry_within_the_grace_gets_a_pair_of_the_chain_still_bound(
    app, client, owner, key
):
    first = refresh(client, key, owner[REFRESH]).get_json()

    retry = refresh(client, key, owner[REFRESH])

    assert retry.status_code == 200, retry.get_json()
    second = retry.get_json()
    assert second["token_type"] == "DPoP"
    for token in (second[ACCESS], second[REFRESH]):
        assert claims(app, token)["cnf"] == {"jkt": key.jkt}
        assert claims(app, token)["fam"] == owner["fam"]
    assert claims(app, second[REFRESH])["jti"] == claims(app, first[REFRESH])["jti"]
    assert get_sessions(client, key, second[ACCESS]).status_code == 200


# --- the binding itself ---------------------------------------------------------------


def test_a_password_change_keeps_the_new_session_bound_to_the_key(
    app, client, owner, key
):
    """PUT /user/password ends every session and starts a new one. The request
    came with a proof of alice's key: the new session is bound to it, as every
    token of a bound session is (a refresh, a step-up); tokens that became bearer
    tokens here would be of use to whoever steals them next."""
    passwords = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    response = send(client, key, "PUT", "/user/password", owner[ACCESS], json=passwords)

    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    assert tokens["token_type"] == "DPoP"
    for name in (ACCESS, REFRESH):
        assert claims(app, tokens[name]).get("cnf") == {"jkt": key.jkt}
    stolen = client.get(SESSIONS, headers=bearer(tokens[ACCESS]))
    assert_dpop_refusal(stolen, "invalid_token")
    assert get_sessions(client, key, tokens[ACCESS]).status_code == 200


# Values of `cnf` this server never issues (auth/claims.py): a thief cannot sign a
# token, so these are minted with the server's key, as a bug elsewhere might.
MALFORMED_CNF = [
    pytest.param(lambda jkt: jkt, id="a-string"),
    pytest.param(lambda jkt: [jkt], id="a-list"),
    pytest.param(lambda jkt: None, id="null"),
    pytest.param(lambda jkt: {}, id="empty"),
    pytest.param(lambda jkt: {"jkt": jkt, "x5t#S256": jkt}, id="an-extra-member"),
    pytest.param(lambda jkt: {"JKT": jkt}, id="JKT"),
    pytest.param(lambda jkt: {"jkt": jkt[:-1]}, id="jkt-of-42"),
    pytest.param(lambda jkt: {"jkt": jkt + "A"}, id="jkt-of-44"),
    pytest.param(lambda jkt: {"jkt": 5}, id="jkt-a-number"),
    pytest.param(lambda jkt: {"jkt": "\u00e9" * 43}, id="jkt-not-ascii"),
]


@pytest.mark.parametrize("cnf", MALFORMED_CNF)
def test_a_token_with_a_malformed_cnf_is_refused_everywhere(
    auth, client, owner, key, cnf
):
    """Refused as a token that is not ours (401 invalid_token naming the claim;
    invalid_grant at /token; nothing revoked at /revoke, RFC 7009 §2.2), before
    the binding is read, never a 500."""
    extra = {"additional_claims": {"cnf": cnf(key.jkt), "fam": owner["fam"]}}
    access = auth.access_token(str(owner["user"]), **extra)
    refresh_token = auth.refresh_token(str(owner["user"]), **extra)

    for response in (
        send(client, key, "GET", SESSIONS, access),
        client.get(SESSIONS, headers=bearer(access)),
        send(client, key, "POST", "/refresh", refresh_token),
    ):
        body = assert_error(response, 401, "invalid_token")
        assert "The token's 'cnf' claim must be" in body["message"], body
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    headers = {"DPoP": key.proof("POST", "/token")}
    assert_error(
        client.post("/token", data=form, headers=headers), 400, "invalid_grant"
    )
    headers = {"DPoP": key.proof("POST", "/revoke")}
    revoked = client.post("/revoke", data={"token": refresh_token}, headers=headers)
    assert revoked.status_code == 200, revoked.get_json()
    assert_owner_unharmed(client, key, owner)
