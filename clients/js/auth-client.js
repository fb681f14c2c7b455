// auth-client.js — a dependency-free ES module for browser apps of the Stores API.
//
// A `fetch` wrapper that does the silent-refresh flow:
//   1. send the access token it has;
//   2. on 401 `token_expired`, refresh once (one /refresh shared by every request
//      in flight: single-flight) and repeat the request once;
//   3. on a step-up challenge (401 `fresh_token_required`, whose WWW-Authenticate
//      says `error="insufficient_user_authentication"` and the route's `max_age`,
//      RFC 9470 §3), call `onReauthenticate({maxAge, message}, client)`: the app
//      asks for the password and calls `client.reauthenticate(password)`, which
//      steps up INSIDE this session (POST /reauthenticate: no new session); if the
//      hook resolves to true, repeat the request once. Without the hook, as step 4;
//   4. on any other 401 that a login fixes (a refused refresh, ...), call
//      `onLoginRequired`; if that resolves to true (the user logged in again),
//      repeat the request once. A login over a session this client still holds
//      ends that session first, so none is left behind.
//
// Two modes:
//   - "header" (default): tokens travel in the Authorization header, bound to a
//     key of this browser (DPoP, below) where it can; never in localStorage;
//   - "cookie": the server keeps them in HttpOnly cookies that page JavaScript
//     cannot read; state-changing requests carry the CSRF double-submit header.
//     Cookie mode is never bound: it sends no DPoP header at all.
//
// DPoP (RFC 9449), header mode, on by default (`dpop: false` turns it off) where
// the browser has WebCrypto (a secure context: https, or http on localhost) and
// IndexedDB. Each login makes a new ECDSA P-256 key pair whose private key is
// NOT extractable: page JavaScript can sign with it, never read it. Every login
// (/login, /login/mfa, /login/passkey), every request that sends a token
// (`Authorization: DPoP <token>`: the access token, the refresh token at
// /refresh) and /revoke carry a proof (the `DPoP` header: an ES256 JWS over the
// method and URL, with the sent token's hash `ath`), and the server binds the
// tokens to the key (`cnf.jkt`): a stolen token is useless without the key. A
// server that answers a login with `token_type: "Bearer"` (it predates DPoP)
// gets Bearer tokens and no proofs for that session. When the server wants a
// nonce (`use_dpop_nonce`, RFC 9449 §8), the request is sent once more with a
// new proof carrying its `DPoP-Nonce`; the latest nonce goes into every proof.
//
// Where things are kept:
//   - the key pair: IndexedDB (database "auth-client-dpop", store "keys"), one
//     record per login, deleted at the logout or the next login; structured clone
//     keeps the private key usable and still unreadable;
//   - a BOUND session's tokens: sessionStorage (this tab only, gone with it),
//     under `storageKey` (default "auth-client " + the API's base URL), so that
//     restore() resumes the session after a page reload. An injected script can
//     read them there (as it could from this object), but replayed anywhere else
//     they are refused: the key never leaves this browser. (While such a script
//     runs in the page it can use the session, bound or not: DPoP stops the
//     theft of tokens, not the script.)
//   - an unbound session's tokens (`dpop: false`, no WebCrypto, a Bearer
//     server): this object's memory only, as before: a reload ends the session.
// `storageKey: null` keeps a bound session in memory too. The app calls
// restore() once, at start: a client that does not never picks a session up,
// so two clients of one page share none by surprise. A key record no session
// names any more (its tab was closed without a logout) is deleted at a login,
// once unused for 30 days.
//
// Logging out ends the server's session whatever state the access token is in
// (see logout()), and sessions(), endSession(id) and endOtherSessions() wrap the
// /me/sessions API.
//
// A second factor (TOTP, docs/mfa.md): for such an account, login() resolves to
// `{mfaRequired: true, mfaToken}` instead of logging in; completeMfa(code) (or
// completeMfa({recoveryCode})) then finishes the login. A step-up of such an
// account needs a code too: reauthenticate(password, code); the onReauthenticate
// hook is told `codeRequired` when this client knows it.
//
// Passkeys (WebAuthn): registerPasskey(name) runs the browser's
// navigator.credentials.create() for the logged-in user; loginWithPasskey() logs
// in with navigator.credentials.get() as login() does (no username needed: the
// authenticator offers the site's passkeys); reauthenticateWithPasskey() steps up
// in the session as reauthenticate(password) does. listPasskeys(),
// renamePasskey(id, name) and deletePasskey(id) wrap /me/passkeys. A ceremony the
// user cancels, or that times out, rejects with the browser's DOMException
// (`NotAllowedError`). The page must be on a domain (https, or http://localhost):
// browsers refuse WebAuthn on an IP address.
//
//   import { AuthClient } from "./auth-client.js";
//   // baseUrl: where the API is (with its path prefix, if any); "" is this origin.
//   const api = new AuthClient({
//     mode: "cookie",
//     onLoginRequired: askForLogin,
//     // resolves to true once client.reauthenticate(password) succeeded
//     onReauthenticate: askForPassword,
//   });
//   const result = await api.login("alice", "correct horse battery");
//   if (result.mfaRequired) await api.completeMfa(await askForCode());
//   const response = await api.fetch("/item?page=1");
//
//   // Header mode (bound where the browser can): a reload keeps the session.
//   const tab = new AuthClient({ onLoginRequired: askForLogin });
//   if (!(await tab.restore())) await tab.login("alice", "correct horse battery");
//   tab.tokenType; // "DPoP" (bound: tab.dpopThumbprint is the key's) or "Bearer"

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
// RFC 9470 §3: the user must authenticate again (recently enough), in the session.
const STEP_UP = "insufficient_user_authentication";
// What a new login fixes; `token_expired` is fixed by a refresh instead.
const LOGIN_FIXES = new Set([
  "authorization_required",
  "fresh_token_required",
  "invalid_token",
  "token_revoked",
  "token_expired",
]);
// A step-up refused with the session as it was: the user may try again (the last
// two: a passkey's assertion refused, or its challenge no longer good).
const STEP_UP_REFUSALS = new Set([
  "invalid_credentials",
  "mfa_required",
  "invalid_code",
  "invalid_credential",
  "challenge_expired",
]);

// DPoP (RFC 9449): the proofs' key and signature (ES256, RFC 7518 §3.4: WebCrypto's
// ECDSA signature is already r || s, as JWS has it), and where the keys are kept.
const DPOP_KEY = { name: "ECDSA", namedCurve: "P-256" };
const DPOP_SIGNATURE = { name: "ECDSA", hash: "SHA-256" };
const KEY_DATABASE = "auth-client-dpop";
const KEY_STORE = "keys";
// A key record unused this long belongs to no live session: the server's refresh
// tokens live 14 days by default (JWT_REFRESH_TOKEN_EXPIRES).
const KEY_IDLE_MS = 30 * 24 * 3600 * 1000;

export class LoginRequiredError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "LoginRequiredError";
    this.code = code;
  }
}

/** An answer the API refused: `status`, and the envelope's `error` (`code`). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/**
 * The step-up a 401 asks for, or null: `{maxAge, message}` when the answer is
 * `fresh_token_required` or its challenge says `insufficient_user_authentication`
 * (RFC 9470 §3). `maxAge` (seconds, or null when absent) is how recently the user
 * must have authenticated for this route.
 */
export function stepUpOf(response, body) {
  const challenge = parseChallenge(response.headers.get("WWW-Authenticate"));
  if (challenge.error !== STEP_UP && body.error !== "fresh_token_required") return null;
  const maxAge = /^\d+$/.test(challenge.max_age || "") ? Number(challenge.max_age) : null;
  return { maxAge, message: body.message || challenge.error_description || "" };
}

/**
 * The parameters of the first Bearer (RFC 6750 §3) or DPoP (RFC 9449 §7.1)
 * challenge of a WWW-Authenticate header: `{error, max_age, ...}`, quoted values
 * ("300") and bare ones (300) alike; {} for none. A bound session's refusals
 * come with a DPoP challenge, an unbound one's with a Bearer challenge.
 */
export function parseChallenge(header) {
  const params = {};
  let inside = false; // reading the parameters of the challenge wanted
  // A scheme is a token alone; a parameter, a token and "=" with its value.
  const item = /([^\s,=]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?/g;
  for (const [, name, quoted, bare] of (header || "").matchAll(item)) {
    if (quoted === undefined && bare === undefined) {
      if (inside) break; // the next challenge
      inside = /^(Bearer|DPoP)$/i.test(name);
    } else if (inside) {
      params[name.toLowerCase()] =
        quoted === undefined ? bare : quoted.replace(/\\(.)/g, "$1");
    }
  }
  return params;
}

/**
 * Whether this browser can hold a DPoP key: WebCrypto (only in a secure
 * context: https, or http on localhost) and IndexedDB.
 */
export function dpopSupported() {
  return (
    typeof globalThis.crypto?.subtle?.generateKey === "function" &&
    typeof globalThis.indexedDB?.open === "function"
  );
}

/** Whether this browser runs passkey ceremonies (WebAuthn) at all. */
export function passkeysSupported() {
  return (
    typeof PublicKeyCredential === "function" &&
    typeof navigator !== "undefined" &&
    typeof navigator.credentials?.create === "function"
  );
}

export class AuthClient {
  constructor({
    baseUrl = "",
    mode = "header",
    onLoginRequired = null,
    onReauthenticate = null,
    onMfaRequired = null,
    onRefresh = null,
    fetchImpl = null,
    credentialsImpl = null,
    dpop = true,
    storageKey,
  } = {}) {
    if (mode !== "header" && mode !== "cookie") {
      throw new Error(`mode must be "header" or "cookie", not ${mode}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.mode = mode;
    // Whether header-mode logins ask for bound tokens (the server may still
    // answer Bearer: see tokenType).
    this.dpop = mode === "header" && dpop !== false && dpopSupported();
    this._storageKey =
      storageKey === undefined ? `auth-client ${absoluteUrl(this._url("/"))}` : storageKey;
    this.onLoginRequired = onLoginRequired;
    this.onReauthenticate = onReauthenticate;
    this.onMfaRequired = onMfaRequired;
    this.onRefresh = onRefresh;
    this._fetch = fetchImpl || window.fetch.bind(window);
    // navigator.credentials (its create() and get()), looked up at each ceremony.
    this._credentialsImpl = credentialsImpl;
    this._accessToken = null;
    this._refreshToken = null;
    this._refreshing = null; // the one refresh in flight, shared
    this._loggingIn = null; // the one login prompt open, shared
    this._steppingUp = null; // the one step-up prompt open, shared
    this._generation = 0; // bumped at every login, refresh, step-up and logout
    this._freshGeneration = -1; // the generation of the last fresh pair
    this._refusedGeneration = -1; // the generation whose refresh was refused
    this._sessionEpoch = 0; // bumped at every login and logout: which session
    this._cookieSession = false; // cookie mode: a login happened, no logout since
    this._mfaToken = null; // a login whose password was right, waiting for a code
    this._mfaAnswer = null; // what completeMfa() resolved to, for login()
    this._codeRequired = false; // this session's user has a second factor
    this._loggingOut = false;
    this._key = null; // the bound session's key: {id, keyPair, jwk, jkt, stored}
    this._loginKey = null; // the key of a login waiting for its second factor
    this._tokenType = null; // the session's: "DPoP" (bound) or "Bearer"
    this._nonce = null; // the server's latest DPoP-Nonce
    this.refreshCount = 0;
  }

  /**
   * The held session's token type: "DPoP" (bound to this browser's key),
   * "Bearer" (unbound), or null (none held, or cookie mode).
   */
  get tokenType() {
    return this.mode === "header" && this._accessToken !== null ? this._tokenType : null;
  }

  /** The RFC 7638 thumbprint of the bound session's key (its tokens' `cnf.jkt`). */
  get dpopThumbprint() {
    return this.tokenType === "DPoP" ? this._key.jkt : null;
  }

  /**
   * Resume the bound session this tab kept in sessionStorage (header mode, DPoP,
   * a `storageKey`): its tokens, and its key from IndexedDB. Call it once, when
   * the app starts. Resolves to whether a session is held now; a kept session
   * whose key is gone is forgotten.
   */
  async restore() {
    if (!this.dpop || !this._storageKey || this.loggedIn) return this.loggedIn;
    const kept = readKept(this._storageKey);
    if (!kept) return false;
    let key = null;
    try {
      const record = await keyRecords("readonly", (store) => store.get(kept.keyId));
      if (record) key = { ...(await describeKey(record.keyPair)), id: record.id };
    } catch {
      // IndexedDB refused (a private window...): as if the key were gone.
    }
    if (this.loggedIn) return true; // logged in meanwhile: that session wins
    if (!key) {
      forgetKept(this._storageKey, kept.keyId);
      return false;
    }
    this._key = { ...key, stored: true };
    this._tokenType = "DPoP";
    this._codeRequired = kept.codeRequired === true;
    const tokens = { access_token: kept.accessToken, refresh_token: kept.refreshToken };
    this._store(tokens, { fresh: false, newSession: true });
    return true;
  }

  /** Whether a login happened (the tokens themselves may have expired since). */
  get loggedIn() {
    return this.mode === "cookie" ? this._cookieSession : this._accessToken !== null;
  }

  /** Whether a login waits for its second factor (see completeMfa()). */
  get mfaPending() {
    return this._mfaToken !== null;
  }

  /**
   * Whether this session's user has a second factor, as far as this client knows
   * (a login completed with a code, or a step-up refused with `mfa_required`): a
   * step-up then needs a code with the password.
   */
  get codeRequired() {
    return this._codeRequired;
  }

  /**
   * POST /login: a new session. A session this client still holds is ended first
   * (see logout(); a failure of that is ignored), so no session is left behind
   * whose tokens this client has forgotten. To prove who the user is again inside
   * the session, use reauthenticate() instead.
   *
   * Resolves to the answer's body; for an account with a second factor (the
   * password was right: 401 `mfa_required`), to `{mfaRequired: true, mfaToken}`
   * with the login waiting for completeMfa(). With an `onMfaRequired({mfaToken},
   * client)` hook, that hook is called first: once it resolved to true (it called
   * completeMfa()), login() resolves to what completeMfa() resolved to.
   * Rejects with a LoginRequiredError (`invalid_credentials`, ...) when refused.
   */
  async login(username, password) {
    await this._endHeldSession();
    const body = { username, password };
    if (this.mode === "cookie") body.token_delivery = "cookie";
    const key = await this._newKey();
    const response = await this._postJson("/login", body, key);
    const data = await readJson(response);
    if (response.status === 401 && data.error === "mfa_required" && data.mfa_token) {
      this._loginKey = key; // the tokens of /login/mfa are bound to it
      return this._waitForSecondFactor(data.mfa_token);
    }
    if (!response.ok) {
      throw new LoginRequiredError(data.error || "invalid_credentials", data.message);
    }
    this._codeRequired = false;
    await this._begin(data, key);
    return data;
  }

  /**
   * POST /login/mfa: complete the login that waits for its second factor with a
   * TOTP code (`"123456"` or `{code}`) or a recovery code (`{recoveryCode}`). The
   * client is then logged in as after a password login (header mode: the tokens
   * are kept; cookie mode: the server sets the cookies), and resolves to the
   * answer's body.
   *
   * Rejects with an ApiError when the login still waits (`invalid_code`: a wrong
   * or used code, the user may try again; 422; 429), and with a LoginRequiredError
   * `invalid_mfa_token` when it does not (unknown, used, expired, or spent on
   * wrong codes; or no login waits): then only login() helps.
   */
  async completeMfa(second) {
    const mfaToken = this._mfaToken;
    if (mfaToken === null) {
      throw new LoginRequiredError("invalid_mfa_token", "No login waits for a code.");
    }
    const key = this._loginKey;
    const body = { mfa_token: mfaToken, ...codeFields(second) };
    const response = await this._postJson("/login/mfa", body, key);
    const data = await readJson(response);
    if (response.ok) {
      this._mfaToken = null;
      this._loginKey = null;
      this._codeRequired = true;
      await this._begin(data, key);
      this._mfaAnswer = data;
      return data;
    }
    if (data.error === "invalid_mfa_token") {
      if (this._mfaToken === mfaToken) {
        this._mfaToken = null;
        this._loginKey = null;
      }
      throw new LoginRequiredError(data.error, data.message);
    }
    throw apiError(response, data);
  }

  /**
   * Log in with a passkey, no username or password typed: POST
   * /login/passkey/options, the browser's navigator.credentials.get() (with no
   * `username` the authenticator offers every passkey it holds for this site; with
   * one, only that account's), then POST /login/passkey with its answer. The
   * tokens are delivered as login() has them (header mode: kept here; cookie
   * mode: `token_delivery: "cookie"`, the server sets the cookies), and a session
   * this client still holds is ended first, once the user has chosen a passkey (a
   * cancelled ceremony leaves it as it was).
   *
   * Resolves to the answer's body. Rejects with a LoginRequiredError when the
   * login is refused (`invalid_credential`: a passkey the server does not know,
   * deleted for one; `challenge_expired`: too slow, try again), with an ApiError
   * when the options are (429, or 404 on a server without passkeys), and with the
   * browser's DOMException when the ceremony does not happen (`NotAllowedError`:
   * cancelled or timed out).
   */
  async loginWithPasskey({ username } = {}) {
    // (The options issue no token: no proof.)
    const asked = await this._postJson(
      "/login/passkey/options",
      username ? { username } : {},
      null,
    );
    const options = await readJson(asked);
    if (!asked.ok) throw apiError(asked, options);
    const credential = await this._container().get({
      publicKey: requestOptions(options),
    });
    await this._endHeldSession();
    const body = { credential: credentialJson(credential) };
    if (this.mode === "cookie") body.token_delivery = "cookie";
    const key = await this._newKey();
    const response = await this._postJson("/login/passkey", body, key);
    const data = await readJson(response);
    if (!response.ok) {
      throw new LoginRequiredError(data.error || "invalid_credential", data.message);
    }
    // What a password step-up of this account needs is learnt at its first refusal.
    this._codeRequired = false;
    await this._begin(data, key);
    return data;
  }

  /**
   * POST /reauthenticate: step up inside the session this client holds. The user
   * proves who they are again (`password`, and for an account with a second
   * factor a `code`: `"123456"`, `{code}` or `{recoveryCode}`); the answer is a
   * fresh access token of the SAME session, and in header mode a new refresh
   * token too (the previous one is spent as at a refresh): both are kept. Cookie
   * mode: the server sets the new cookies. An expired access token is refreshed
   * first (once), then the step-up is sent again.
   *
   * Resolves to the answer's body. Rejects with an ApiError for a refusal that
   * leaves the session as it was (`invalid_credentials`: a wrong password;
   * `mfa_required`: the account needs a code too, ask for one and send both;
   * `invalid_code`; 422, 429...) and with a LoginRequiredError when the session
   * is gone (ended, refresh refused, not logged in): then only login() helps.
   */
  async reauthenticate(password, code = null) {
    const withCode = code !== null && code !== undefined;
    const body = { password, ...(withCode ? codeFields(code) : {}) };
    if (this._refreshing) await this._refreshing; // step up with the newest token
    const data = await this._reauthenticate(body, this._sessionEpoch);
    // Proved without a code: the account has no second factor (any more).
    if (!withCode) this._codeRequired = false;
    return data;
  }

  /**
   * Step up inside the session with a passkey, as reauthenticate() does with the
   * password: POST /reauthenticate/options (a challenge bound to this session),
   * the browser's navigator.credentials.get() over the account's passkeys, then
   * POST /reauthenticate with its answer. Resolves to the answer's body, the new
   * tokens kept as reauthenticate() keeps them.
   *
   * Rejects with an ApiError when the session stays as it was (`no_passkeys`:
   * 409, the account has none; `invalid_credential`: a passkey the server does
   * not accept; `challenge_expired`: too slow, try again), with a
   * LoginRequiredError when the session is gone, and with the browser's
   * DOMException when the ceremony does not happen (`NotAllowedError`: cancelled
   * or timed out).
   */
  async reauthenticateWithPasskey() {
    if (this._refreshing) await this._refreshing; // step up with the newest token
    const epoch = this._sessionEpoch;
    if (!this.loggedIn) throw new LoginRequiredError("authorization_required");
    // An expired access token is refreshed on the way; nobody is asked to log in.
    const response = await this.fetch(
      "/reauthenticate/options",
      { method: "POST" },
      { relogin: false },
    );
    const options = await readJson(response);
    if (response.status === 401) {
      throw new LoginRequiredError(options.error || "token_revoked", options.message);
    }
    if (!response.ok) throw apiError(response, options);
    const credential = await this._container().get({
      publicKey: requestOptions(options),
    });
    return this._reauthenticate({ credential: credentialJson(credential) }, epoch);
  }

  /** POST /reauthenticate with `body` (the password, or a passkey's assertion)
   * in the session of `epoch`; an expired access token is refreshed once first. */
  async _reauthenticate(body, epoch) {
    for (let refreshed = false; ; refreshed = true) {
      if (!this.loggedIn) throw new LoginRequiredError("authorization_required");
      const response = await this._send("/reauthenticate", {
        method: "POST",
        body: JSON.stringify(body),
      });
      const data = await readJson(response);
      // A login or logout while this was on its way wins: its answer is stale.
      if (epoch !== this._sessionEpoch) {
        throw new LoginRequiredError("token_revoked", "The session changed meanwhile.");
      }
      if (response.ok) {
        this._store(data, { fresh: true });
        return data;
      }
      // (A passkey's assertion may be sent again: an expired token is refused
      // before its challenge is looked at.)
      if (data.error === "token_expired" && !refreshed) {
        const refusal = await this._refreshOnce();
        if (refusal === null) continue;
        throw new LoginRequiredError(refusal);
      }
      if (data.error === "mfa_required") this._codeRequired = true;
      if (response.status === 401 && !STEP_UP_REFUSALS.has(data.error)) {
        throw new LoginRequiredError(data.error || "token_revoked", data.message);
      }
      throw apiError(response, data);
    }
  }

  /**
   * End the server's session, then forget it here (whatever the server said, and
   * even if the request failed). The access token's state does not matter:
   *   - header mode: POST /revoke (RFC 7009) with the refresh token, form-encoded;
   *     it needs no access token and ends the whole session (a bound one's with a
   *     proof of its key, no `ath`; the key is deleted). Resolves to that
   *     response, or null when no refresh token is held (nothing to end).
   *   - cookie mode: the refresh cookie is HttpOnly and sent to /refresh only, so
   *     it cannot be handed to /revoke. POST /logout goes through the usual path
   *     instead: on 401 token_expired it refreshes once with the cookie and repeats
   *     /logout, which then clears the cookies. It never asks for a login (a login
   *     to log out makes no sense): a refused refresh means the session is over
   *     already. Resolves to the last /logout response.
   */
  async logout() {
    if (this.mode === "header") {
      const refreshToken = this._refreshToken;
      const key = this._key; // a bound token is revoked with a proof of its key
      // First: no request sends the dying tokens any more.
      const keyDeleted = this._forget();
      let response = null;
      if (refreshToken) {
        const body = new URLSearchParams({
          token: refreshToken,
          token_type_hint: "refresh_token",
        });
        response = await this._request("/revoke", { method: "POST", body }, { key });
      }
      await keyDeleted;
      return response;
    }
    // fetch() refreshes only for a logged-in client; here the cookies are what
    // count, and they outlive this object (a page reload).
    this._cookieSession = true;
    this._loggingOut = true;
    try {
      return await this.fetch("/logout", { method: "POST" }, { relogin: false });
    } finally {
      this._loggingOut = false;
      this._forget();
    }
  }

  /**
   * POST /refresh now (shared with a refresh in flight): the access token becomes
   * non-fresh. Resolves to null, or to the refusal's code (then only a login helps).
   */
  refresh() {
    return this._refreshOnce();
  }

  /** GET /me/sessions: the user's sessions, newest first (`current`: this one). */
  async sessions() {
    return expectOk(await this.fetch("/me/sessions"));
  }

  /**
   * DELETE /me/sessions/{id}: end one session (its tokens are refused from now).
   * Ending this client's own session is a logout: use logout() for that.
   */
  async endSession(id) {
    const path = `/me/sessions/${encodeURIComponent(id)}`;
    return expectOk(await this.fetch(path, { method: "DELETE" }));
  }

  /** DELETE /me/sessions: end every session of the user but this one. */
  async endOtherSessions() {
    return expectOk(await this.fetch("/me/sessions", { method: "DELETE" }));
  }

  /**
   * Register a passkey of the logged-in user, called `name` ("laptop"): POST
   * /me/passkeys/options, the browser's navigator.credentials.create() (the user
   * confirms with a fingerprint, a PIN...), then POST /me/passkeys with its answer.
   * Both need a fresh login: refused, they go through onReauthenticate as any
   * fetch(). Resolves to the passkey as listed (`{id, name, created_at,
   * last_used_at}`).
   *
   * Rejects with an ApiError (`too_many_passkeys`, `passkey_exists`,
   * `invalid_credential`, `challenge_expired`, 422 for the name) or with the
   * browser's DOMException (`NotAllowedError`: cancelled or timed out;
   * `InvalidStateError`: this authenticator holds one of the user's passkeys
   * already).
   */
  async registerPasskey(name) {
    const options = await expectOk(
      await this.fetch("/me/passkeys/options", { method: "POST" }),
    );
    const credential = await this._container().create({
      publicKey: creationOptions(options),
    });
    const body = JSON.stringify({ name, credential: credentialJson(credential) });
    return expectOk(await this.fetch("/me/passkeys", { method: "POST", body }));
  }

  /** GET /me/passkeys: the user's passkeys, oldest first. */
  async listPasskeys() {
    return expectOk(await this.fetch("/me/passkeys"));
  }

  /** PATCH /me/passkeys/{id}: rename one; resolves to the passkey. */
  async renamePasskey(id, name) {
    const path = `/me/passkeys/${encodeURIComponent(id)}`;
    const body = JSON.stringify({ name });
    return expectOk(await this.fetch(path, { method: "PATCH", body }));
  }

  /**
   * DELETE /me/passkeys/{id}: it logs in and steps up no more (the authenticator
   * still holds it: only its owner can remove it there). Needs a fresh login.
   */
  async deletePasskey(id) {
    const path = `/me/passkeys/${encodeURIComponent(id)}`;
    return expectOk(await this.fetch(path, { method: "DELETE" }));
  }

  /**
   * fetch(path, options) with the token. A request is repeated at most once after
   * a refresh, at most once after a step-up and at most once after a new login.
   * `retry: false` returns the first answer as it is; `relogin: false` still
   * refreshes but never asks the user (no step-up, no login).
   */
  async fetch(path, options = {}, { retry = true, relogin = true } = {}) {
    // A stream is read once: buffered, the request can be sent again.
    if (options.body instanceof ReadableStream) {
      options = { ...options, body: await new Response(options.body).blob() };
    }
    let refreshed = false;
    let steppedUp = false;
    let loggedInAgain = false;
    for (;;) {
      const generation = this._generation;
      const response = await this._send(path, options);
      if (response.status !== 401 || !retry) return response;

      const body = await readJson(response.clone());
      let { error } = body;
      if (error === "token_expired" && !refreshed && this.loggedIn) {
        refreshed = true;
        // Someone else may have refreshed while this request was on its way.
        if (generation !== this._generation) continue;
        const refreshError = await this._refreshOnce();
        if (refreshError === null) continue;
        error = refreshError; // the refresh token is refused: only a login helps
      }
      const stepUp = error === body.error ? stepUpOf(response, body) : null;
      if (stepUp && this.onReauthenticate && relogin) {
        if (steppedUp || this._loggingOut || !this.loggedIn) return response;
        steppedUp = true;
        // Stepped up (or logged in) while this request was on its way: repeat it.
        const renewed = this._freshGeneration === this._generation;
        if (renewed && this._freshGeneration > generation) continue;
        const details = { ...stepUp, codeRequired: this._codeRequired };
        if (!(await this._stepUpOnce(details))) return response;
        continue;
      }
      if (loggedInAgain || !relogin || !LOGIN_FIXES.has(error)) return response;
      // Refused because of a logout (running, or done since it was sent): a prompt
      // would undo the logout.
      if (this._loggingOut || (!this.loggedIn && generation !== this._generation)) {
        return response;
      }
      loggedInAgain = true;
      if (!(await this._loginOnce(error))) return response;
    }
  }

  _send(path, options) {
    const method = (options.method || "GET").toUpperCase();
    const headers = new Headers(options.headers || {});
    if (options.body && !headers.has("Content-Type")) {
      headers.set("Content-Type", "application/json");
    }
    if (this.mode === "cookie" && STATE_CHANGING.has(method)) {
      const csrf = readCookie("csrf_access_token");
      if (csrf) headers.set("X-CSRF-TOKEN", csrf);
    }
    const token = this.mode === "header" ? this._accessToken : null;
    return this._request(path, { ...options, method, headers }, { token });
  }

  /**
   * fetch() of `path` with `token` in the Authorization header and, with a `key`
   * (the bound session's by default), a DPoP proof (RFC 9449 §4): `DPoP <token>`
   * and the token's `ath` then, `Bearer <token>` without a key. A refusal that
   * asks for a nonce (`use_dpop_nonce`, 400 or 401, RFC 9449 §8) is sent once
   * more, with a new proof carrying the nonce: `init.body` must be re-sendable (a
   * string, URLSearchParams, a Blob..., not a stream).
   */
  async _request(path, init, { token = null, key = this._key } = {}) {
    const url = this._url(path);
    const method = (init.method || "GET").toUpperCase();
    for (let again = false; ; again = true) {
      const headers = new Headers(init.headers || {});
      if (key) headers.set("DPoP", await this._proof(key, method, url, token));
      if (token) headers.set("Authorization", `${key ? "DPoP" : "Bearer"} ${token}`);
      const response = await this._fetch(url, {
        ...init,
        method,
        headers,
        credentials: this._credentials(),
      });
      const nonce = key ? response.headers.get("DPoP-Nonce") : null;
      if (nonce) this._nonce = nonce;
      if (again || !nonce || !(await asksForNonce(response))) return response;
    }
  }

  /** A DPoP proof (RFC 9449 §4.2) of `method` at `url`, signed with `key`: `ath`
   * when a token is sent, the server's latest nonce if it gave one. */
  async _proof(key, method, url, token) {
    const claims = {
      jti: randomBase64url(16),
      htm: method,
      htu: absoluteUrl(url, { bare: true }), // §4.2: without query and fragment
      iat: Math.floor(Date.now() / 1000),
    };
    if (token) claims.ath = await sha256Base64url(token);
    if (this._nonce) claims.nonce = this._nonce;
    return signJws({ typ: "dpop+jwt", alg: "ES256", jwk: key.jwk }, claims, key.keyPair);
  }

  /** POST `body` as JSON to a route that issues no token or (with `key`) starts a
   * session: a proof without `ath`. */
  _postJson(path, body, key) {
    const headers = { "Content-Type": "application/json" };
    const init = { method: "POST", headers, body: JSON.stringify(body) };
    return this._request(path, init, { key });
  }

  /** One refresh for all who ask while it runs: null, or the refusal's code. */
  _refreshOnce() {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  async _refresh() {
    const generation = this._generation;
    const headers = {};
    const token = this.mode === "header" ? this._refreshToken : null;
    if (this.mode === "header" && !token) return "authorization_required";
    if (this.mode === "cookie") {
      const csrf = readCookie("csrf_refresh_token");
      if (csrf) headers["X-CSRF-TOKEN"] = csrf;
    }
    // Bound: `DPoP <refresh token>`, the proof's `ath` that of the refresh token.
    const response = await this._request("/refresh", { method: "POST", headers }, { token });
    const data = await readJson(response);
    if (!response.ok) {
      if (generation === this._generation) this._refusedGeneration = generation;
      return data.error || "token_revoked";
    }
    // A logout or login while this refresh was on its way wins: its answer is stale.
    if (generation !== this._generation) return null;
    this._store(data, { fresh: false });
    this._touchKey();
    this.refreshCount += 1;
    if (this.onRefresh) this.onRefresh(this.refreshCount);
    return null;
  }

  /** The login waits for its second factor: onMfaRequired, if any, may complete
   * it (then what completeMfa() resolved to), else `{mfaRequired, mfaToken}`. */
  async _waitForSecondFactor(mfaToken) {
    this._mfaToken = mfaToken;
    if (this.onMfaRequired && (await this.onMfaRequired({ mfaToken }, this))) {
      if (this._mfaAnswer !== null) return this._mfaAnswer;
    }
    return { mfaRequired: true, mfaToken: this._mfaToken };
  }

  /** One login prompt for all requests that need it at the same time. */
  _loginOnce(code) {
    if (!this.onLoginRequired) return Promise.reject(new LoginRequiredError(code));
    return this._promptOnce("_loggingIn", this.onLoginRequired, code);
  }

  /** One step-up prompt for all requests that need it at the same time. */
  _stepUpOnce(details) {
    return this._promptOnce("_steppingUp", this.onReauthenticate, details);
  }

  /** The prompt open in `slot`, or `hook(argument, client)` opened there: whether
   * the user did what it asked (the hook resolved to true). */
  _promptOnce(slot, hook, argument) {
    if (!this[slot]) {
      this[slot] = Promise.resolve(hook.call(this, argument, this))
        .then(Boolean)
        .finally(() => {
          this[slot] = null;
        });
    }
    return this[slot];
  }

  /** A login starts anew: end the session held, and forget a waiting login. */
  async _endHeldSession() {
    if (this._holdsSession()) {
      try {
        await this.logout();
      } catch {
        // Unreachable or refused: it ends by itself at its idle timeout.
      }
    }
    this._forget(); // a refused session too: its key goes
    this._mfaToken = null;
    this._mfaAnswer = null;
  }

  /** Whether a session may be alive on the server that this client would end. */
  _holdsSession() {
    if (this._refusedGeneration === this._generation) return false; // refused: over
    if (this.mode === "header") return this._refreshToken !== null;
    // The CSRF cookies come and go with the HttpOnly token cookies: after a page
    // reload they still tell that the browser holds a session.
    return this._cookieSession || readCookie("csrf_refresh_token") !== null;
  }

  _store(data, { fresh, newSession = false }) {
    if (this.mode === "header") {
      this._accessToken = data.access_token;
      this._refreshToken = data.refresh_token;
      this._keep();
    } else {
      this._cookieSession = true;
    }
    this._generation += 1;
    if (fresh) this._freshGeneration = this._generation;
    if (newSession) this._sessionEpoch += 1;
  }

  /** Forget the session; resolves once its key is deleted. */
  _forget() {
    const keyDeleted = this._dropKey();
    this._accessToken = null;
    this._refreshToken = null;
    this._cookieSession = false;
    this._mfaToken = null;
    this._loginKey = null;
    this._codeRequired = false;
    this._generation += 1;
    this._sessionEpoch += 1;
    return keyDeleted;
  }

  /** A new key for a login that asks for bound tokens, or null (none asked). */
  async _newKey() {
    if (!this.dpop) return null;
    const keyPair = await crypto.subtle.generateKey(DPOP_KEY, false, ["sign", "verify"]);
    return { ...(await describeKey(keyPair)), id: randomBase64url(16), stored: false };
  }

  /**
   * A login's answer `data`, whose proof was made with `key` (or null): a new
   * session, bound if the server says `token_type` DPoP (else Bearer: no proofs
   * for it). A bound session's key goes to IndexedDB, then its tokens to
   * sessionStorage.
   */
  async _begin(data, key) {
    const bound = key !== null && /^DPoP$/i.test(data.token_type || "");
    this._key = bound ? key : null;
    this._tokenType = bound ? "DPoP" : "Bearer";
    this._store(data, { fresh: true, newSession: true });
    if (!bound || !this._storageKey) return;
    const now = Date.now();
    const record = { id: key.id, keyPair: key.keyPair, created: now, used: now };
    const kept = readKept(this._storageKey);
    try {
      await keyRecords("readwrite", (store) => {
        store.put(record);
        // The tab's session lost to a reload without restore(), and idle records.
        if (kept && kept.keyId !== key.id) store.delete(kept.keyId);
        deleteIdle(store, now - KEY_IDLE_MS);
      });
    } catch {
      return; // no IndexedDB: the key (and the session) stay in memory only
    }
    if (this._key !== key) {
      // A logout or another login while it was stored: it is not used any more.
      keyRecords("readwrite", (store) => store.delete(key.id)).catch(() => {});
      return;
    }
    key.stored = true;
    this._keep();
  }

  /** A bound session whose key is in IndexedDB: its tokens to sessionStorage. */
  _keep() {
    if (!this._key?.stored || !this._storageKey) return;
    const kept = {
      keyId: this._key.id,
      accessToken: this._accessToken,
      refreshToken: this._refreshToken,
      codeRequired: this._codeRequired,
    };
    try {
      sessionStorage.setItem(this._storageKey, JSON.stringify(kept));
    } catch {
      // Full or refused: the session lives on in memory.
    }
  }

  /** The session's key was used (a refresh): its record is not idle. */
  _touchKey() {
    const key = this._key;
    if (!key?.stored) return;
    const record = { id: key.id, keyPair: key.keyPair, used: Date.now() };
    keyRecords("readwrite", (store) => {
      const created = store.get(key.id);
      created.onsuccess = () => {
        if (created.result) store.put({ ...created.result, ...record });
      };
    }).catch(() => {});
  }

  /** The session ends: its key record, and its tokens in sessionStorage, go.
   * Resolves once the record is deleted (or could not be). */
  _dropKey() {
    const key = this._key;
    this._key = null;
    this._tokenType = null;
    if (!key?.stored) return Promise.resolve();
    forgetKept(this._storageKey, key.id);
    return keyRecords("readwrite", (store) => store.delete(key.id)).catch(() => {});
  }

  _credentials() {
    return this.mode === "cookie" ? "include" : "same-origin";
  }

  /** navigator.credentials, or what was given instead. */
  _container() {
    const container = this._credentialsImpl || globalThis.navigator?.credentials;
    if (!container) throw new Error("This browser has no passkeys (WebAuthn).");
    return container;
  }

  _url(path) {
    return this.baseUrl + (path.startsWith("/") ? path : `/${path}`);
  }
}

// -- DPoP (RFC 9449) ------------------------------------------------------------------

/** `url` resolved as fetch() resolves it (against the document's base URL);
 * `bare`: without its query and fragment. */
function absoluteUrl(url, { bare = false } = {}) {
  const base = globalThis.document?.baseURI ?? globalThis.location?.href;
  const absolute = new URL(url, base);
  if (bare) {
    absolute.search = "";
    absolute.hash = "";
  }
  return absolute.href;
}

/** `size` random bytes (crypto.getRandomValues) as unpadded base64url. */
function randomBase64url(size) {
  return bufferToBase64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** The unpadded base64url SHA-256 of `text`'s UTF-8 (a token's: its `ath`). */
async function sha256Base64url(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return bufferToBase64url(digest);
}

function base64urlJson(value) {
  return bufferToBase64url(new TextEncoder().encode(JSON.stringify(value)));
}

/** A compact JWS (RFC 7515 §7.1) of `claims`, signed ES256 with `keyPair`. */
async function signJws(header, claims, keyPair) {
  const input = `${base64urlJson(header)}.${base64urlJson(claims)}`;
  const signature = await crypto.subtle.sign(
    DPOP_SIGNATURE,
    keyPair.privateKey,
    new TextEncoder().encode(input),
  );
  return `${input}.${bufferToBase64url(signature)}`;
}

/**
 * A key pair's public JWK (its members only: a proof's header carries no more)
 * and its RFC 7638 thumbprint `jkt` (SHA-256 of the required members, in
 * lexicographic order, no white space).
 */
async function describeKey(keyPair) {
  const { crv, kty, x, y } = await crypto.subtle.exportKey("jwk", keyPair.publicKey);
  const jkt = await sha256Base64url(JSON.stringify({ crv, kty, x, y }));
  return { keyPair, jwk: { kty, crv, x, y }, jkt };
}

/** Whether a refusal asks for a DPoP nonce (RFC 9449 §8: 401 with the
 * challenge's error; §8.1: 400 with the body's, at a login). */
async function asksForNonce(response) {
  if (response.status !== 400 && response.status !== 401) return false;
  const challenge = parseChallenge(response.headers.get("WWW-Authenticate"));
  if (challenge.error === "use_dpop_nonce") return true;
  return (await readJson(response.clone())).error === "use_dpop_nonce";
}

/** What `work(store)` did in one transaction of the key store; resolves to the
 * result of the request it returns (if any) once the transaction is done. */
function keyRecords(mode, work) {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open(KEY_DATABASE, 1);
    opening.onupgradeneeded = () => {
      opening.result.createObjectStore(KEY_STORE, { keyPath: "id" });
    };
    opening.onerror = () => reject(opening.error);
    opening.onsuccess = () => {
      const database = opening.result;
      let request;
      let transaction;
      try {
        transaction = database.transaction(KEY_STORE, mode);
        request = work(transaction.objectStore(KEY_STORE));
      } catch (error) {
        database.close();
        reject(error);
        return;
      }
      transaction.oncomplete = () => {
        database.close();
        resolve(request?.result);
      };
      transaction.onerror = transaction.onabort = () => {
        database.close();
        reject(transaction.error);
      };
    };
  });
}

/** Delete the records of `store` unused since `before` (ms). */
function deleteIdle(store, before) {
  const walking = store.openCursor();
  walking.onsuccess = () => {
    const cursor = walking.result;
    if (!cursor) return;
    if (!(cursor.value.used >= before)) cursor.delete();
    cursor.continue();
  };
}

/** The bound session kept in sessionStorage under `name`, or null. */
function readKept(name) {
  if (!name) return null;
  try {
    const kept = JSON.parse(sessionStorage.getItem(name) || "null");
    return kept && typeof kept.keyId === "string" ? kept : null;
  } catch {
    return null; // no sessionStorage, or not ours
  }
}

/** Remove the session kept under `name` if it is the one of key `keyId` (another
 * client of the tab may have kept its own there since). */
function forgetKept(name, keyId) {
  if (readKept(name)?.keyId === keyId) sessionStorage.removeItem(name);
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

/**
 * The fields of a second factor: a TOTP code (`"123456"` or `{code}`) or a
 * recovery code (`{recoveryCode}`), named as the API has them. Sent as given:
 * the server says what is wrong with them (422).
 */
function codeFields(second) {
  if (typeof second === "string") return { code: second };
  const fields = {};
  if (second && second.code !== undefined) fields.code = second.code;
  if (second && second.recoveryCode !== undefined) {
    fields.recovery_code = second.recoveryCode;
  }
  return fields;
}

/** The JSON body of a 2xx answer; an ApiError for any other. */
async function expectOk(response) {
  const data = await readJson(response);
  if (!response.ok) throw apiError(response, data);
  return data;
}

/** The ApiError of a refused answer whose JSON body is `data`. */
function apiError(response, data) {
  const code = data.error || `http_${response.status}`;
  return new ApiError(response.status, code, data.message || response.statusText);
}

// -- WebAuthn's JSON (WebAuthn L3 §5.1.8, §5.4, §5.5) ------------------------------
// The server speaks JSON, base64url for bytes; navigator.credentials ArrayBuffers.
// A browser with PublicKeyCredential.parseCreationOptionsFromJSON(),
// parseRequestOptionsFromJSON() and credential.toJSON() converts itself; for the
// others, the same by hand.

/** Creation options for navigator.credentials.create() from their JSON. */
function creationOptions(json) {
  const native = globalThis.PublicKeyCredential;
  if (typeof native?.parseCreationOptionsFromJSON === "function") {
    return native.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: base64urlToBuffer(json.challenge),
    user: { ...json.user, id: base64urlToBuffer(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map(descriptor),
  };
}

/** Request options for navigator.credentials.get() from their JSON. */
function requestOptions(json) {
  const native = globalThis.PublicKeyCredential;
  if (typeof native?.parseRequestOptionsFromJSON === "function") {
    return native.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: base64urlToBuffer(json.challenge),
    allowCredentials: (json.allowCredentials || []).map(descriptor),
  };
}

function descriptor(json) {
  return { ...json, id: base64urlToBuffer(json.id) };
}

/**
 * A PublicKeyCredential as JSON: RegistrationResponseJSON after create(),
 * AuthenticationResponseJSON after get().
 */
function credentialJson(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const { response } = credential;
  const json = {
    id: credential.id,
    rawId: bufferToBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? null,
    clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
    response: { clientDataJSON: bufferToBase64url(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    json.response.attestationObject = bufferToBase64url(response.attestationObject);
    json.response.transports = response.getTransports?.() ?? [];
  } else {
    json.response.authenticatorData = bufferToBase64url(response.authenticatorData);
    json.response.signature = bufferToBase64url(response.signature);
    json.response.userHandle = response.userHandle
      ? bufferToBase64url(response.userHandle)
      : null;
  }
  return json;
}

/** base64url (RFC 4648 §5), padded or not, to an ArrayBuffer. */
function base64urlToBuffer(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0)).buffer;
}

/** An ArrayBuffer (or a view of one) as unpadded base64url. */
function bufferToBase64url(buffer) {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer);
  let binary = "";
  // In slices: an attestation can be too long for one fromCharCode(...) call.
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function readCookie(name) {
  const prefix = `${name}=`;
  for (const part of document.cookie.split(";")) {
    const cookie = part.trim();
    if (cookie.startsWith(prefix)) return decodeURIComponent(cookie.slice(prefix.length));
  }
  return null;
}
