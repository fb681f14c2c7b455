"""DPoP (RFC 9449, issue 27): a session bound to the client's key at login, used
only with proofs of that key, on every revocation store."""

import pytest

from tests.dpop import ProofKey, bound_login
from tests.helpers import PASSWORD, assert_error, bearer, claims, records

SESSIONS = "/me/sessions"
ALGS = 'algs="ES256 ES384 EdDSA RS256 PS256"'


@pytest.fixture
def app_config(app_config, backend) -> dict:
    return {**app_config, **backend}


def get_sessions(client, key: ProofKey, token: str, **kwargs):
    return client.get(SESSIONS, headers=key.headers("GET", SESSIONS, token, **kwargs))


def refresh(client, key: ProofKey, token: str):
    return client.post("/refresh", headers=key.headers("POST", "/refresh", token))


def assert_dpop_refusal(response, error: str, message: str | None = None) -> dict:
    """A 401 whose challenge is the DPoP scheme's (§7.1), with its algorithms."""
    body = assert_error(response, 401, error, message)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'DPoP realm="api", error="{error}"'), challenge
    assert challenge.endswith(ALGS)
    return body


# --- binding --------------------------------------------------------------------------


def test_a_login_with_a_proof_binds_both_tokens_to_its_key(app, bound, key):
    assert bound["token_type"] == "DPoP"
    for name in ("access_token", "refresh_token"):
        assert claims(app, bound[name])["cnf"] == {"jkt": key.jkt}


def test_a_login_without_a_proof_is_a_bearer_session_as_before(app, auth, client):
    auth.register()
    tokens = auth.login()
    assert tokens["token_type"] == "Bearer"
    assert "cnf" not in claims(app, tokens["access_token"])
    assert (
        client.get(SESSIONS, headers=bearer(tokens["access_token"])).status_code == 200
    )


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "EdDSA", "RS256", "PS256"])
def test_every_listed_algorithm_binds_and_is_accepted(app, auth, client, algorithm):
    auth.register()
    key = ProofKey(algorithm)
    tokens = bound_login(client, key).get_json()
    assert claims(app, tokens["access_token"])["cnf"] == {"jkt": key.jkt}
    response = get_sessions(client, key, tokens["access_token"])
    assert response.status_code == 200, response.get_json()


def test_the_token_endpoints_password_grant_binds_too(app, auth, client, key):
    auth.register()
    response = client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers={"DPoP": key.proof("POST", "/token")},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "DPoP"
    assert claims(app, body["refresh_token"])["cnf"] == {"jkt": key.jkt}


def test_a_cookie_login_is_never_bound(auth, client, key):
    auth.register()
    response = bound_login(client, key, token_delivery="cookie")
    body = assert_error(response, 400, "invalid_dpop_proof")
    assert "cookie" in body["error_description"]
    assert "Set-Cookie" not in response.headers


# --- using a bound session ------------------------------------------------------------


def test_a_bound_token_with_a_proof_of_its_key_is_served(client, bound, key):
    response = get_sessions(client, key, bound["access_token"])
    assert response.status_code == 200
    assert [s["current"] for s in response.get_json()] == [True]


@pytest.mark.parametrize("scheme", ["Bearer", "DPoP"])
def test_a_bound_token_without_its_proof_is_refused(client, bound, scheme):
    headers = {"Authorization": f"{scheme} {bound['access_token']}"}
    response = client.get(SESSIONS, headers=headers)
    body = assert_dpop_refusal(response, "invalid_token")
    assert "DPoP-bound" in body["message"]


def test_a_bound_token_sent_as_bearer_with_its_proof_is_refused(client, bound, key):
    token = bound["access_token"]
    headers = {**bearer(token), "DPoP": key.proof("GET", SESSIONS, token=token)}
    assert_dpop_refusal(client.get(SESSIONS, headers=headers), "invalid_token")


def test_a_thief_with_another_key_is_refused_audited_and_ends_nothing(
    client, bound, key, caplog
):
    thief = ProofKey()
    for token, path, method in (
        (bound["access_token"], SESSIONS, "GET"),
        (bound["access_token"], "/logout", "POST"),
        (bound["access_token"], "/logout/all", "POST"),
        (bound["refresh_token"], "/refresh", "POST"),
    ):
        headers = thief.headers(method, path, token)
        response = client.open(path, method=method, headers=headers)
        assert_dpop_refusal(response, "invalid_token")
    events = records(caplog, "api.audit", "dpop_key_mismatch")
    assert len(events) == 4
    assert {event.jkt for event in events} == {thief.jkt}
    # The owner's session is as it was: served, and refreshed.
    assert get_sessions(client, key, bound["access_token"]).status_code == 200
    assert refresh(client, key, bound["refresh_token"]).status_code == 200


def test_a_proof_is_good_once(client, bound, key):
    headers = key.headers("GET", SESSIONS, bound["access_token"])
    assert client.get(SESSIONS, headers=headers).status_code == 200
    response = client.get(SESSIONS, headers=headers)
    body = assert_dpop_refusal(response, "invalid_dpop_proof")
    assert "used before" in body["message"]


def test_a_proof_for_another_token_is_refused(client, bound, key):
    headers = {
        "Authorization": f"DPoP {bound['access_token']}",
        "DPoP": key.proof("GET", SESSIONS, token=bound["refresh_token"]),
    }
    body = assert_dpop_refusal(
        client.get(SESSIONS, headers=headers), "invalid_dpop_proof"
    )
    assert "ath" in body["message"]


def test_an_unbound_token_with_the_dpop_scheme_or_a_proof_is_refused(auth, client, key):
    auth.register()
    token = auth.login()["access_token"]
    as_dpop = client.get(SESSIONS, headers=key.headers("GET", SESSIONS, token))
    assert_dpop_refusal(as_dpop, "invalid_token", None)
    with_proof = {**bearer(token), "DPoP": key.proof("GET", SESSIONS, token=token)}
    response = client.get(SESSIONS, headers=with_proof)
    body = assert_error(response, 401, "invalid_token")
    assert "not DPoP-bound" in body["message"]


def test_other_refusals_of_a_dpop_request_challenge_with_the_dpop_scheme(
    app, client, bound, key
):
    refreshed = refresh(client, key, bound["refresh_token"]).get_json()
    token = refreshed["access_token"]  # not fresh
    response = client.post(
        "/item",
        json={"name": "Chair", "price": 1, "store_id": 1},
        headers=key.headers("POST", "/item", token),
    )
    assert_error(response, 401, "fresh_token_required")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(
        'DPoP realm="api", error="insufficient_user_authentication"'
    )
    assert 'max_age="' in challenge and challenge.endswith(ALGS)


# --- refresh, step-up, revocation -----------------------------------------------------


def test_a_refresh_keeps_the_binding(app, client, bound, key):
    response = refresh(client, key, bound["refresh_token"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "DPoP"
    for name in ("access_token", "refresh_token"):
        assert claims(app, body[name])["cnf"] == {"jkt": key.jkt}
    assert get_sessions(client, key, body["access_token"]).status_code == 200


def test_the_refresh_grant_needs_a_proof_without_ath(app, client, bound, key):
    form = {"grant_type": "refresh_token", "refresh_token": bound["refresh_token"]}
    missing = client.post("/token", data=form)
    body = assert_error(missing, 400, "invalid_dpop_proof")
    assert "DPoP-bound" in body["error_description"]
    other = client.post(
        "/token", data=form, headers={"DPoP": ProofKey().proof("POST", "/token")}
    )
    assert_error(other, 400, "invalid_grant")
    response = client.post(
        "/token", data=form, headers={"DPoP": key.proof("POST", "/token")}
    )
    assert response.status_code == 200, response.get_json()
    assert claims(app, response.get_json()["access_token"])["cnf"] == {"jkt": key.jkt}


def test_a_step_up_keeps_the_binding_and_the_session(app, client, bound, key):
    token = bound["access_token"]
    response = client.post(
        "/reauthenticate",
        json={"password": PASSWORD},
        headers=key.headers("POST", "/reauthenticate", token),
    )
    assert response.status_code == 200, response.get_json()
    stepped = claims(app, response.get_json()["access_token"])
    assert stepped["cnf"] == {"jkt": key.jkt}
    assert stepped["fam"] == claims(app, token)["fam"]


def test_revoking_a_bound_token_takes_a_proof_of_its_key(client, bound, key):
    form = {"token": bound["refresh_token"]}
    for headers in ({}, {"DPoP": ProofKey().proof("POST", "/revoke")}):
        response = client.post("/revoke", data=form, headers=headers)
        assert_error(response, 400, "invalid_dpop_proof")
    assert get_sessions(client, key, bound["access_token"]).status_code == 200
    response = client.post(
        "/revoke", data=form, headers={"DPoP": key.proof("POST", "/revoke")}
    )
    assert response.status_code == 200
    after = get_sessions(client, key, bound["access_token"])
    assert_error(after, 401, "token_revoked")
    assert after.headers["WWW-Authenticate"].startswith('DPoP realm="api"')
