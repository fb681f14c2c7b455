"""TOTP (issue 25) in a real browser: Debian's chromium driven by Playwright,
against the live gunicorn of tests/browser/conftest.py (3-second access tokens),
in header mode and in cookie mode.

- /demo: turning TOTP on (the QR code shown as an image, the secret as text, a
  first code computed from that secret), the ten recovery codes shown once; a
  login that asks for a code, refuses a wrong one and asks again; a recovery code
  that logs in once and not twice; the fresh-only operations (turn on, new
  recovery codes, turn off) through the step-up dialog, which asks for a code with
  the password once the account has TOTP (a recovery code will do too); the
  dialog that logs in again after the session ended, asking for a code too.
- AuthClient itself: login() resolving to {mfaRequired, mfaToken}; completeMfa()
  refusing a wrong code with the login still waiting, then completing it; the
  step-up hook told codeRequired and reauthenticate(password, code); wrong codes
  ending the waiting login; onMfaRequired.

A code is good once per account and per step: each account confirms its
enrolment with the previous step's code and leaves the current one for its next
use, so no test waits for a new step (at most a few seconds, when a step is about
to end under a code that must reach the server within it).
"""

import base64
import json
import re
import secrets
import time

import pytest

from tests import mfa, servers
from tests.browser.pages import ACCESS_LIFETIME, Page
from tests.helpers import PASSWORD, TOKEN_KEYS
from tests.servers import request

RECOVERY_CODE = re.compile(r"[a-z2-7]{4}(?:-[a-z2-7]{4}){3}")
BOTH_FACTORS = ["pwd", "otp"]
MODES = ["header", "cookie"]


@pytest.fixture
def user(server) -> str:
    """A registered user without TOTP (and no session): the username."""
    username = f"mfa_{secrets.token_hex(4)}"
    servers.register(server, username)
    return username


def _totp_user(server: str) -> mfa.TotpUser:
    """A registered user with TOTP on and no session left."""
    username = f"totp_{secrets.token_hex(4)}"
    servers.register(server, username)
    secret, codes = mfa.enrol_live(server, username)
    return mfa.TotpUser(username, secret, codes)


@pytest.fixture
def totp_user(server) -> mfa.TotpUser:
    return _totp_user(server)


def _claims(token: str) -> dict:
    """A JWT's payload, not verified (the server checks the signature)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _amr(page: Page, mode: str) -> list[str]:
    """What the page's access token says was proved: from its last token answer
    in header mode, from the HttpOnly cookie in cookie mode."""
    if mode == "header":
        bodies = [json.loads(body) for body in page.token_bodies]
        [*_, last] = [body for body in bodies if "access_token" in body]
        return _claims(last["access_token"])["amr"]
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return _claims(cookies["access_token_cookie"])["amr"]


def _submit_password(p, username: str) -> None:
    p.fill("#username", username)
    p.fill("#password", PASSWORD)
    p.click("#login-button")


def _log_out(p) -> None:
    p.click("#logout-button")
    p.wait_for_selector("#status:has-text('Logged out.')")


def _not_fresh() -> None:
    time.sleep(ACCESS_LIFETIME + 0.5)  # refreshed on the way: not fresh


def _step_up(p, *, code: str | None, code_field: bool) -> None:
    """Answer the step-up dialog: the password, and `code` if given; the code
    field is shown when `code_field`."""
    p.wait_for_selector("#relogin[open][data-purpose='step-up']")
    assert p.is_visible("#relogin-code") is code_field
    assert ("and a code" in p.inner_text("#relogin-reason")) is code_field
    p.fill("#relogin-password", PASSWORD)
    if code is not None:
        p.fill("#relogin-code", code)
    p.click("#relogin-button")


def _recovery_codes(p) -> list[str]:
    p.wait_for_selector("#recovery-codes:not([hidden])")
    codes = p.locator("#recovery-code-list li").all_inner_texts()
    assert len(codes) == 10 and all(RECOVERY_CODE.fullmatch(c) for c in codes), codes
    return codes


def _turn_totp_on(page: Page, mode: str) -> tuple[str, list[str]]:
    """In the demo, logged in without TOTP: turn it on through two step-ups (each
    fresh-only call is refused first); the secret and the recovery codes shown."""
    p = page.page
    _not_fresh()
    p.click("#totp-on-button")
    _step_up(p, code=None, code_field=False)  # no TOTP yet: the password alone
    p.wait_for_selector("#enrolment:not([hidden])")
    secret = p.inner_text("#totp-secret")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    qr = p.locator("#totp-qr")
    assert qr.get_attribute("src").startswith("data:image/svg+xml;charset=utf-8,%3Csvg")
    # Shown as an image: the SVG renders (a broken one is 0 pixels wide).
    assert qr.evaluate("img => img.complete && img.naturalWidth") > 0
    page.shot(f"{mode}-totp-enrolment")

    _not_fresh()
    # The previous step's code, still good after the step-up on its way.
    p.fill("#confirm-code", mfa.code_with_time_left(secret, steps_ago=1, seconds=10))
    p.click("#confirm-button")
    _step_up(p, code=None, code_field=False)
    codes = _recovery_codes(p)
    assert not p.is_visible("#enrolment") and p.inner_text("#totp-secret") == ""
    p.wait_for_selector("#mfa-status[data-totp='on']")
    assert p.inner_text("#mfa-status") == "TOTP is on · 10 recovery codes left."
    page.shot(f"{mode}-totp-recovery-codes")
    # Shown once: dismissed, they are gone from the page.
    p.click("#recovery-codes-done")
    assert not p.is_visible("#recovery-codes")
    assert not any(code in p.content() for code in codes)
    return secret, codes


@pytest.mark.parametrize("mode", MODES)
def test_demo_turns_totp_on_and_steps_up_with_a_code(page, user, mode):
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")
    _submit_password(p, user)
    p.wait_for_selector("#mfa-status[data-totp='off']")
    assert (
        p.inner_text("#mfa-status") == "TOTP is off: your password alone logs you in."
    )
    assert p.is_visible("#totp-on-button") and not p.is_visible("#totp-off-button")

    secret, codes = _turn_totp_on(page, mode)

    # New recovery codes (fresh-only): the dialog now asks for a code too; the
    # password alone is refused with mfa_required and asked again.
    _not_fresh()
    p.click("#recovery-codes-button")
    _step_up(p, code=None, code_field=True)
    p.wait_for_selector("#relogin-problem:has-text('This account has a second factor')")
    _step_up(p, code=mfa.code(secret), code_field=True)
    renewed = _recovery_codes(p)
    assert not set(renewed) & set(codes)
    assert _amr(page, mode) == BOTH_FACTORS
    reauthentications = [c[2] for c in page.calls if c[1] == "/reauthenticate"]
    # (A 401 token_expired, refreshed, may come between on a slow machine.)
    assert reauthentications.count(200) == 3, page.calls
    assert [c[1] for c in page.calls].count("/login") == 1  # all in one session

    # A recovery code logs in once (the login form asks for a code)...
    _log_out(p)
    _submit_password(p, user)
    p.wait_for_selector("#mfa-form:not([hidden])")
    assert not p.is_visible("#login-form")
    page.shot(f"{mode}-totp-login-asks-for-a-code")
    p.fill("#mfa-code", renewed[0])
    p.click("#mfa-button")
    p.wait_for_selector("#mfa-status:has-text('9 recovery codes left')")
    assert p.inner_text("#whoami") == user
    assert _amr(page, mode) == BOTH_FACTORS
    # ... and not twice.
    _log_out(p)
    _submit_password(p, user)
    p.fill("#mfa-code", renewed[0])
    p.click("#mfa-button")
    p.wait_for_selector("#mfa-problem:has-text('Wrong code (or used already)')")
    assert p.is_visible("#mfa-form") and not p.is_visible("#app-section")
    p.click("#mfa-cancel")
    assert p.is_visible("#login-form") and not p.is_visible("#mfa-form")
    assert [c[2] for c in page.calls if c[1] == "/login/mfa"] == [200, 401]


@pytest.mark.parametrize("mode", MODES)
def test_demo_asks_for_a_code_at_login_and_turns_totp_off(page, totp_user, mode):
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")
    _submit_password(p, totp_user.username)
    p.wait_for_selector("#mfa-form:not([hidden])")
    assert p.inner_text("#status") == "Password right: now a code."

    p.fill("#mfa-code", mfa.wrong_code(totp_user.secret))
    p.click("#mfa-button")
    p.wait_for_selector("#mfa-problem:has-text('Wrong code (or used already): try')")
    assert p.is_visible("#mfa-form") and p.input_value("#mfa-code") == ""
    page.shot(f"{mode}-totp-wrong-code")
    code = mfa.code(totp_user.secret)
    p.fill("#mfa-code", f"{code[:3]} {code[3:]}")  # as an app shows it
    p.click("#mfa-button")
    # (The list is every user's items on the shared server: not always 0.)
    p.wait_for_selector("#status:has-text('Loaded ')")
    p.wait_for_selector("#mfa-status[data-totp='on']")
    assert p.inner_text("#mfa-status") == "TOTP is on · 10 recovery codes left."
    assert p.inner_text("#whoami") == totp_user.username
    assert _amr(page, mode) == BOTH_FACTORS
    logins = [c for c in page.calls if c[1] in ("/login", "/login/mfa")]
    assert logins == [
        ("POST", "/login", 401),
        ("POST", "/login/mfa", 401),
        ("POST", "/login/mfa", 200),
    ]
    if mode == "header":
        [waiting, *_] = [json.loads(body) for body in page.token_bodies]
        assert waiting["error"] == "mfa_required" and "access_token" not in waiting

    # Turning it off (fresh-only): the step-up dialog asks for a code at once (this
    # login proved one); a recovery code will do.
    _not_fresh()
    p.click("#totp-off-button")
    _step_up(p, code=totp_user.recovery_codes[0], code_field=True)
    p.wait_for_selector("#mfa-status[data-totp='off']")
    assert p.is_visible("#totp-on-button")
    # From now on the password alone logs in.
    _log_out(p)
    _submit_password(p, totp_user.username)
    p.wait_for_selector("#status:has-text('Loaded ')")
    assert not p.is_visible("#mfa-form")
    assert [c[2] for c in page.calls if c[1] == "/login"] == [401, 200]
    assert _amr(page, mode) == ["pwd"]


def _refresh_token(page: Page, mode: str) -> str:
    """The page's refresh token now: from its last token answer in header mode,
    from the HttpOnly cookie in cookie mode."""
    if mode == "header":
        bodies = [json.loads(body) for body in page.token_bodies]
        [*_, last] = [body for body in bodies if "refresh_token" in body]
        return last["refresh_token"]
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies["refresh_token_cookie"]


def _end_from_another_login(page: Page, mode: str, user: mfa.TotpUser) -> None:
    """End the page's session from another login of its user (a recovery code as
    the second factor): DELETE /me/sessions/{id}. (Its refresh token itself is of
    no use outside the page in header mode: it is DPoP-bound to the page's key.)"""
    family = _claims(_refresh_token(page, mode))["fam"]
    body = {"username": user.username, "password": PASSWORD}
    waiting = request(page.server, "POST", "/login", body=body)
    assert (waiting.status, waiting.error) == (401, "mfa_required"), waiting.body
    body = {
        "mfa_token": waiting.body["mfa_token"],
        "recovery_code": user.recovery_codes[1],
    }
    elsewhere = request(page.server, "POST", "/login/mfa", body=body)
    assert elsewhere.status == 200, elsewhere.body
    token = elsewhere.body["access_token"]
    ended = request(page.server, "DELETE", f"/me/sessions/{family}", token=token)
    assert ended.status == 200, ended.body


@pytest.mark.parametrize("mode", MODES)
def test_demo_logs_in_again_with_a_code_when_the_session_ends(page, totp_user, mode):
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")
    _submit_password(p, totp_user.username)
    p.fill("#mfa-code", totp_user.recovery_codes[0])
    p.click("#mfa-button")
    p.wait_for_selector("#status:has-text('Loaded ')")
    # The session ends elsewhere; once the access token expires, the refresh is
    # refused and the dialog asks for a new login.
    _end_from_another_login(page, mode, totp_user)
    _not_fresh()
    p.click("#load-button")
    p.wait_for_selector("#relogin[open][data-purpose='login']")
    assert not p.is_visible("#relogin-code")
    p.fill("#relogin-password", PASSWORD)
    p.click("#relogin-button")

    # The password was right: the dialog asks for a code, again after a wrong one.
    p.wait_for_selector("#relogin[open][data-purpose='login-code']")
    assert p.is_visible("#relogin-code") and not p.is_visible("#relogin-password")
    p.fill("#relogin-code", mfa.wrong_code(totp_user.secret))
    p.click("#relogin-button")
    p.wait_for_selector("#relogin-problem:has-text('Wrong code (or used already)')")
    p.fill("#relogin-code", mfa.code(totp_user.secret))
    p.click("#relogin-button")
    p.wait_for_selector("#status:has-text('Loaded ')")
    page.shot(f"{mode}-totp-logged-in-again")

    assert not p.is_visible("#relogin")
    assert _amr(page, mode) == BOTH_FACTORS
    logins = [c for c in page.calls if c[1] in ("/login", "/login/mfa")]
    assert logins == [
        ("POST", "/login", 401),
        ("POST", "/login/mfa", 200),
        ("POST", "/login", 401),
        ("POST", "/login/mfa", 401),
        ("POST", "/login/mfa", 200),
    ]
    assert 401 in page.refreshes  # the refused refresh that asked for the login


# AuthClient itself: a page of the demo's origin imports the module and drives it
# (Playwright's evaluate is not bound by the page's Content-Security-Policy).

CLIENT_SCRIPT = """
async ({ base, mode, password, a, b, wrongCode }) => {
  const { AuthClient } = await import(`${base}/demo/auth-client.js`);
  // "resolved", or what the promise rejected with: [name, code, status].
  const outcome = (promise) =>
    promise.then(
      () => "resolved",
      (error) => [error.name, error.code, error.status ?? null],
    );
  const result = { asked: [] };
  const client = new AuthClient({
    baseUrl: base,
    mode,
    async onReauthenticate(details, self) {
      result.asked.push(details);
      result.passwordAlone = await outcome(self.reauthenticate(password));
      await self.reauthenticate(password, a.code);
      return true;
    },
  });

  const waiting = await client.login(a.username, password);
  result.waiting = {
    keys: Object.keys(waiting).sort(),
    mfaRequired: waiting.mfaRequired,
    tokenLength: waiting.mfaToken.length,
    loggedIn: client.loggedIn,
    pending: client.mfaPending,
  };
  result.wrong = await outcome(client.completeMfa(wrongCode));
  result.pendingAfterWrong = client.mfaPending;
  result.completed = await client.completeMfa({ recoveryCode: a.recoveryCodes[0] });
  result.afterCompleted = [client.loggedIn, client.mfaPending, client.codeRequired];

  await client.refresh(); // not fresh any more
  const made = await client.fetch("/me/api-tokens", {
    method: "POST",
    body: JSON.stringify({ name: "nightly" }),
  });
  result.made = made.status;
  result.sessions = (await client.sessions()).length;
  result.nothingWaits = await outcome(client.completeMfa(wrongCode));

  // The used recovery code, then wrong codes, until the waiting login ends.
  await client.logout();
  await client.login(a.username, password);
  result.refusals = [];
  let second = { recoveryCode: a.recoveryCodes[0] };
  while (client.mfaPending && result.refusals.length < 8) {
    result.refusals.push((await outcome(client.completeMfa(second)))[1]);
    second = wrongCode;
  }
  result.atEnd = [client.loggedIn, client.mfaPending];

  // onMfaRequired: login() completes the login through the hook.
  const hooked = new AuthClient({
    baseUrl: base,
    mode,
    async onMfaRequired({ mfaToken }, self) {
      result.hookGot = typeof mfaToken;
      await self.completeMfa({ code: b.code });
      return true;
    },
  });
  result.hookedLogin = await hooked.login(b.username, password);
  result.hookedMe = (await (await hooked.fetch("/me")).json()).username;
  await hooked.logout();
  return result;
}
"""


def _assert_tokens_of_both_factors(answer: dict, mode: str) -> None:
    """A /login/mfa answer: the token pair proving both factors (header mode),
    none in the body (cookie mode)."""
    if mode == "header":
        assert set(answer) == TOKEN_KEYS
        assert _claims(answer["access_token"])["amr"] == BOTH_FACTORS
    else:
        assert not {"access_token", "refresh_token"} & set(answer), answer


@pytest.mark.parametrize("mode", MODES)
def test_auth_client_completes_a_login_and_steps_up_with_a_code(page, server, mode):
    a, b = _totp_user(server), _totp_user(server)
    p = page.page
    p.goto(f"{page.server}/demo?mode={mode}")  # the module's origin, not logged in
    result = p.evaluate(
        CLIENT_SCRIPT,
        {
            "base": page.server,
            "mode": mode,
            "password": PASSWORD,
            "a": {
                "username": a.username,
                "code": mfa.code(a.secret),
                "recoveryCodes": a.recovery_codes,
            },
            "b": {"username": b.username, "code": mfa.code(b.secret)},
            "wrongCode": mfa.wrong_code(a.secret),
        },
    )

    waiting = result["waiting"]
    assert waiting["keys"] == ["mfaRequired", "mfaToken"]
    assert waiting["mfaRequired"] is True and waiting["tokenLength"] >= 43
    assert (waiting["loggedIn"], waiting["pending"]) == (False, True)
    # A wrong code: refused, and the login still waits for the right one.
    assert result["wrong"] == ["ApiError", "invalid_code", 401]
    assert result["pendingAfterWrong"] is True
    _assert_tokens_of_both_factors(result["completed"], mode)
    assert result["afterCompleted"] == [True, False, True]
    # The step-up: the hook knows a code is needed; the password alone is refused.
    assert result["asked"] == [
        {"maxAge": 300, "message": "The token is not fresh.", "codeRequired": True}
    ]
    assert result["passwordAlone"] == ["ApiError", "mfa_required", 401]
    assert result["made"] == 201 and result["sessions"] == 1
    assert result["nothingWaits"] == ["LoginRequiredError", "invalid_mfa_token", None]
    # A recovery code is good once; the fifth wrong code ends the waiting login.
    assert result["refusals"] == ["invalid_code"] * 5 + ["invalid_mfa_token"]
    assert result["atEnd"] == [False, False]
    assert result["hookGot"] == "string"
    _assert_tokens_of_both_factors(result["hookedLogin"], mode)
    assert result["hookedMe"] == b.username

    # (A 3-second access token may expire on the way: a 401 token_expired and a
    # refresh come in between, left out.)
    reauthentications = [c[2] for c in page.calls if c[1] == "/reauthenticate"]
    assert reauthentications.count(200) == 1, page.calls
    assert [c[2] for c in page.calls if c[1] == "/login/mfa"] == [
        401,
        200,
        *[401] * 6,
        200,
    ]
    assert [c[2] for c in page.calls if c[1] == "/login"] == [401, 401, 401]
