"""Step-up inside the session (issue 24) in a real browser: Debian's chromium
driven by Playwright, against a live gunicorn with 3-second access tokens, in
header mode and in cookie mode.

- /demo: a fresh-only action (creating an item) refused with the RFC 9470
  challenge opens the step-up dialog; a wrong password is asked again, the right
  one steps up with POST /reauthenticate and the item is created; the sessions
  panel lists ONE session, the same, before and after every step-up (issue 24's
  point 1: each step-up used to be a login that left a session behind).
- AuthClient itself (clients/js/auth-client.js, imported by a page of the demo's
  origin): step-ups through onReauthenticate with the route's max_age, one for
  requests refused together; a wrong password rejects and leaves the session; a
  login over a held session ends it first; without the hook, onLoginRequired.

The browser, the server and the page are tests/browser/conftest.py's.
"""

import base64
import json
import secrets
import time

import pytest

from tests import servers
from tests.browser.pages import ACCESS_LIFETIME, Page
from tests.helpers import PASSWORD
from tests.servers import request

WRONG_PASSWORD = "not the password at all"
STEP_UPS = 3  # AuthClient's rounds of step-ups


@pytest.fixture
def user(server) -> str:
    """A registered user with a store and no session left: the username."""
    username = f"stepper_{secrets.token_hex(4)}"
    _, tokens = servers.sign_up(server, username)
    token = tokens["access_token"]
    body = {"name": f"shop-{username}"}
    assert request(server, "POST", "/store", token=token, body=body).status == 201
    assert request(server, "POST", "/logout", token=token).status == 200
    return username


def _claims(token: str) -> dict:
    """A JWT's payload, not verified (the server checks the signature)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _login_family(page: Page, mode: str) -> str:
    """The session (`fam`) the page's login started: from the /login answer in
    header mode, from the HttpOnly access cookie in cookie mode."""
    if mode == "header":
        return _claims(json.loads(page.token_bodies[0])["access_token"])["fam"]
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return _claims(cookies["access_token_cookie"])["fam"]


def _listed(p) -> list[tuple[str | None, bool]]:
    """The sessions panel: (id, marked current) of each row, in its order."""
    return [
        (row.get_attribute("data-session-id"), "current" in row.get_attribute("class"))
        for row in p.locator("#sessions li").all()
    ]


def _step_up_in_the_demo(page: Page, item: str, *, mistype: bool) -> None:
    """Create `item` with a token that is not fresh: the step-up dialog, a wrong
    password first if `mistype`, then the right one; the item is created."""
    p = page.page
    time.sleep(ACCESS_LIFETIME + 0.5)  # refreshed on the way: not fresh
    p.fill("#item-name", item)
    p.click("#create-item")
    p.wait_for_selector("#relogin[open][data-purpose='step-up']")
    assert "within 900 s" in p.inner_text("#relogin-reason")
    assert "You stay in this session." in p.inner_text("#relogin-reason")
    assert p.inner_text("#relogin-button") == "Confirm"
    if mistype:
        p.fill("#relogin-password", WRONG_PASSWORD)
        p.click("#relogin-button")
        p.wait_for_selector("#relogin-problem:has-text('Wrong password: try again.')")
        assert p.is_visible("#relogin[open][data-purpose='step-up']")
    p.fill("#relogin-password", PASSWORD)
    p.click("#relogin-button")
    p.wait_for_selector(f"#status:has-text('Created item {item}')")
    assert not p.is_visible("#relogin")


@pytest.mark.parametrize("mode", ["header", "cookie"])
def test_demo_steps_up_in_the_session_and_lists_one_session(page, user, mode):
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")
    p.fill("#username", user)
    p.fill("#password", PASSWORD)
    p.click("#login-button")
    p.wait_for_selector("#sessions li.current")
    family = _login_family(page, mode)
    assert _listed(p) == [(family, True)]
    authenticated = p.get_attribute("#sessions li time.authenticated-at", "datetime")
    page.shot(f"{mode}-step-up-before")

    for round_, mistype in enumerate((True, False), start=1):
        _step_up_in_the_demo(page, f"Lamp {mode} {round_}", mistype=mistype)
        if round_ == 1:
            page.shot(f"{mode}-step-up-done")
        # The panel reloads after the step-up: the same single session, whose
        # "identity confirmed" time has moved.
        moved = f"#sessions li time.authenticated-at:not([datetime='{authenticated}'])"
        p.wait_for_selector(moved)
        assert _listed(p) == [(family, True)]
        authenticated = p.get_attribute(moved, "datetime")

    reauthentications = [c[2] for c in page.calls if c[1] == "/reauthenticate"]
    # (A 401 token_expired, refreshed, may come between on a slow machine.)
    assert reauthentications.count(200) == 2, page.calls
    assert reauthentications[0] == 401  # the wrong password
    assert [c for c in page.calls if c[1] == "/login"] == [("POST", "/login", 200)]
    assert page.revocations == [] and set(page.refreshes) == {200}
    items = [c for c in page.calls if c[:2] == ("POST", "/item")]
    assert items[-1] == ("POST", "/item", 201) and len(items) >= 4
    page.shot(f"{mode}-step-up-after")


# AuthClient itself: a page of the demo's origin imports the module and drives it
# (Playwright's evaluate is not bound by the page's Content-Security-Policy).

CLIENT_SCRIPT = """
async ({ base, mode, username, password, wrongPassword, rounds }) => {
  const { AuthClient, parseChallenge } = await import(`${base}/demo/auth-client.js`);
  const asked = [];
  const loginAsked = [];
  const client = new AuthClient({
    baseUrl: base,
    mode,
    async onReauthenticate(details, self) {
      asked.push(details);
      await self.reauthenticate(password);
      return true;
    },
    onLoginRequired: async (code) => loginAsked.push(code) && false,
  });
  const sessions = async (c) =>
    (await c.sessions()).map((s) => [s.id, s.current, s.authenticated_at]);
  const post = (c, path, body) =>
    c.fetch(path, { method: "POST", body: JSON.stringify(body) }).then((r) => r.status);

  await client.login(username, password);
  const result = { before: await sessions(client), rounds: [] };
  const shop = { name: `s-${username}` };
  const store = await client
    .fetch("/store", { method: "POST", body: JSON.stringify(shop) })
    .then((r) => r.json());
  const item = (name) => ({ name, price: 1, store_id: store.id });
  for (let round = 0; round < rounds; round += 1) {
    await client.refresh(); // not fresh any more
    // Two requests refused together: one step-up for both.
    const statuses = await Promise.all(
      ["a", "b"].map((n) => post(client, "/item", item(`${n}${round}`))),
    );
    result.rounds.push({ statuses, sessions: await sessions(client) });
  }
  await client.refresh();
  result.account = await post(client, "/me/api-tokens", { name: "nightly" });
  result.asked = asked;

  await client.refresh();
  try {
    await client.reauthenticate(wrongPassword);
  } catch (error) {
    result.wrong = [error.name, error.code, error.status];
  }
  result.afterWrong = await sessions(client);

  await client.login(username, password); // over the session it holds
  result.afterLogin = await sessions(client);

  // Without onReauthenticate: onLoginRequired, whose login ends the held session.
  const fallback = new AuthClient({
    baseUrl: base,
    mode,
    async onLoginRequired(code, self) {
      loginAsked.push(code);
      await self.login(username, password);
      return true;
    },
  });
  await client.logout();
  await fallback.login(username, password);
  result.fallbackBefore = await sessions(fallback);
  await fallback.refresh();
  result.fallbackItem = await post(fallback, "/item", item("f"));
  result.fallbackAfter = await sessions(fallback);
  result.loginAsked = loginAsked;
  const stepUp = "error=insufficient_user_authentication";
  result.challenges = [
    parseChallenge(`Bearer realm="api", ${stepUp.replace("=", '="')}", max_age="300"`),
    parseChallenge(`Bearer ${stepUp}, max_age=300`),
    parseChallenge('Basic realm="api"'),
  ];
  return result;
}
"""


@pytest.mark.parametrize("mode", ["header", "cookie"])
def test_auth_client_steps_up_without_forking_sessions(page, user, mode):
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")  # the module's origin, not logged in
    result = p.evaluate(
        CLIENT_SCRIPT,
        {
            "base": page.server,
            "mode": mode,
            "username": user,
            "password": PASSWORD,
            "wrongPassword": WRONG_PASSWORD,
            "rounds": STEP_UPS,
        },
    )

    [(family, current, authenticated)] = result["before"]
    assert current is True
    for round_ in result["rounds"]:
        assert round_["statuses"] == [201, 201], result
        [(listed, current, moved)] = round_["sessions"]  # one session, every time
        assert (listed, current) == (family, True)
        assert moved >= authenticated
        authenticated = moved
    not_fresh = "The token is not fresh."
    assert result["asked"] == [
        *[{"maxAge": 900, "message": not_fresh, "codeRequired": False}] * STEP_UPS,
        # POST /me/api-tokens: account
        {"maxAge": 300, "message": not_fresh, "codeRequired": False},
    ]
    assert result["account"] == 201
    assert result["wrong"] == ["ApiError", "invalid_credentials", 401]
    assert [row[0] for row in result["afterWrong"]] == [family]
    [(new_family, current, _)] = result["afterLogin"]
    assert new_family != family and current is True
    # The fallback's login over its own session: still one, a new one.
    [(fallback_family, _, _)] = result["fallbackBefore"]
    assert result["fallbackItem"] == 201
    [(after_fallback, current, _)] = result["fallbackAfter"]
    assert after_fallback not in (fallback_family, new_family) and current is True
    assert result["loginAsked"] == ["fresh_token_required"]
    quoted, bare, other = result["challenges"]
    assert quoted == {
        "realm": "api",
        "error": "insufficient_user_authentication",
        "max_age": "300",
    }
    assert bare == {"error": "insufficient_user_authentication", "max_age": "300"}
    assert other == {}

    # (A 3-second access token may expire on the way: a 401 token_expired and a
    # refresh come in between, left out.)
    reauthentications = [c[2] for c in page.calls if c[1] == "/reauthenticate"]
    assert reauthentications.count(200) == STEP_UPS + 1, page.calls
    assert reauthentications[-1] == 401  # the wrong password
    # A login; a login over that session, which ends it first; a logout; the
    # fallback's login; its login over its own session, which ends it first.
    end = "/revoke" if mode == "header" else "/logout"
    sessions_calls = [
        c[1]
        for c in page.calls
        if c[1] in ("/login", "/logout", "/revoke") and c[2] == 200
    ]
    assert sessions_calls == ["/login", end, "/login", end, "/login", end, "/login"]
