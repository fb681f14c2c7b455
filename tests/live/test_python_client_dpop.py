"""The Python client's DPoP (RFC 9449, issue 27) against a live gunicorn server:
a login binds both tokens to a new key of the client's (token_type DPoP, cnf.jkt
its thumbprint); every request, the silent refresh, the step-up and the logout
carry a proof of that key; the tokens taken out of the client are worth nothing
without it (401 invalid_token as Bearer or with another key, 401
invalid_dpop_proof for a proof used before); a server that requires nonces is
answered by one retry with its nonce; `dpop=False`, a server that ignores the
proof and an API token keep Bearer tokens.

The server and the fixtures are tests/live/test_python_client.py's (two workers,
the database revocation store, two-second access tokens); the requests are
checked as sent (their headers, each proof verified against the client's key).
"""

from collections.abc import Callable, Iterator

import jwt
import pytest
import requests

from auth.dpop import BOUND, NOT_BOUND, OTHER_KEY
from clients.python.api_client import (
    ApiClient,
    ApiClientError,
    LoginRequired,
    MfaRequired,
    ReauthenticationFailed,
    error_of,
    parse_challenge,
)
from clients.python.dpop import DpopKey, access_token_hash
from tests import mfa, servers
from tests.authenticator import SoftAuthenticator
from tests.helpers import PASSWORD, TOKEN_KEYS
from tests.live import test_python_client as client_tests
from tests.live.test_python_client import (
    CountingSession,
    Reauthenticator,
    Server,
    _claims,
    _create_store,
    _item,
    client_server,
    sleep_until_expired,
)
from tests.passkeys import ORIGIN

# test_python_client.py's fixtures, used here by name (this module's own server).
server = client_tests.server
username = client_tests.username

ALGS = "ES256 ES384 EdDSA RS256 PS256"  # the server's, in its DPoP challenges
REPLAYED = "This DPoP proof was used before: make a new one for every request."
LOGIN_PATHS = ("/login", "/login/mfa", "/login/passkey")


class RecordingSession(CountingSession):
    """A CountingSession that also keeps every request as it was sent, and its
    answer."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[requests.PreparedRequest, requests.Response]] = []

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        with self._calls_lock:
            self.exchanges.append((request, response))
        return response

    @property
    def sent(self) -> list[requests.PreparedRequest]:
        with self._calls_lock:
            return [request for request, _ in self.exchanges]

    def sent_to(self, method: str, path: str) -> list[requests.PreparedRequest]:
        with self._calls_lock:
            return [
                request
                for request, _ in self.exchanges
                if request.method == method and request.path_url.split("?")[0] == path
            ]


class ProofIgnoringSession(RecordingSession):
    """What a server without DPoP sees: the logins' proofs never arrive (so it
    answers token_type Bearer, as the API does to a login without a proof)."""

    def send(self, request, **kwargs):
        if request.path_url in LOGIN_PATHS:
            request.headers.pop("DPoP", None)
        return super().send(request, **kwargs)


class ProofSpoilingSession(RecordingSession):
    """Spoils the proofs of the paths in `spoil` (their signature's first
    character changed): what a proxy that mangles headers would do.

    Not the last character: its low bits are base64url padding, which a decoder
    ignores, so 'A' for 'B' there can leave the signature as it was."""

    def __init__(self) -> None:
        super().__init__()
        self.spoil: set[str] = set()

    def send(self, request, **kwargs):
        proof = request.headers.get("DPoP")
        if proof and request.path_url in self.spoil:
            signed, _, signature = proof.rpartition(".")
            first = "A" if signature[0] != "A" else "B"
            request.headers["DPoP"] = f"{signed}.{first}{signature[1:]}"
        return super().send(request, **kwargs)


@pytest.fixture
def make_client(server) -> Iterator[Callable[..., tuple[ApiClient, RecordingSession]]]:
    """make_client(session_class=RecordingSession, base_url=..., **kwargs) ->
    (ApiClient, its session); all closed after."""
    sessions: list[RecordingSession] = []

    def make(
        session_class: type[RecordingSession] = RecordingSession,
        base_url: str = server.base_url,
        **kwargs,
    ) -> tuple[ApiClient, RecordingSession]:
        session = session_class()
        sessions.append(session)
        return ApiClient(base_url, session=session, **kwargs), session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture(scope="module")
def nonce_server(tmp_path_factory) -> Iterator[Server]:
    """A live server that takes only proofs with its current nonce (RFC 9449 §8)."""
    tmp = tmp_path_factory.mktemp("python-client-nonce")
    with client_server(tmp, DPOP_NONCE_REQUIRED="true") as started:
        yield started


def proof_of(request: requests.PreparedRequest, key: DpopKey) -> dict:
    """The claims of the request's DPoP proof, its signature checked against
    `key` (RFC 9449 §4.3), its header naming the key's public JWK."""
    proof = request.headers["DPoP"]
    header = jwt.get_unverified_header(proof)
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    public_key = jwt.PyJWK(key.public_jwk, algorithm="ES256").key
    return jwt.decode(proof, public_key, algorithms=["ES256"])


def bound_to(token: str) -> str | None:
    """The thumbprint a token is bound to (its cnf.jkt), if any."""
    return _claims(token).get("cnf", {}).get("jkt")


def send_as(
    server: Server,
    method: str,
    path: str,
    token: str,
    *,
    scheme: str = "DPoP",
    key: DpopKey | None = None,
    proof: str | None = None,
) -> requests.Response:
    """`token` sent with plain requests, as whoever copied it would: with
    `scheme`, and a new proof of `key` (or the given `proof`) if any."""
    url = f"{server.base_url}{path}"
    headers = {"Authorization": f"{scheme} {token}"}
    if key is not None:
        proof = key.proof(method, url, token)
    if proof is not None:
        headers["DPoP"] = proof
    return requests.request(method, url, headers=headers, timeout=10)


def assert_dpop_refusal(
    response: requests.Response, error: str, message: str | None = None
) -> None:
    """401 with the error envelope (and `message`, if given) and a DPoP challenge
    naming `error` (RFC 9449 §7.1)."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert (body["code"], body["status"], body["error"]) == (401, "Unauthorized", error)
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("DPoP "), challenge
    assert parse_challenge(challenge)["error"] == error
    assert parse_challenge(challenge)["error_description"] == body["message"]
    assert parse_challenge(challenge)["algs"] == ALGS


# A bound session, from login to logout ----------------------------------------------


def test_a_login_binds_both_tokens_to_the_clients_new_key(
    make_client, username, server
):
    client, session = make_client()

    data = client.login(username, PASSWORD)

    key = client.dpop_key
    assert key is not None and key.algorithm == "ES256"
    assert set(data) == TOKEN_KEYS and data["token_type"] == "DPoP"
    assert client.token_type == "DPoP"
    assert bound_to(client.access_token) == key.thumbprint
    assert bound_to(client.refresh_token) == key.thumbprint
    [login] = session.sent_to("POST", "/login")
    claims = proof_of(login, key)
    assert (claims["htm"], claims["htu"]) == ("POST", f"{server.base_url}/login")
    assert "ath" not in claims and "Authorization" not in login.headers

    me = client.get("/me")
    stores = client.get("/store", params={"page": 1})

    assert (me.status_code, me.json()["username"]) == (200, username)
    assert stores.status_code == 200, stores.text
    for path in ("/me", "/store"):
        [sent] = session.sent_to("GET", path)
        assert sent.headers["Authorization"] == f"DPoP {client.access_token}"
        claims = proof_of(sent, key)
        assert claims["htu"] == f"{server.base_url}{path}"  # no query (§4.2)
        assert claims["ath"] == access_token_hash(client.access_token)
    assert stores.request.url.endswith("/store?page=1")


def test_each_login_makes_a_new_key(make_client, username, server):
    client, _ = make_client()
    client.login(username, PASSWORD)
    first, first_refresh = client.dpop_key, client.refresh_token

    client.login(username, PASSWORD)

    assert client.dpop_key is not None and first is not None
    assert client.dpop_key.thumbprint != first.thumbprint
    assert bound_to(client.access_token) == client.dpop_key.thumbprint
    # The first login's session was ended (with a proof of its own key).
    old = send_as(server, "POST", "/refresh", first_refresh, key=first)
    assert (old.status_code, old.json()["error"]) == (401, "token_revoked")


def test_a_silent_refresh_sends_the_refresh_token_with_a_proof_and_keeps_the_key(
    make_client, username, server
):
    client, session = make_client()
    client.login(username, PASSWORD)
    key, refresh = client.dpop_key, client.refresh_token
    sleep_until_expired(client.access_token)

    response = client.get("/store")

    assert response.status_code == 200, response.text
    assert session.statuses("GET", "/store") == [401, 200]
    assert session.statuses("POST", "/refresh") == [200]
    [sent] = session.sent_to("POST", "/refresh")
    assert sent.headers["Authorization"] == f"DPoP {refresh}"
    claims = proof_of(sent, key)
    assert claims["ath"] == access_token_hash(refresh)  # the REFRESH token's
    assert claims["htu"] == f"{server.base_url}/refresh"
    assert client.dpop_key is key and client.refresh_token != refresh
    assert bound_to(client.access_token) == key.thumbprint
    assert bound_to(client.refresh_token) == key.thumbprint
    assert not client.token_is_fresh


def test_a_step_up_stays_in_the_bound_session(make_client, username):
    reauthenticate = Reauthenticator(username)
    client, session = make_client(reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    key = client.dpop_key
    store_id = _create_store(client)
    client.refresh()
    stale = client.access_token

    response = client.post("/item", json=_item(store_id))

    assert response.status_code == 201, response.text
    assert reauthenticate.calls == 1
    assert session.statuses("POST", "/item") == [401, 201]
    [step_up] = session.sent_to("POST", "/reauthenticate")
    assert step_up.headers["Authorization"] == f"DPoP {stale}"
    assert proof_of(step_up, key)["ath"] == access_token_hash(stale)
    assert client.token_is_fresh and client.dpop_key is key
    assert bound_to(client.access_token) == key.thumbprint


def test_logout_revokes_with_a_proof_of_the_key(make_client, username, server):
    client, session = make_client()
    client.login(username, PASSWORD)
    key, access, refresh = client.dpop_key, client.access_token, client.refresh_token

    response = client.logout()

    assert response is not None and response.status_code == 200, response.text
    assert response.json() == {"message": "The token is revoked."}
    [sent] = session.sent_to("POST", "/revoke")
    assert "Authorization" not in sent.headers
    assert sent.body == f"token={refresh}&token_type_hint=refresh_token"
    claims = proof_of(sent, key)
    assert "ath" not in claims and claims["htu"] == f"{server.base_url}/revoke"
    assert (client.dpop_key, client.token_type, client.logged_in) == (None, None, False)
    for method, path, token in (("GET", "/me", access), ("POST", "/refresh", refresh)):
        old = send_as(server, method, path, token, key=key)
        assert (old.status_code, old.json()["error"]) == (401, "token_revoked")


def test_a_refused_proof_keeps_the_session(make_client, username):
    """401 invalid_dpop_proof is about the proof, not the session: at /refresh
    and at a step-up the tokens are kept (and reauthenticate is not called)."""
    reauthenticate = Reauthenticator(username)
    client, session = make_client(ProofSpoilingSession, reauthenticate=reauthenticate)
    client.login(username, PASSWORD)
    access, refresh = client.access_token, client.refresh_token
    session.spoil = {"/refresh", "/reauthenticate"}

    with pytest.raises(ApiClientError) as refused_refresh:
        client.refresh()
    with pytest.raises(ReauthenticationFailed) as refused_step_up:
        client.reauthenticate(PASSWORD)

    for refused in (refused_refresh.value, refused_step_up.value):
        assert (refused.code, refused.status_code) == ("invalid_dpop_proof", 401)
        assert_dpop_refusal(refused.response, "invalid_dpop_proof")
    assert not isinstance(refused_refresh.value, LoginRequired)
    assert (client.access_token, client.refresh_token) == (access, refresh)
    assert reauthenticate.calls == 0
    session.spoil = set()
    client.refresh()  # the refresh token was not spent
    assert client.get("/me").status_code == 200
    assert session.statuses("POST", "/refresh") == [401, 200]


# Tokens taken out of the client --------------------------------------------------


def test_tokens_taken_out_of_the_client_are_refused_without_its_key(
    make_client, username, server
):
    client, session = make_client()
    client.login(username, PASSWORD)
    key, access, refresh = client.dpop_key, client.access_token, client.refresh_token
    assert client.get("/me").status_code == 200
    [used] = session.sent_to("GET", "/me")
    other = DpopKey()

    for method, path, token in (("GET", "/me", access), ("POST", "/refresh", refresh)):
        as_bearer = send_as(server, method, path, token, scheme="Bearer")
        assert_dpop_refusal(as_bearer, "invalid_token", BOUND)
        assert_dpop_refusal(
            send_as(server, method, path, token), "invalid_token", BOUND
        )
        with_another_key = send_as(server, method, path, token, key=other)
        assert_dpop_refusal(with_another_key, "invalid_token", OTHER_KEY)
    replayed = send_as(server, "GET", "/me", access, proof=used.headers["DPoP"])
    assert_dpop_refusal(replayed, "invalid_dpop_proof", REPLAYED)

    # With the key they work: the refusals were the key's, and spent nothing.
    me = send_as(server, "GET", "/me", access, key=key)
    assert (me.status_code, me.json()["username"]) == (200, username)
    client.refresh()
    assert client.get("/me").status_code == 200
    assert session.statuses("POST", "/refresh") == [200]


# Nonces, Bearer and API tokens -----------------------------------------------------


def test_a_server_requiring_nonces_is_answered_by_one_retry_with_its_nonce(
    make_client, nonce_server
):
    name = f"nonce-{DpopKey().thumbprint[:10]}"
    servers.register(nonce_server.base_url, name)
    reauthenticate = Reauthenticator(name)
    client, session = make_client(
        base_url=nonce_server.base_url, reauthenticate=reauthenticate
    )

    client.login(name, PASSWORD)

    key = client.dpop_key
    assert client.token_type == "DPoP" and client.dpop_nonce
    assert session.statuses("POST", "/login") == [400, 200]
    first, retried = (proof_of(sent, key) for sent in session.sent_to("POST", "/login"))
    assert "nonce" not in first and retried["nonce"]
    assert retried["jti"] != first["jti"]  # a new proof, not the refused one again

    store_id = _create_store(client)
    sleep_until_expired(client.access_token)
    created = client.post("/item", json=_item(store_id))  # refresh, then step-up
    me = client.get("/me")
    out = client.logout()

    assert created.status_code == 201, created.text
    assert (me.status_code, me.json()["username"]) == (200, name)
    assert out is not None and out.status_code == 200, out.text
    assert reauthenticate.calls == 1
    assert session.statuses("POST", "/refresh")[-1] == 200
    assert session.statuses("POST", "/reauthenticate")[-1] == 200
    # Every refusal for want of the nonce is followed by the same request with a
    # new proof carrying the nonce it sent, and that one is taken.
    exchanges = session.exchanges
    refusals = [
        index
        for index, (_, answer) in enumerate(exchanges)
        if error_of(answer)[0] == "use_dpop_nonce"
    ]
    assert refusals and refusals[0] == 0
    for index in refusals:
        sent, answer = exchanges[index]
        assert answer.status_code in (400, 401), answer.text
        again, taken = exchanges[index + 1]
        assert (again.method, again.path_url) == (sent.method, sent.path_url)
        assert proof_of(again, key)["nonce"] == answer.headers["DPoP-Nonce"]
        assert error_of(taken)[0] != "use_dpop_nonce", taken.text
    # After the first, every proof carries a nonce.
    assert all("nonce" in proof_of(sent, key) for sent, _ in exchanges[1:])


def test_dpop_false_keeps_bearer_tokens(make_client, username, server):
    client, session = make_client(dpop=False)

    data = client.login(username, PASSWORD)
    client.refresh()
    me = client.get("/me")

    assert data["token_type"] == "Bearer" and client.token_type == "Bearer"
    assert client.dpop_key is None
    assert bound_to(client.access_token) is None
    assert bound_to(client.refresh_token) is None
    assert (me.status_code, me.json()["username"]) == (200, username)
    assert not [sent for sent in session.sent if "DPoP" in sent.headers]
    [sent] = session.sent_to("GET", "/me")
    assert sent.headers["Authorization"] == f"Bearer {client.access_token}"
    # A Bearer token is a bearer token: anyone holding it is served; sent with the
    # DPoP scheme and a proof it is refused (it is bound to no key).
    copied = send_as(server, "GET", "/me", client.access_token, scheme="Bearer")
    assert copied.status_code == 200
    as_dpop = send_as(server, "GET", "/me", client.access_token, key=DpopKey())
    assert_dpop_refusal(as_dpop, "invalid_token", NOT_BOUND)
    assert client.logout().status_code == 200


def test_a_server_that_ignores_the_proof_gets_a_bearer_session(make_client, username):
    client, session = make_client(ProofIgnoringSession)

    data = client.login(username, PASSWORD)
    client.refresh()
    me = client.get("/me")
    out = client.logout()

    assert data["token_type"] == "Bearer"
    assert (me.status_code, me.json()["username"]) == (200, username)
    assert out is not None and out.status_code == 200
    assert not [sent for sent in session.sent if "DPoP" in sent.headers]
    [refreshed] = session.sent_to("POST", "/refresh")
    assert refreshed.headers["Authorization"].startswith("Bearer ")
    assert session.statuses("POST", "/refresh") == [200]


def test_an_api_token_is_never_bound(make_client, username, server):
    owner, _ = make_client()
    owner.login(username, PASSWORD)
    made = owner.post("/me/api-tokens", json={"name": "script", "expires_in_days": 1})
    assert made.status_code == 201, made.text
    session = RecordingSession()
    script = ApiClient.from_api_token(
        server.base_url, made.json()["token"], session=session
    )
    try:
        me = script.get("/me")
        assert (me.status_code, me.json()["username"]) == (200, username)
        assert (script.token_type, script.dpop_key) == ("Bearer", None)
        [sent] = session.sent
        assert sent.headers["Authorization"] == f"Bearer {made.json()['token']}"
        assert "DPoP" not in sent.headers
    finally:
        session.close()


# The other logins ------------------------------------------------------------------


def test_a_login_with_a_code_is_bound_to_the_logins_key(make_client, username, server):
    secret, _ = mfa.enrol_live(server.base_url, username)
    client, session = make_client()

    assert isinstance(client.login(username, PASSWORD), MfaRequired)
    assert client.dpop_key is None  # no tokens yet
    data = client.complete_mfa(code=mfa.code(secret))

    key = client.dpop_key
    assert data["token_type"] == "DPoP" and key is not None
    assert bound_to(client.access_token) == key.thumbprint
    [login] = session.sent_to("POST", "/login")
    [second_step] = session.sent_to("POST", "/login/mfa")
    # One login, one key: both steps' proofs are of the key the tokens name.
    for sent, path in ((login, "/login"), (second_step, "/login/mfa")):
        claims = proof_of(sent, key)
        assert claims["htu"] == f"{server.base_url}{path}" and "ath" not in claims
    assert client.get("/me").status_code == 200


def test_a_passkey_login_is_bound(make_client, username, server):
    authenticator = SoftAuthenticator(origin=ORIGIN)
    owner, _ = make_client()
    owner.login(username, PASSWORD)
    owner.register_passkey("laptop", authenticator.create)
    owner.logout()
    client, session = make_client()

    data = client.login_with_passkey(authenticator.get)

    key = client.dpop_key
    assert data["token_type"] == "DPoP" and key is not None
    assert bound_to(client.access_token) == key.thumbprint
    [options] = session.sent_to("POST", "/login/passkey/options")
    [login] = session.sent_to("POST", "/login/passkey")
    assert "DPoP" not in options.headers
    assert "ath" not in proof_of(login, key)
    me = client.get("/me")
    assert (me.status_code, me.json()["username"]) == (200, username)
