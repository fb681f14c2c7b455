"""Passkeys (issue 26) in a real browser: Debian's chromium driven by Playwright,
with Chromium's virtual authenticator (CDP's WebAuthn domain: a platform
authenticator that keeps resident keys and verifies the user without a prompt),
against a live gunicorn with 3-second access tokens reached at
http://localhost:PORT (browsers refuse WebAuthn on an IP address), in header mode
and in cookie mode.

- /demo: an account registered and logged in with its password in the page
  registers a passkey (the step-up dialog asks for the password: no passkey yet);
  after a logout, "Log in with a passkey" logs in with no username or password
  typed (a discoverable credential: the options name none); a fresh-only action
  (creating an item) steps up with the passkey in the same session; the passkey
  is listed, renamed and deleted (a step-up with it first), after which it logs
  in no more. The authenticator holds the credential as resident, and its
  signature counter moves at each use.
- AuthClient itself, in a browser without WebAuthn's JSON helpers (so the
  client's own base64url conversion runs): registerPasskey(), a second one on
  the same authenticator refused by the browser, loginWithPasskey({username})
  over a held session, reauthenticateWithPasskey() through onReauthenticate,
  listPasskeys(), renamePasskey(), deletePasskey(), and their refusals.

The browser, the server and the page are tests/browser/conftest.py's.
"""

import base64
import json
import secrets
import time

import pytest

from tests import servers
from tests.browser.pages import ACCESS_LIFETIME, Page
from tests.helpers import PASSWORD, TOKEN_KEYS

MODES = ["header", "cookie"]
DEVICE_BOUND = ["hwk", "user"]  # a passkey that is not backed up, as the virtual one
# CDP WebAuthn.VirtualAuthenticatorOptions: a platform authenticator (Touch ID,
# Windows Hello) that holds discoverable credentials and verifies the user, each
# ceremony answered at once.
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


class VirtualAuthenticator:
    """Chromium's virtual authenticator, attached to a page's tab."""

    def __init__(self, page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable")
        added = self.cdp.send(
            "WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR}
        )
        self.authenticator_id = added["authenticatorId"]

    def credentials(self) -> list[dict]:
        """The credentials it holds (WebAuthn.Credential: isResidentCredential,
        rpId, userHandle, signCount...)."""
        answer = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return answer["credentials"]


@pytest.fixture
def authenticator(passkey_page) -> VirtualAuthenticator:
    return VirtualAuthenticator(passkey_page.page)


def _unbase64url(text: str) -> bytes:
    """base64url without its padding (as JWTs and WebAuthn's JSON have it)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(token: str) -> dict:
    """A JWT's payload, not verified (the server checks the signature)."""
    return json.loads(_unbase64url(token.split(".")[1]))


def _access_claims(page: Page, mode: str) -> dict:
    """The claims of the page's access token: from its last token answer in header
    mode, from the HttpOnly cookie in cookie mode."""
    if mode == "header":
        bodies = [json.loads(body) for body in page.token_bodies]
        [*_, last] = [body for body in bodies if "access_token" in body]
        return _claims(last["access_token"])
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return _claims(cookies["access_token_cookie"])


def _not_fresh() -> None:
    time.sleep(ACCESS_LIFETIME + 0.5)  # refreshed on the way: not fresh


def _passkeys(p) -> list[str]:
    """The passkeys panel: the names listed, in its order."""
    return p.locator("#passkeys li .passkey-name").all_inner_texts()


def _sessions(p) -> list[str | None]:
    """The sessions panel: the id of each session listed."""
    return [
        row.get_attribute("data-session-id") for row in p.locator("#sessions li").all()
    ]


def _log_out(p) -> None:
    p.click("#logout-button")
    p.wait_for_selector("#status:has-text('Logged out.')")


def _step_up_with_the_passkey(page: Page, shot: str | None = None) -> None:
    """Answer the step-up dialog with the passkey (it offers one: the account has
    a passkey); a screenshot of the dialog first if `shot` names one."""
    p = page.page
    p.wait_for_selector("#relogin[open][data-purpose='step-up']")
    assert p.inner_text("#relogin-passkey") == "Step up with a passkey"
    assert "or use a passkey." in p.inner_text("#relogin-reason")
    if shot:
        page.shot(shot)
    p.click("#relogin-passkey")


def _ceremonies(page: Page) -> list[tuple[str, str, int]]:
    """The page's requests of ceremonies and of changes to passkeys, in order;
    without the refusals that a step-up or a refresh fixed (a request refused as
    not fresh, a 3-second access token that expired on the way), except a passkey
    login's."""
    return [
        call
        for call in page.calls
        if ("passkey" in call[1] or call[1].startswith("/reauthenticate"))
        and call[0] != "GET"  # the list, reloaded
        and (call[2] != 401 or call[1] == "/login/passkey")
    ]


@pytest.mark.parametrize("mode", MODES)
def test_demo_registers_a_passkey_logs_in_and_steps_up_with_it(
    passkey_page, authenticator, mode
):
    page = passkey_page
    p = page.page
    username = f"passkey_{secrets.token_hex(4)}"
    p.goto(f"{page.server}/demo?mode={mode}")
    # The browser converts WebAuthn's JSON itself (the test below runs the
    # client's own conversion).
    assert p.evaluate("typeof PublicKeyCredential.parseCreationOptionsFromJSON") == (
        "function"
    )

    # An account registered and logged in with its password, in the page.
    p.fill("#username", username)
    p.fill("#password", PASSWORD)
    p.click("#register-button")
    p.wait_for_selector(f"#status:has-text('Registered {username}: now log in.')")
    p.click("#login-button")
    p.wait_for_selector("#passkey-status[data-count='0']")
    assert p.inner_text("#passkey-status") == (
        "No passkey: register one to log in without a password."
    )
    assert _passkeys(p) == [] and _access_claims(page, mode)["amr"] == ["pwd"]
    p.fill("#store-name", f"shop-{username}")
    p.click("#create-store")
    p.wait_for_selector(f"#status:has-text('Created store shop-{username}.')")

    # Registering is fresh-only: with no passkey yet, the step-up dialog asks for
    # the password alone.
    _not_fresh()
    p.fill("#passkey-name", "laptop")
    p.click("#register-passkey")
    p.wait_for_selector("#relogin[open][data-purpose='step-up']")
    assert not p.is_visible("#relogin-passkey")
    assert "passkey" not in p.inner_text("#relogin-reason")
    p.fill("#relogin-password", PASSWORD)
    p.click("#relogin-button")
    p.wait_for_selector("#status:has-text('Registered passkey laptop.')")
    p.wait_for_selector("#passkey-status[data-count='1']")
    assert _passkeys(p) == ["laptop"]
    assert p.inner_text("#passkeys li .last-used") == "never"
    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"] is True
    assert credential["rpId"] == "localhost"
    # Chromium's virtual authenticator counts a registration too, then each
    # assertion.
    assert credential["signCount"] == 1
    page.shot(f"{mode}-passkey-registered")

    # After a logout, a login with the passkey: nothing typed, and the options
    # name no account (the authenticator offers its discoverable credential).
    _log_out(p)
    p.fill("#username", "")
    p.fill("#password", "")
    assert p.is_visible("#passkey-login-button")
    with p.expect_response("**/login/passkey/options") as asked:
        with p.expect_response("**/login/passkey") as logged_in:
            p.click("#passkey-login-button")
    assert asked.value.request.post_data_json == {}
    assert asked.value.status == 200
    options = asked.value.json()
    assert options["allowCredentials"] == [] and options["rpId"] == "localhost"
    assert options["userVerification"] == "required"
    assert logged_in.value.status == 200
    sent, answer = logged_in.value.request.post_data_json, logged_in.value.json()
    assert sent["credential"]["response"]["userHandle"]  # discoverable: names its user
    if mode == "header":
        assert "token_delivery" not in sent and set(answer) == TOKEN_KEYS
    else:
        # HttpOnly cookies: no token in the body, none that a script can read.
        assert sent["token_delivery"] == "cookie"
        assert not {"access_token", "refresh_token"} & set(answer), answer
        assert "access_token_cookie" not in p.evaluate("document.cookie")
    p.wait_for_selector("#app-section:not([hidden])")
    p.wait_for_selector("#passkey-status[data-count='1']")
    assert p.inner_text("#whoami") == username
    assert _access_claims(page, mode)["amr"] == DEVICE_BOUND
    [credential] = authenticator.credentials()
    assert credential["signCount"] == 2
    page.shot(f"{mode}-passkey-logged-in")

    # A fresh-only action (creating an item) with a token that is not fresh: the
    # step-up dialog offers the passkey; the same session, stepped up.
    p.wait_for_selector("#sessions li.current")
    [family] = _sessions(p)
    _not_fresh()
    p.fill("#item-name", f"Lamp {mode}")
    p.click("#create-item")
    _step_up_with_the_passkey(page, f"{mode}-passkey-step-up-dialog")
    p.wait_for_selector(f"#status:has-text('Created item Lamp {mode}.')")
    assert not p.is_visible("#relogin")
    assert _access_claims(page, mode)["amr"] == DEVICE_BOUND
    assert _access_claims(page, mode)["fam"] == family
    p.wait_for_selector(f"#sessions li.current[data-session-id='{family}']")
    assert _sessions(p) == [family]
    [credential] = authenticator.credentials()
    assert credential["signCount"] == 3
    assert [c for c in page.calls if c[:2] == ("POST", "/item")][-1][2] == 201
    page.shot(f"{mode}-passkey-stepped-up")

    # Renamed in the panel (no step-up: any access token will do); used since.
    row = p.locator("#passkeys li")
    row.locator("input.new-name").fill("work laptop")
    row.locator("button[type='submit']").click()
    p.wait_for_selector("#status:has-text('Renamed the passkey to work laptop.')")
    assert _passkeys(p) == ["work laptop"]
    assert p.get_attribute("#passkeys li .last-used", "datetime")

    # Deleting is fresh-only: a step-up with the passkey, then it is gone.
    _not_fresh()
    p.click("#passkeys li .delete-passkey")
    _step_up_with_the_passkey(page)
    p.wait_for_selector("#status:has-text('Passkey deleted.')")
    p.wait_for_selector("#passkey-status[data-count='0']")
    assert _passkeys(p) == []
    page.shot(f"{mode}-passkey-deleted")

    # The authenticator still holds it (only its owner can remove it there), but
    # it logs in no more.
    _log_out(p)
    p.click("#passkey-login-button")
    p.wait_for_selector("#status.error:has-text('Passkey login failed')")
    assert p.is_visible("#login-section") and not p.is_visible("#app-section")
    [credential] = authenticator.credentials()
    assert credential["signCount"] == 5  # the deletion's step-up, this login

    ceremonies = _ceremonies(page)
    passkey_path = ceremonies[-3][1]  # DELETE /me/passkeys/{id}
    assert ceremonies == [
        ("POST", "/reauthenticate", 200),  # the password
        ("POST", "/me/passkeys/options", 200),
        ("POST", "/me/passkeys", 201),
        ("POST", "/login/passkey/options", 200),
        ("POST", "/login/passkey", 200),
        ("POST", "/reauthenticate/options", 200),
        ("POST", "/reauthenticate", 200),  # the passkey: the item
        ("PATCH", passkey_path, 200),
        ("POST", "/reauthenticate/options", 200),
        ("POST", "/reauthenticate", 200),  # the passkey: the deletion
        ("DELETE", passkey_path, 200),
        ("POST", "/login/passkey/options", 200),
        ("POST", "/login/passkey", 401),  # deleted
    ], page.calls
    assert passkey_path.startswith("/me/passkeys/")


# AuthClient itself: a page of the demo's origin imports the module and drives it
# (Playwright's evaluate is not bound by the page's Content-Security-Policy).

CLIENT_SCRIPT = """
async ({ base, mode, username, password }) => {
  // A browser without WebAuthn's JSON helpers (Chromium before 129, Safari before
  // 18.4...): the client converts base64url and ArrayBuffers itself.
  delete PublicKeyCredential.parseCreationOptionsFromJSON;
  delete PublicKeyCredential.parseRequestOptionsFromJSON;
  delete PublicKeyCredential.prototype.toJSON;
  const { AuthClient } = await import(`${base}/demo/auth-client.js`);
  // "resolved", or what the promise rejected with: [name, code, status].
  const outcome = (promise) =>
    promise.then(
      () => "resolved",
      (error) => [
        error.name,
        error instanceof DOMException ? null : error.code,
        error.status ?? null,
      ],
    );
  const result = {
    helpers: [
      typeof PublicKeyCredential.parseCreationOptionsFromJSON,
      typeof PublicKeyCredential.parseRequestOptionsFromJSON,
      typeof PublicKeyCredential.prototype.toJSON,
    ],
    asked: [],
    sent: {},
  };
  let stepUpWith = "password"; // until there is a passkey
  const client = new AuthClient({
    baseUrl: base,
    mode,
    // The last body sent to each path.
    fetchImpl: (url, init = {}) => {
      if (typeof init.body === "string") {
        result.sent[new URL(url).pathname] = JSON.parse(init.body);
      }
      return fetch(url, init);
    },
    async onReauthenticate(details, self) {
      result.asked.push([stepUpWith, details.maxAge]);
      if (stepUpWith === "passkey") await self.reauthenticateWithPasskey();
      else await self.reauthenticate(password);
      return true;
    },
  });
  const sessions = async () => (await client.sessions()).map((s) => s.id);
  const post = (path, body) =>
    client.fetch(path, { method: "POST", body: JSON.stringify(body) });

  await client.login(username, password);
  const store = await post("/store", { name: `s-${username}` }).then((r) => r.json());
  await client.refresh(); // not fresh: registering steps up (the password)
  result.registered = await client.registerPasskey("phone");
  stepUpWith = "passkey";
  result.listed = await client.listPasskeys();

  const before = await sessions();
  await client.refresh(); // not fresh: the item steps up (the passkey)
  const item = { name: "Lamp", price: 1, store_id: store.id };
  result.item = await post("/item", item).then((r) => r.status);
  result.sameSession = [before, await sessions()];
  result.renamed = await client.renamePasskey(result.registered.id, "old phone");

  // The same authenticator again: its passkey is excluded, the browser refuses.
  await client.refresh();
  result.again = await outcome(client.registerPasskey("phone again"));

  // A passkey login over the session the client holds: that one ends first.
  result.login = await client.loginWithPasskey({ username });
  result.loginOptions = result.sent["/login/passkey/options"];
  result.loginBody = result.sent["/login/passkey"];
  result.afterLogin = await sessions();
  result.me = await client
    .fetch("/me")
    .then((r) => r.json())
    .then((me) => me.username);

  await client.refresh(); // not fresh: deleting steps up (the passkey)
  result.deleted = await client.deletePasskey(result.registered.id);
  result.afterDelete = await client.listPasskeys();
  result.noPasskeys = await outcome(client.reauthenticateWithPasskey());
  result.stillLoggedIn = client.loggedIn;
  await client.logout();
  result.notLoggedIn = await outcome(client.reauthenticateWithPasskey());
  result.deletedLogin = await outcome(client.loginWithPasskey());
  result.afterRefused = client.loggedIn;
  return result;
}
"""


@pytest.mark.parametrize("mode", MODES)
def test_auth_client_passkeys_without_the_browsers_json_helpers(
    passkey_page, authenticator, mode
):
    page = passkey_page
    p = page.page
    username = f"passkey_{secrets.token_hex(4)}"
    servers.register(page.server, username)
    p.goto(f"{page.server}/demo?mode={mode}")  # the module's origin, not logged in
    result = p.evaluate(
        CLIENT_SCRIPT,
        {"base": page.server, "mode": mode, "username": username, "password": PASSWORD},
    )

    assert result["helpers"] == ["undefined"] * 3
    registered = result["registered"]
    assert set(registered) == {"id", "name", "created_at", "last_used_at"}
    assert (registered["name"], registered["last_used_at"]) == ("phone", None)
    # RegistrationResponseJSON as the client builds it: the members the server
    # reads (a browser's toJSON() adds more), base64url without padding.
    credential = result["sent"]["/me/passkeys"]["credential"]
    assert set(credential) == {
        "id",
        "rawId",
        "type",
        "authenticatorAttachment",
        "clientExtensionResults",
        "response",
    }
    assert credential["id"] == credential["rawId"] and "=" not in credential["rawId"]
    assert (credential["type"], credential["authenticatorAttachment"]) == (
        "public-key",
        "platform",
    )
    assert set(credential["response"]) == {
        "clientDataJSON",
        "attestationObject",
        "transports",
    }
    assert credential["response"]["transports"] == ["internal"]
    client_data = json.loads(_unbase64url(credential["response"]["clientDataJSON"]))
    assert client_data["type"] == "webauthn.create"
    assert client_data["origin"] == page.server
    assert [row["name"] for row in result["listed"]] == ["phone"]

    assert result["item"] == 201
    before, after = result["sameSession"]
    assert before == after and len(after) == 1
    assert result["renamed"]["name"] == "old phone"
    assert result["renamed"]["last_used_at"] is not None  # the step-up
    assert result["again"] == ["InvalidStateError", None, None]

    # The login with a username: options naming that account's passkey.
    assert result["loginOptions"] == {"username": username}
    login_body = result["loginBody"]
    assert set(login_body["credential"]["response"]) == {
        "clientDataJSON",
        "authenticatorData",
        "signature",
        "userHandle",
    }
    if mode == "header":
        assert "token_delivery" not in login_body
        assert set(result["login"]) == TOKEN_KEYS
        assert _claims(result["login"]["access_token"])["amr"] == DEVICE_BOUND
    else:
        assert login_body["token_delivery"] == "cookie"
        assert not {"access_token", "refresh_token"} & set(result["login"])
    [new_session] = result["afterLogin"]  # the held one ended first
    assert new_session not in before
    assert result["me"] == username

    assert result["deleted"] == {"message": "Passkey deleted."}
    assert result["afterDelete"] == []
    assert result["noPasskeys"] == ["ApiError", "no_passkeys", 409]
    assert result["stillLoggedIn"] is True
    assert result["notLoggedIn"] == [
        "LoginRequiredError",
        "authorization_required",
        None,
    ]
    assert result["deletedLogin"] == ["LoginRequiredError", "invalid_credential", None]
    assert result["afterRefused"] is False
    # Registering: the password (no passkey yet); then the item, the second
    # registration and the deletion: the passkey.
    assert result["asked"] == [
        ["password", 300],
        ["passkey", 900],
        ["passkey", 300],
        ["passkey", 300],
    ]

    [held] = authenticator.credentials()  # the second registration made none
    assert held["isResidentCredential"] is True
    # Counted: the registration, the item's, the second registration's and the
    # deletion's step-ups, the login and the refused login.
    assert held["signCount"] == 6
    reauthentications = [c[2] for c in page.calls if c[1] == "/reauthenticate"]
    assert reauthentications.count(200) == 4, page.calls
    assert [c[2] for c in page.calls if c[1] == "/login/passkey"] == [200, 401]
