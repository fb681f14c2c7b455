// The demo page: a small app on top of AuthClient, no build step.
import {
  ApiError,
  AuthClient,
  LoginRequiredError,
  passkeysSupported,
} from "./auth-client.js";

// The API is where this module's folder is mounted (<mount path>/demo/demo.js):
// the site's root, or the path prefix a proxy serves the API under.
const API_BASE = new URL("..", import.meta.url);

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const mode = params.get("mode") === "cookie" ? "cookie" : "header";
let username = "";
let loggingOut = false;
let totpOn = false; // as GET /me/mfa last said
let passkeyCount = 0; // as GET /me/passkeys last said
// WebAuthn runs on a domain only (http://localhost, not http://127.0.0.1).
const withPasskeys = passkeysSupported() && !/^[\d.]+$|^\[/.test(location.hostname);

const api = new AuthClient({
  baseUrl: API_BASE.href,
  mode,
  onRefresh(count) {
    const indicator = $("refresh-indicator");
    indicator.dataset.count = String(count);
    indicator.textContent = `silently refreshed ${count} time${count === 1 ? "" : "s"}`;
    // This session's "last used" has just moved (unless the refresh was for a
    // logout: cookie mode refreshes to log out with an expired access token).
    if (!loggingOut) showSessions();
  },
  onLoginRequired: askToLogInAgain,
  onReauthenticate: askToStepUp,
});

$("mode").textContent = mode;
$("switch-mode").href = mode === "cookie" ? "?mode=header" : "?mode=cookie";
$("passkey-login-button").hidden = !withPasskeys;
$("passkey-login-hint").hidden = !withPasskeys;

// A bound session of this tab survives a reload (header mode: its key in
// IndexedDB, its tokens in sessionStorage); an unbound one does not.
api
  .restore()
  .then((restored) => restored && showApp())
  .catch((error) => status(error.message, true));

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function json(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.error, body.message);
  return body;
}

// What the user typed as a second factor, for AuthClient: six digits are a TOTP
// code (an app may show them as "123 456"), anything else a recovery code; the
// server tells which is neither. Null for nothing typed.
function secondFactor(typed) {
  const text = typed.trim();
  if (!text) return null;
  const digits = text.replace(/\s+/g, "");
  return /^[0-9]{6}$/.test(digits) ? digits : { recoveryCode: text };
}

// What a refused second factor (or password) means to the user, or null when
// asking again would not help.
const RETRY_PROBLEMS = {
  invalid_credentials: "Wrong password: try again.",
  invalid_code: "Wrong code (or used already): try again.",
  mfa_required: "This account has a second factor: enter a code from your app too.",
  validation_error: "That is not a code: 6 digits, or a recovery code.",
  invalid_credential: "This passkey was not accepted: try another, or your password.",
  challenge_expired: "That took too long: try again.",
  no_passkeys: "You have no passkey any more: use your password.",
};

// What a passkey ceremony the browser ended means to the user (a DOMException:
// NotAllowedError when cancelled or timed out).
function ceremonyProblem(error) {
  if (!(error instanceof DOMException)) return null;
  return error.name === "NotAllowedError"
    ? "The passkey was not used (cancelled, or it took too long): try again."
    : `The passkey did not answer (${error.name}): try again.`;
}

// Why asking again may help, or null when it would not.
function retryProblem(error) {
  if (error instanceof ApiError) return RETRY_PROBLEMS[error.code] || null;
  return ceremonyProblem(error);
}

// The dialog, for a login, its code or a step-up: resolves to `{password, code}`
// as typed, to `{passkey: true}` when the user chose a passkey instead, or null if
// they cancel. `problem` is shown under the reason (a retry); `password` and
// `code` say which fields it asks for; `passkey`, the passkey button's text (none:
// no button).
function ask({
  purpose,
  reason,
  button,
  problem = "",
  password = true,
  code = false,
  passkey = "",
}) {
  const dialog = $("relogin");
  dialog.dataset.purpose = purpose;
  $("relogin-reason").textContent = reason;
  $("relogin-problem").textContent = problem;
  $("relogin-problem").hidden = !problem;
  $("relogin-button").textContent = button;
  $("relogin-passkey").textContent = passkey;
  $("relogin-passkey").hidden = !passkey;
  $("relogin-password-label").hidden = !password;
  $("relogin-code-label").hidden = !code;
  $("relogin-password").value = "";
  $("relogin-code").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const answer = dialog.returnValue;
        if (answer === "passkey") return resolve({ passkey: true });
        if (answer !== "login") return resolve(null);
        const password = $("relogin-password").value;
        return resolve({ password, code: $("relogin-code").value });
      },
      { once: true },
    );
  });
}

// onLoginRequired: resolves to true once the user has logged in again (a new
// session: AuthClient ends the one it held first), false if they cancel.
async function askToLogInAgain(code) {
  const typed = await ask({
    purpose: "login",
    reason:
      code === "fresh_token_required"
        ? "This needs a fresh login: please enter your password again."
        : `Your session ended (${code}): please log in again.`,
    button: "Log in",
    passkey: withPasskeys && passkeyCount > 0 ? "Log in with a passkey" : "",
  });
  if (typed === null) return false;
  try {
    if (typed.passkey) {
      await api.loginWithPasskey({ username });
    } else {
      const result = await api.login(username, typed.password);
      if (result.mfaRequired && !(await askForLoginCode())) return false;
    }
    status("Logged in again.");
    showBinding(); // a new key
    showSessions(); // a login is a new session
    return true;
  } catch (error) {
    status(`Login failed: ${ceremonyProblem(error) || error.message}`, true);
    return false;
  }
}

// The second step of a login in the dialog: true once logged in, false if the
// user cancels; a wrong code is asked again, a login that expired rejects.
async function askForLoginCode() {
  let problem = "";
  for (;;) {
    const typed = await ask({
      purpose: "login-code",
      reason: "Enter the code your authenticator app shows, or a recovery code.",
      button: "Log in",
      problem,
      password: false,
      code: true,
    });
    if (typed === null) return false;
    try {
      await api.completeMfa(secondFactor(typed.code) ?? "");
      return true;
    } catch (error) {
      // An ApiError: the login still waits (a wrong code, a rate limit...).
      if (!(error instanceof ApiError)) throw error;
      problem = RETRY_PROBLEMS[error.code] || error.message;
    }
  }
}

// onReauthenticate: a fresh-only action was refused (RFC 9470's step-up). The
// password again (and a code, for an account with a second factor), or one of the
// user's passkeys, in this session (no new one); a wrong one is asked again.
// Resolves to true once stepped up, false if the user cancels.
async function askToStepUp({ maxAge, codeRequired }) {
  const within = maxAge === null ? "" : ` (within ${maxAge} s)`;
  let problem = "";
  let withCode = codeRequired || totpOn;
  for (;;) {
    const offerPasskey = withPasskeys && passkeyCount > 0;
    const typed = await ask({
      purpose: "step-up",
      reason:
        `This needs a fresh login${within}: please confirm your password` +
        `${withCode ? " and a code from your authenticator app" : ""}` +
        `${offerPasskey ? ", or use a passkey" : ""}. ` +
        "You stay in this session.",
      button: "Confirm",
      problem,
      code: withCode,
      passkey: offerPasskey ? "Step up with a passkey" : "",
    });
    if (typed === null) return false;
    try {
      if (typed.passkey) {
        status("Choose a passkey…");
        await api.reauthenticateWithPasskey();
        status("Passkey confirmed: same session.");
        showPasskeys(); // its "last used" moved
      } else {
        const second = withCode ? secondFactor(typed.code) : null;
        await api.reauthenticate(typed.password, second);
        const proved = withCode ? "Password and code" : "Password";
        status(`${proved} confirmed: same session.`);
      }
      showSessions(); // the session's "authenticated" time moved
      return true;
    } catch (error) {
      problem = retryProblem(error);
      if (error instanceof ApiError && error.code === "no_passkeys") passkeyCount = 0;
      if (problem) {
        withCode ||= error.code === "mfa_required";
        continue;
      }
      status(`Step-up failed: ${error.message}`, true);
      return false;
    }
  }
}

// The session's tokens: DPoP-bound (and the key's thumbprint) or Bearer; nothing
// in cookie mode, whose cookies are never bound.
function showBinding() {
  const tokenType = api.tokenType || "";
  $("binding").dataset.tokenType = tokenType;
  $("binding").hidden = !tokenType;
  $("token-type").textContent = tokenType;
  $("binding-key").hidden = !api.dpopThumbprint;
  $("dpop-jkt").textContent = api.dpopThumbprint || "";
}

async function showApp() {
  showBinding();
  const me = await json(await api.fetch("/me"));
  username = me.username; // a passkey login typed none
  $("whoami").textContent = me.username;
  $("login-section").hidden = true;
  $("app-section").hidden = false;
  showSessions();
  showMfa();
  showPasskeys();
  await loadItems();
}

function showLogin(text) {
  showBinding();
  $("app-section").hidden = true;
  $("login-section").hidden = false;
  showLoginStep("password");
  $("sessions").replaceChildren();
  $("passkeys").replaceChildren();
  hideEnrolment();
  hideRecoveryCodes();
  status(text);
}

// The login section's step: the password form, or the second factor's.
function showLoginStep(step, problem = "") {
  $("login-form").hidden = step !== "password";
  $("mfa-form").hidden = step !== "code";
  $("mfa-code").value = "";
  $("mfa-problem").textContent = problem;
  $("mfa-problem").hidden = !problem;
  if (step === "code") $("mfa-code").focus();
}

// "HeadlessChrome/120 ... (X11; Linux x86_64)" -> "HeadlessChrome on Linux"; a user
// agent it does not know is shown as it is.
const BROWSERS = ["Edg", "OPR", "Firefox", "HeadlessChrome", "Chrome", "Safari"];
const SYSTEMS = [
  ["Windows", "Windows"],
  ["Android", "Android"],
  ["iPhone", "iOS"],
  ["Mac OS X", "macOS"],
  ["CrOS", "ChromeOS"],
  ["Linux", "Linux"],
];

/** A <time> of this class for an ISO 8601 moment, in local time ("never": none). */
function moment(className, iso) {
  const time = document.createElement("time");
  time.className = className;
  if (iso) {
    time.dateTime = iso;
    time.textContent = new Date(iso).toLocaleString();
  } else {
    time.textContent = "never";
  }
  return time;
}

function device(userAgent) {
  if (!userAgent) return "Unknown device";
  const browser = BROWSERS.find((name) => userAgent.includes(`${name}/`));
  if (!browser) return userAgent.length > 60 ? `${userAgent.slice(0, 60)}…` : userAgent;
  const system = SYSTEMS.find(([mark]) => userAgent.includes(mark));
  return system ? `${browser} on ${system[1]}` : browser;
}

function sessionItem(session) {
  const li = document.createElement("li");
  li.dataset.sessionId = session.id;
  li.classList.toggle("current", session.current);
  const name = document.createElement("strong");
  name.className = "device";
  name.textContent = device(session.user_agent);
  name.title = session.user_agent || "";
  const used = moment("last-used", session.last_used_at);
  const authenticated = moment("authenticated-at", session.authenticated_at);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "end-session";
  // Ending this device's own session is a logout.
  button.textContent = session.current ? "Log out" : "End";
  button.addEventListener("click", () =>
    (session.current ? logOut() : endSession(session.id)).catch((error) =>
      status(error.message, true),
    ),
  );
  li.append(name);
  if (session.current) {
    const mark = document.createElement("span");
    mark.className = "this-device";
    mark.textContent = "this device";
    li.append(" (", mark, ")");
  }
  const address = session.ip_address || "unknown address";
  li.append(" · last used ", used, " · identity confirmed ", authenticated);
  if (session.dpop_jkt) {
    // Its tokens work only with proofs of this key (RFC 9449): named by thumbprint.
    const bound = document.createElement("span");
    bound.className = "key-bound";
    bound.dataset.jkt = session.dpop_jkt;
    bound.title = `DPoP key ${session.dpop_jkt}`;
    bound.textContent = "bound to a key";
    li.append(" · ", bound);
  }
  li.append(` · ${address} `, button);
  return li;
}

let sessionsAsked = 0;

// Several may be on their way (a refresh during a login...): the last one asked wins.
async function loadSessions() {
  const asked = ++sessionsAsked;
  const sessions = await api.sessions();
  if (asked !== sessionsAsked || $("app-section").hidden) return;
  $("sessions").replaceChildren(...sessions.map(sessionItem));
}

function showSessions() {
  loadSessions().catch((error) => {
    // Refused after a logout is no news.
    if (!$("app-section").hidden) status(`Sessions: ${error.message}`, true);
  });
}

async function endSession(id) {
  await api.endSession(id);
  await loadSessions();
  status("Session ended.");
}

async function logOut() {
  loggingOut = true;
  try {
    await api.logout();
  } finally {
    loggingOut = false;
    showLogin("Logged out.");
  }
}

async function loadItems() {
  status("Loading…");
  // Several requests at once: after the access token expired they all get a 401,
  // and the client still refreshes only once.
  const [items, stores] = await Promise.all([
    api.fetch("/item?page=1&page_size=20").then(json),
    api.fetch("/store?page=1&page_size=100").then(json),
    api.fetch("/me").then(json),
  ]);
  $("items").replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      li.textContent = `${item.name} — ${item.price.toFixed(2)} (${item.store.name})`;
      return li;
    }),
  );
  $("item-store").replaceChildren(
    ...stores.map((store) => new Option(store.name, String(store.id))),
  );
  status(`Loaded ${items.length} item${items.length === 1 ? "" : "s"}.`);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  username = $("username").value;
  try {
    const result = await api.login(username, $("password").value);
    if (result.mfaRequired) {
      showLoginStep("code");
      status("Password right: now a code.");
      return;
    }
    await showApp();
  } catch (error) {
    status(`Login failed: ${error.message}`, true);
  }
});

$("mfa-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api.completeMfa(secondFactor($("mfa-code").value) ?? "");
  } catch (error) {
    if (error instanceof LoginRequiredError) {
      // invalid_mfa_token: expired, used, or spent on wrong codes.
      showLoginStep("password");
      status(`Login failed: ${error.message}: log in again.`, true);
    } else {
      // The login still waits (a wrong code, a rate limit...): ask again.
      showLoginStep("code", RETRY_PROBLEMS[error.code] || error.message);
    }
    return;
  }
  showLoginStep("password");
  await showApp().catch((error) => status(error.message, true));
});

$("mfa-cancel").addEventListener("click", () => showLogin("Log in again."));

// No username or password: the browser offers the passkeys it holds for this site.
$("passkey-login-button").addEventListener("click", async () => {
  status("Choose a passkey…");
  try {
    await api.loginWithPasskey();
  } catch (error) {
    const reason = ceremonyProblem(error) || error.message;
    status(`Passkey login failed: ${reason}`, true);
    return;
  }
  await showApp().catch((error) => status(error.message, true));
});

$("register-button").addEventListener("click", async () => {
  const response = await fetch(new URL("register", API_BASE), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  const body = await response.json();
  status(response.ok ? `Registered ${body.username}: now log in.` : body.message, !response.ok);
});

$("load-button").addEventListener("click", () =>
  loadItems().catch((error) => status(error.message, true)),
);

$("store-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const store = await json(
      await api.fetch("/store", {
        method: "POST",
        body: JSON.stringify({ name: $("store-name").value }),
      }),
    );
    await loadItems();
    status(`Created store ${store.name}.`);
  } catch (error) {
    status(error.message, true);
  }
});

$("item-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const item = await json(
      await api.fetch("/item", {
        method: "POST",
        body: JSON.stringify({
          name: $("item-name").value,
          price: Number($("item-price").value),
          store_id: Number($("item-store").value),
        }),
      }),
    );
    await loadItems();
    status(`Created item ${item.name}.`);
  } catch (error) {
    status(error.message, true);
  }
});

$("end-others-button").addEventListener("click", async () => {
  try {
    const { message } = await api.endOtherSessions();
    await loadSessions();
    status(message);
  } catch (error) {
    status(error.message, true);
  }
});

$("logout-button").addEventListener("click", () =>
  logOut().catch((error) => status(`Logged out here, but: ${error.message}`, true)),
);

// -- The second factor: TOTP and recovery codes (docs/mfa.md) ------------------------
// Turning it on, renewing the codes and turning it off need a token fresh within
// 300 s: when refused, the step-up dialog asks (fetch() calls onReauthenticate).

async function loadMfa() {
  const state = await json(await api.fetch("/me/mfa"));
  totpOn = state.totp;
  const left = state.recovery_codes_left;
  $("mfa-status").dataset.totp = totpOn ? "on" : "off";
  $("mfa-status").textContent = totpOn
    ? `TOTP is on · ${left} recovery code${left === 1 ? "" : "s"} left.`
    : "TOTP is off: your password alone logs you in.";
  $("totp-on-button").hidden = totpOn;
  $("recovery-codes-button").hidden = !totpOn;
  $("totp-off-button").hidden = !totpOn;
}

function showMfa() {
  loadMfa().catch((error) => {
    if (!$("app-section").hidden) status(`Second factor: ${error.message}`, true);
  });
}

function hideEnrolment() {
  $("enrolment").hidden = true;
  $("totp-qr").removeAttribute("src");
  $("totp-secret").textContent = "";
  $("confirm-problem").hidden = true;
}

// Shown once: the server never answers them again, and the page forgets them
// when dismissed (or at a logout).
function showRecoveryCodes(codes) {
  $("recovery-code-list").replaceChildren(
    ...codes.map((code) => {
      const li = document.createElement("li");
      li.textContent = code;
      return li;
    }),
  );
  $("recovery-codes").hidden = false;
}

function hideRecoveryCodes() {
  $("recovery-code-list").replaceChildren();
  $("recovery-codes").hidden = true;
}

async function startTotp() {
  const enrolment = await json(await api.fetch("/me/mfa/totp", { method: "POST" }));
  hideRecoveryCodes();
  // Server text goes in as an image (an SVG image runs no script) and as text:
  // never as HTML.
  const svg = encodeURIComponent(enrolment.qr_svg);
  $("totp-qr").src = `data:image/svg+xml;charset=utf-8,${svg}`;
  $("totp-secret").textContent = enrolment.secret;
  $("confirm-code").value = "";
  $("confirm-problem").hidden = true;
  $("enrolment").hidden = false;
  status("Scan the QR code, then enter the code your app shows.");
}

async function confirmTotp() {
  const code = $("confirm-code").value.replace(/\s+/g, "");
  const response = await api.fetch("/me/mfa/totp/confirm", {
    method: "POST",
    body: JSON.stringify({ code }),
  });
  let codes;
  try {
    ({ recovery_codes: codes } = await json(response));
  } catch (error) {
    const problem = error instanceof ApiError ? RETRY_PROBLEMS[error.code] : null;
    if (!problem) throw error;
    $("confirm-problem").textContent = problem;
    $("confirm-problem").hidden = false;
    return;
  }
  hideEnrolment();
  showRecoveryCodes(codes);
  await loadMfa();
  status("TOTP is on: a login now asks for a code.");
}

async function renewRecoveryCodes() {
  const { recovery_codes: codes } = await json(
    await api.fetch("/me/mfa/recovery-codes", { method: "POST" }),
  );
  showRecoveryCodes(codes);
  await loadMfa();
  status("New recovery codes: the old ones no longer work.");
}

async function turnTotpOff() {
  await json(await api.fetch("/me/mfa/totp", { method: "DELETE" }));
  hideEnrolment();
  hideRecoveryCodes();
  await loadMfa();
  status("TOTP is off: your password alone logs you in.");
}

for (const [id, action] of [
  ["totp-on-button", startTotp],
  ["recovery-codes-button", renewRecoveryCodes],
  ["totp-off-button", turnTotpOff],
]) {
  $(id).addEventListener("click", () => action().catch((error) => status(error.message, true)));
}

$("confirm-form").addEventListener("submit", (event) => {
  event.preventDefault();
  confirmTotp().catch((error) => status(error.message, true));
});

$("recovery-codes-done").addEventListener("click", hideRecoveryCodes);

// -- Passkeys (WebAuthn) -------------------------------------------------------------
// Registering and deleting one need a token fresh within 300 s: when refused, the
// step-up dialog asks (for the password, or a passkey once there is one).

function passkeyItem(passkey) {
  const li = document.createElement("li");
  li.dataset.passkeyId = String(passkey.id);
  const name = document.createElement("strong");
  name.className = "passkey-name";
  name.textContent = passkey.name;
  const created = moment("created-at", passkey.created_at);
  const used = moment("last-used", passkey.last_used_at);
  const rename = document.createElement("form");
  rename.className = "rename-passkey";
  const label = document.createElement("label");
  const input = document.createElement("input");
  input.className = "new-name";
  input.required = true;
  input.maxLength = 80;
  input.placeholder = "new name";
  label.append("Rename to ", input);
  const renameButton = document.createElement("button");
  renameButton.type = "submit";
  renameButton.textContent = "Rename";
  rename.append(label, renameButton);
  rename.addEventListener("submit", (event) => {
    event.preventDefault();
    renamePasskey(passkey.id, input.value).catch((error) =>
      status(error.message, true),
    );
  });
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete-passkey";
  remove.textContent = "Delete";
  remove.addEventListener("click", () =>
    deletePasskey(passkey.id).catch((error) => status(error.message, true)),
  );
  li.append(name, " · registered ", created, " · last used ", used);
  li.append(" ", rename, " ", remove);
  return li;
}

let passkeysAsked = 0;

// As the sessions: the last one asked wins.
async function loadPasskeys() {
  const asked = ++passkeysAsked;
  let passkeys;
  try {
    passkeys = await api.listPasskeys();
  } catch (error) {
    // A server without a relying party (an IP address for PUBLIC_URL) has none.
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    passkeys = null;
  }
  if (asked !== passkeysAsked || $("app-section").hidden) return;
  passkeyCount = passkeys ? passkeys.length : 0;
  const state = $("passkey-status");
  state.dataset.count = passkeys ? String(passkeyCount) : "";
  if (!passkeys) {
    state.textContent = "This server offers no passkeys.";
  } else if (!withPasskeys) {
    state.textContent = "This browser cannot use passkeys here (a domain is needed).";
  } else if (passkeyCount === 0) {
    state.textContent = "No passkey: register one to log in without a password.";
  } else {
    const count = `${passkeyCount} passkey${passkeyCount === 1 ? "" : "s"}`;
    state.textContent = `${count}: logging in with one needs no username or password.`;
  }
  $("passkey-form").hidden = !(passkeys && withPasskeys);
  $("passkeys").replaceChildren(...(passkeys || []).map(passkeyItem));
}

function showPasskeys() {
  loadPasskeys().catch((error) => {
    if (!$("app-section").hidden) status(`Passkeys: ${error.message}`, true);
  });
}

async function registerPasskey() {
  status("Confirm with your authenticator…");
  let passkey;
  try {
    passkey = await api.registerPasskey($("passkey-name").value);
  } catch (error) {
    const reason = ceremonyProblem(error) || error.message;
    status(`No passkey registered: ${reason}`, true);
    return;
  }
  $("passkey-name").value = "";
  await loadPasskeys();
  status(`Registered passkey ${passkey.name}.`);
}

async function renamePasskey(id, name) {
  const passkey = await api.renamePasskey(id, name);
  await loadPasskeys();
  status(`Renamed the passkey to ${passkey.name}.`);
}

async function deletePasskey(id) {
  const { message } = await api.deletePasskey(id);
  await loadPasskeys();
  status(message);
}

$("passkey-form").addEventListener("submit", (event) => {
  event.preventDefault();
  registerPasskey().catch((error) => status(error.message, true));
});
