"""DPoP (RFC 9449, issue 27) in a real browser: Debian's chromium driven by
Playwright against a live gunicorn with 3-second access tokens.

- /demo in header mode binds the session: every login and every request that
  sends a token carries an ES256 proof (checked here: its header, its claims, its
  signature), the tokens carry `cnf.jkt`, the thumbprint of the key the page
  shows; a silent refresh sends the refresh token with a proof of the same key.
- The key is in IndexedDB and its private half is not extractable.
- A reload keeps the session (the tokens in sessionStorage, the key in
  IndexedDB): the same key signs on; a logout deletes both, and the next login
  makes a new key.
- Tokens read by an injected script (as an XSS would) and replayed from outside
  the browser, as Bearer or with another key's proof, are refused with
  `invalid_token`; the page's session goes on.
- Behind a proxy under a path prefix, the proofs name the prefixed URL.
- Cookie mode sends no DPoP header (and keeps no key).
- AuthClient falls back to Bearer for a server that answers a login with
  `token_type: "Bearer"`, and keeps such a session in memory only.
- With DPOP_NONCE_REQUIRED=true, logins, requests and refreshes go through the
  nonce retry (a stream body too: it is buffered to be sent again).

The browser, the server and the page are tests/browser/conftest.py's.
"""

import base64
import json
import time

import jwt
import pytest
import requests
from jwt.algorithms import ECAlgorithm

from tests.browser.pages import (
    ACCESS_LIFETIME,
    Page,
    create_user_with_an_item,
    live_server,
    open_page,
)
from tests.dpop import ProofKey, ath, thumbprint
from tests.helpers import PASSWORD
from tests.servers import REQUEST_TIMEOUT

ALGS = 'algs="ES256 ES384 EdDSA RS256 PS256"'
KEY_RECORDS = """
async () => {
  // The demo's key records, as a script of the page reads them.
  const database = await new Promise((resolve, reject) => {
    const opening = indexedDB.open("auth-client-dpop");
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
  const records = await new Promise((resolve, reject) => {
    const all = database.transaction("keys").objectStore("keys").getAll();
    all.onsuccess = () => resolve(all.result);
    all.onerror = () => reject(all.error);
  });
  database.close();
  const attempt = (promise) => promise.then(() => "exported", (error) => error.name);
  const described = [];
  for (const { id, keyPair } of records) {
    const { privateKey, publicKey } = keyPair;
    described.push({
      id,
      extractable: privateKey.extractable,
      algorithm: privateKey.algorithm,
      usages: privateKey.usages,
      asJwk: await attempt(crypto.subtle.exportKey("jwk", privateKey)),
      asPkcs8: await attempt(crypto.subtle.exportKey("pkcs8", privateKey)),
      publicJwk: await crypto.subtle.exportKey("jwk", publicKey),
    });
  }
  return described;
}
"""
# What an injected script finds in sessionStorage: the demo's kept session.
KEPT = """
() => {
  const name = Object.keys(sessionStorage).find((k) => k.startsWith("auth-client "));
  return name ? JSON.parse(sessionStorage.getItem(name)) : null;
}
"""


def _unbase64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(token: str) -> dict:
    """A JWT's payload, not verified (the server checks the signature)."""
    return json.loads(_unbase64url(token.split(".")[1]))


def _other_proof(method: str, url: str, token: str | None = None) -> str:
    """A valid proof, made by a key that is not the page's (an attacker's)."""
    return ProofKey().proof(method, url, token=token)


class Sent:
    """The requests a page sent to its server (method, path, headers), and the
    refusals it got (method, path, status, the envelope's `error`)."""

    def __init__(self, page: Page) -> None:
        self.server = page.server
        self.requests: list[tuple[str, str, dict]] = []
        self.refusals: list[tuple[str, str, int, str]] = []
        page.page.on("request", self._record)
        page.page.on("response", self._answered)

    def _record(self, sent) -> None:
        if sent.url.startswith(self.server) and sent.resource_type == "fetch":
            path = sent.url[len(self.server) :]
            self.requests.append((sent.method, path, dict(sent.headers)))

    def _answered(self, response) -> None:
        if response.status in (400, 401) and response.url.startswith(self.server):
            path = response.url[len(self.server) :].split("?")[0]
            error = response.json().get("error")
            method = response.request.method
            self.refusals.append((method, path, response.status, error))

    def to(self, method: str, path: str) -> list[dict]:
        """The headers of each request of `method` to `path` (its query left out)."""
        return [
            headers
            for sent_method, sent_path, headers in self.requests
            if sent_method == method and sent_path.split("?")[0] == path
        ]


def _check_proof(headers: dict, method: str, url: str, token: str | None) -> dict:
    """The DPoP header of a request: one well-formed ES256 proof of its method and
    URL (without the query), signed by the key it names, with `ath` exactly when
    a token is sent (`Authorization: DPoP <token>`). Returns its header and claims."""
    proof = headers["dpop"]
    header = jwt.get_unverified_header(proof)
    assert (header["typ"], header["alg"]) == ("dpop+jwt", "ES256")
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # the public key only
    public_key = ECAlgorithm.from_jwk(json.dumps(header["jwk"]))
    claims = jwt.decode(proof, public_key, algorithms=["ES256"], leeway=5)
    assert claims["htm"] == method and claims["htu"] == url.split("?")[0]
    assert abs(claims["iat"] - time.time()) < 30 and len(claims["jti"]) >= 16
    if token is None:
        assert "authorization" not in headers and "ath" not in claims
    else:
        assert headers["authorization"] == f"DPoP {token}"
        assert claims["ath"] == ath(token)
    return {"header": header, "claims": claims}


def _log_in(page: Page, user: str, mode: str = "header") -> None:
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")
    p.fill("#username", user)
    p.fill("#password", PASSWORD)
    p.click("#login-button")
    p.wait_for_selector("#items li")
    assert p.inner_text("#whoami") == user


def _bound_tokens(page: Page) -> tuple[dict, str]:
    """The page's last token answer (bound: token_type DPoP, both tokens' cnf.jkt
    the key's) and that thumbprint, as /demo shows it."""
    p = page.page
    p.wait_for_selector("#binding[data-token-type='DPoP']")
    assert p.inner_text("#token-type") == "DPoP"
    jkt = p.inner_text("#dpop-jkt")
    answer = json.loads(page.token_bodies[-1])
    assert answer["token_type"] == "DPoP", answer
    for name in ("access_token", "refresh_token"):
        assert _claims(answer[name])["cnf"] == {"jkt": jkt}, name
    return answer, jkt


def _silent_refresh(page: Page) -> None:
    """The access token expires; loading refreshes once, silently."""
    p = page.page
    count = int(p.get_attribute("#refresh-indicator", "data-count"))
    time.sleep(ACCESS_LIFETIME + 0.5)  # the access token expires in the browser
    p.click("#load-button")
    p.wait_for_selector(f"#refresh-indicator[data-count='{count + 1}']")
    p.wait_for_selector("#status:has-text('Loaded ')")
    assert not p.is_visible("#relogin")


def test_demo_header_mode_binds_the_session_and_refreshes_with_proofs(page, user):
    sent = Sent(page)
    _log_in(page, user)
    login, jkt = _bound_tokens(page)
    server = page.server
    # The list of sessions marks this one as bound, by the key's thumbprint.
    bound = page.page.wait_for_selector("#sessions li.current .key-bound")
    assert bound.get_attribute("data-jkt") == jkt

    [login_headers] = sent.to("POST", "/login")
    proof = _check_proof(login_headers, "POST", f"{server}/login", None)
    assert thumbprint(proof["header"]["jwk"]) == jkt
    first_items = sent.to("GET", "/item")[0]
    _check_proof(first_items, "GET", f"{server}/item?page=1", login["access_token"])

    _silent_refresh(page)
    assert page.refreshes == [200]
    [refresh_headers] = sent.to("POST", "/refresh")
    refresh = _check_proof(
        refresh_headers, "POST", f"{server}/refresh", login["refresh_token"]
    )
    assert thumbprint(refresh["header"]["jwk"]) == jkt
    refreshed, same = _bound_tokens(page)
    assert same == jkt and refreshed["access_token"] != login["access_token"]
    # The requests repeated after the refresh: the new token, a new proof.
    repeated = sent.to("GET", "/me")[-1]
    _check_proof(repeated, "GET", f"{server}/me", refreshed["access_token"])
    # A proof on every request, each with its own jti.
    proofs = [headers.get("dpop") for _, _, headers in sent.requests]
    assert None not in proofs
    jtis = [_claims(proof)["jti"] for proof in proofs]
    assert len(set(jtis)) == len(jtis)
    page.shot("dpop-bound")

    # A logout revokes with a proof of the key (no token: no ath), and forgets.
    page.page.click("#logout-button")
    page.page.wait_for_selector("#status:has-text('Logged out.')")
    [revoke_headers] = sent.to("POST", "/revoke")
    revoke = _check_proof(revoke_headers, "POST", f"{server}/revoke", None)
    assert thumbprint(revoke["header"]["jwk"]) == jkt
    assert page.calls[-1] == ("POST", "/revoke", 200)
    assert page.page.evaluate(KEPT) is None
    assert page.page.evaluate(KEY_RECORDS) == []
    assert not page.page.is_visible("#binding")


def test_the_key_in_indexeddb_is_not_extractable(page, user):
    _log_in(page, user)
    _, jkt = _bound_tokens(page)
    [record] = page.page.evaluate(KEY_RECORDS)
    assert record["extractable"] is False
    assert record["algorithm"] == {"name": "ECDSA", "namedCurve": "P-256"}
    assert record["usages"] == ["sign"]
    assert (record["asJwk"], record["asPkcs8"]) == ("InvalidAccessError",) * 2
    # Its public half is the key the tokens are bound to.
    assert thumbprint(record["publicJwk"]) == jkt
    assert page.page.evaluate(KEPT)["keyId"] == record["id"]


def test_a_reload_keeps_the_session_and_its_key(page, user):
    p = page.page
    _log_in(page, user)
    _, jkt = _bound_tokens(page)
    [record] = p.evaluate(KEY_RECORDS)
    logins = len([call for call in page.calls if call[1] == "/login"])

    p.reload()
    # No login asked: the session goes on.
    p.wait_for_selector("#status:has-text('Loaded ')")
    assert p.inner_text("#whoami") == user
    assert p.inner_text("#dpop-jkt") == jkt
    assert len([call for call in page.calls if call[1] == "/login"]) == logins
    _silent_refresh(page)  # the refresh token kept, the key from IndexedDB
    refreshed, same = _bound_tokens(page)
    assert same == jkt and _claims(refreshed["access_token"])["cnf"]["jkt"] == jkt
    assert p.evaluate(KEY_RECORDS) == [record]
    page.shot("dpop-reloaded")

    # A logout deletes the key; the next login makes a new one, the only one kept.
    p.click("#logout-button")
    p.wait_for_selector("#status:has-text('Logged out.')")
    assert p.evaluate(KEY_RECORDS) == [] and p.evaluate(KEPT) is None
    p.reload()  # nothing to resume
    p.wait_for_selector("#login-section:not([hidden])")
    assert p.is_hidden("#app-section")
    _log_in(page, user)
    _, new_jkt = _bound_tokens(page)
    [new_record] = p.evaluate(KEY_RECORDS)
    assert new_jkt != jkt and thumbprint(new_record["publicJwk"]) == new_jkt


def _refused_as_unbound(reply: requests.Response) -> None:
    """401 invalid_token in the JSON envelope, with a DPoP challenge."""
    assert reply.status_code == 401, reply.text
    body = reply.json()
    assert body["error"] == "invalid_token", body
    assert (body["code"], body["status"]) == (401, "Unauthorized")
    assert isinstance(body["message"], str) and body["message"]
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith("DPoP ") and 'error="invalid_token"' in challenge
    assert ALGS in challenge


def test_stolen_tokens_are_refused_outside_the_browser(page, user):
    _log_in(page, user)
    _, jkt = _bound_tokens(page)
    # An injected script (an XSS) reads the session the page keeps.
    stolen = page.page.evaluate(KEPT)
    access, refresh = stolen["accessToken"], stolen["refreshToken"]
    assert _claims(access)["cnf"]["jkt"] == jkt
    server = page.server

    def replay(method: str, path: str, token: str, scheme: str):
        headers = {"Authorization": f"{scheme} {token}"}
        if scheme == "DPoP":
            headers["DPoP"] = _other_proof(method, f"{server}{path}", token)
        return requests.request(
            method, f"{server}{path}", headers=headers, timeout=REQUEST_TIMEOUT
        )

    # (Within the access token's 3 seconds: refused for the key, not for its age.)
    _refused_as_unbound(replay("GET", "/me", access, "Bearer"))
    _refused_as_unbound(replay("GET", "/me", access, "DPoP"))
    _refused_as_unbound(replay("POST", "/refresh", refresh, "DPoP"))
    _refused_as_unbound(replay("POST", "/refresh", refresh, "Bearer"))

    # The page's session goes on: its requests, and its refresh with that token.
    _silent_refresh(page)
    assert page.refreshes == [200]
    assert _bound_tokens(page)[1] == jkt


def test_proofs_name_the_url_under_a_path_prefix(prefixed_page):
    """Behind nginx under /api, `htu` is the URL the browser sent (with the
    prefix), which the server rebuilds from the forwarded prefix."""
    page = prefixed_page
    user = create_user_with_an_item(page.server)
    sent = Sent(page)
    _log_in(page, user)  # at /api/demo
    login, jkt = _bound_tokens(page)
    [login_headers] = sent.to("POST", "/login")
    _check_proof(login_headers, "POST", f"{page.server}/login", None)
    _silent_refresh(page)
    [refresh_headers] = sent.to("POST", "/refresh")
    url = f"{page.server}/refresh"
    _check_proof(refresh_headers, "POST", url, login["refresh_token"])
    assert page.refreshes == [200] and _bound_tokens(page)[1] == jkt


def test_cookie_mode_sends_no_dpop_header(page, user):
    sent = Sent(page)
    _log_in(page, user, mode="cookie")
    # Listed, as a session of its own, and not as bound.
    page.page.wait_for_selector("#sessions li.current")
    assert page.page.locator("#sessions .key-bound").count() == 0
    _silent_refresh(page)
    page.page.click("#logout-button")
    page.page.wait_for_selector("#status:has-text('Logged out.')")

    paths = {path.split("?")[0] for _, path, _ in sent.requests}
    assert {"/login", "/me", "/item", "/refresh", "/logout"} <= paths
    for method, path, headers in sent.requests:
        assert "dpop" not in headers and "authorization" not in headers, (method, path)
    assert page.page.is_hidden("#binding")
    databases = page.page.evaluate(
        "async () => (await indexedDB.databases()).map((d) => d.name)"
    )
    assert "auth-client-dpop" not in databases


# AuthClient itself: a page of the demo's origin imports the module and drives it
# (Playwright's evaluate is not bound by the page's Content-Security-Policy).

BEARER_SCRIPT = """
async ({ base, username, password }) => {
  const { AuthClient, parseChallenge } = await import(`${base}/demo/auth-client.js`);
  const sent = [];
  // A server from before DPoP: the proofs never reach it, it answers Bearer.
  const fetchImpl = (url, init = {}) => {
    const headers = new Headers(init.headers || {});
    const path = new URL(url).pathname;
    sent.push([path, headers.get("Authorization"), headers.has("DPoP")]);
    headers.delete("DPoP");
    return fetch(url, { ...init, headers });
  };
  const old = new AuthClient({ baseUrl: base, fetchImpl, storageKey: "old" });
  const login = await old.login(username, password);
  const me = await old.fetch("/me").then((r) => r.status);
  const result = {
    asked: old.dpop,
    tokenType: [login.token_type, old.tokenType, old.dpopThumbprint],
    me,
    kept: sessionStorage.getItem("old"),
    resumed: await new AuthClient({ baseUrl: base, storageKey: "old" }).restore(),
  };
  await old.logout();
  // dpop: false asks for no binding at all.
  const off = new AuthClient({ baseUrl: base, dpop: false, fetchImpl });
  result.off = [off.dpop, (await off.login(username, password)).token_type];
  await off.logout();
  result.databases = (await indexedDB.databases()).map((d) => d.name);
  result.sent = sent;
  result.challenges = [
    parseChallenge('DPoP error="use_dpop_nonce", error_description="x, y", algs=ES256'),
    parseChallenge('Basic realm="a", DPoP realm=api, error=invalid_token, Bearer x=1'),
  ];
  return result;
}
"""


def test_auth_client_falls_back_to_bearer_for_a_server_that_answers_bearer(page, user):
    page.page.goto(f"{page.server}/demo")  # the module's origin, not logged in
    result = page.page.evaluate(
        BEARER_SCRIPT, {"base": page.server, "username": user, "password": PASSWORD}
    )
    assert result["asked"] is True
    assert result["tokenType"] == ["Bearer", "Bearer", None]
    assert result["me"] == 200
    # Unbound tokens stay in memory: nothing kept, nothing to resume, no key.
    assert (result["kept"], result["resumed"]) == (None, False)
    assert "auth-client-dpop" not in result["databases"]
    assert result["off"] == [False, "Bearer"]
    login, me, revoke, *off = result["sent"]
    assert login == ["/login", None, True]  # asked for binding
    assert me[0] == "/me" and me[1].startswith("Bearer ") and me[2] is False
    assert revoke == ["/revoke", None, False]
    assert off == [["/login", None, False], ["/revoke", None, False]]
    nonce, several = result["challenges"]
    assert nonce == {
        "error": "use_dpop_nonce",
        "error_description": "x, y",
        "algs": "ES256",
    }
    assert several == {"realm": "api", "error": "invalid_token"}


# -- Nonces (RFC 9449 §8): a server that requires them ---------------------------------


@pytest.fixture(scope="module")
def nonce_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dpop-nonce-server")
    with live_server(folder, ACCESS_LIFETIME, DPOP_NONCE_REQUIRED="true") as base:
        yield base


@pytest.fixture
def nonce_page(browser, nonce_server, tmp_path):
    with open_page(browser, nonce_server, tmp_path) as page:
        yield page


NONCE_SCRIPT = """
async ({ base }) => {
  const { AuthClient } = await import(`${base}/demo/auth-client.js`);
  // A second client of the page resumes the demo's session with no nonce yet:
  // its first request is refused for one, and sent again with a stream's body.
  const seen = [];
  const fetchImpl = async (url, init = {}) => {
    const response = await fetch(url, init);
    const { error } = response.ok ? {} : await response.clone().json();
    seen.push([new URL(url).pathname, response.status, error ?? null]);
    return response;
  };
  const client = new AuthClient({ baseUrl: base, fetchImpl });
  const resumed = await client.restore();
  const body = new Blob([JSON.stringify({ name: `nonce-${Date.now()}` })]).stream();
  const created = await client.fetch("/store", { method: "POST", body });
  return { resumed, created: [created.status, (await created.json()).name], seen };
}
"""


def test_nonces_are_fetched_and_retried(nonce_page):
    page = nonce_page
    user = create_user_with_an_item(page.server)
    sent = Sent(page)
    _log_in(page, user)
    _, jkt = _bound_tokens(page)
    # The first proof had no nonce: refused (400 at a login), sent again with it.
    assert page.calls[:2] == [("POST", "/login", 400), ("POST", "/login", 200)]
    assert sent.refusals[0] == ("POST", "/login", 400, "use_dpop_nonce")
    first, second = sent.to("POST", "/login")
    assert "nonce" not in _claims(first["dpop"])
    assert _claims(second["dpop"])["nonce"]
    assert _claims(first["dpop"])["jti"] != _claims(second["dpop"])["jti"]
    _silent_refresh(page)
    assert page.refreshes[-1] == 200
    assert _bound_tokens(page)[1] == jkt

    result = page.page.evaluate(NONCE_SCRIPT, {"base": page.server})
    assert result["resumed"] is True
    assert result["created"][0] == 201 and result["created"][1].startswith("nonce-")
    assert result["seen"] == [
        ["/store", 401, "use_dpop_nonce"],
        ["/store", 201, None],
    ]
    # Nothing else was refused but for a nonce or an expired access token.
    assert {refusal[3] for refusal in sent.refusals} <= {
        "use_dpop_nonce",
        "token_expired",
    }, sent.refusals
    page.shot("dpop-nonces")
