// The demo page: a small app on top of AuthClient, no build step.
import { ApiError, AuthClient } from "./auth-client.js";

// The API is where this module's folder is mounted (<mount path>/demo/demo.js):
// the site's root, or the path prefix a proxy serves the API under.
const API_BASE = new URL("..", import.meta.url);

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const mode = params.get("mode") === "cookie" ? "cookie" : "header";
let username = "";
let loggingOut = false;

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

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function json(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status} ${body.error}: ${body.message}`);
  return body;
}

// The password dialog, for a login or a step-up: resolves to the password typed,
// or null if the user cancels. `problem` is shown under the reason (a retry).
function askForPassword({ purpose, reason, button, problem = "" }) {
  const dialog = $("relogin");
  dialog.dataset.purpose = purpose;
  $("relogin-reason").textContent = reason;
  $("relogin-problem").textContent = problem;
  $("relogin-problem").hidden = !problem;
  $("relogin-button").textContent = button;
  $("relogin-password").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "login" ? $("relogin-password").value : null),
      { once: true },
    );
  });
}

// onLoginRequired: resolves to true once the user has logged in again (a new
// session: AuthClient ends the one it held first), false if they cancel.
async function askToLogInAgain(code) {
  const password = await askForPassword({
    purpose: "login",
    reason:
      code === "fresh_token_required"
        ? "This needs a fresh login: please enter your password again."
        : `Your session ended (${code}): please log in again.`,
    button: "Log in",
  });
  if (password === null) return false;
  try {
    await api.login(username, password);
    status("Logged in again.");
    showSessions(); // a login is a new session
    return true;
  } catch (error) {
    status(`Login failed: ${error.message}`, true);
    return false;
  }
}

// onReauthenticate: a fresh-only action was refused (RFC 9470's step-up). The
// password again, in this session (no new one); a wrong one is asked again.
// Resolves to true once stepped up, false if the user cancels.
async function askToStepUp({ maxAge }) {
  const within = maxAge === null ? "" : ` (within ${maxAge} s)`;
  let problem = "";
  for (;;) {
    const password = await askForPassword({
      purpose: "step-up",
      reason:
        `This needs a fresh login${within}: please confirm your password. ` +
        "You stay in this session.",
      button: "Confirm",
      problem,
    });
    if (password === null) return false;
    try {
      await api.reauthenticate(password);
      status("Password confirmed: same session.");
      showSessions(); // the session's "authenticated" time moved
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.code === "invalid_credentials") {
        problem = "Wrong password: try again.";
        continue;
      }
      status(`Step-up failed: ${error.message}`, true);
      return false;
    }
  }
}

async function showApp() {
  const me = await json(await api.fetch("/me"));
  $("whoami").textContent = me.username;
  $("login-section").hidden = true;
  $("app-section").hidden = false;
  showSessions();
  await loadItems();
}

function showLogin(text) {
  $("app-section").hidden = true;
  $("login-section").hidden = false;
  $("sessions").replaceChildren();
  status(text);
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
  const used = document.createElement("time");
  used.className = "last-used";
  used.dateTime = session.last_used_at;
  used.textContent = new Date(session.last_used_at).toLocaleString();
  const authenticated = document.createElement("time");
  authenticated.className = "authenticated-at";
  authenticated.dateTime = session.authenticated_at;
  authenticated.textContent = new Date(session.authenticated_at).toLocaleString();
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
  li.append(" · last used ", used, " · password confirmed ", authenticated);
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
    await api.login(username, $("password").value);
    await showApp();
  } catch (error) {
    status(`Login failed: ${error.message}`, true);
  }
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
