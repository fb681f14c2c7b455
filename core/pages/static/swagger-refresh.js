// swagger-refresh.js: keeps Swagger UI's OAuth 2.0 password login alive.
//
// Swagger UI gets tokens from POST /token when Authorize is used with a username and
// a password, but never refreshes them (swagger-api/swagger-ui#7257): the access
// token expires after minutes and every Try it out answers 401. This plugin renews
// it with the refresh token that came with it (grant_type=refresh_token at the
// scheme's refreshUrl), silently:
//   - before a request, when the token expires within a small margin (the expiry is
//     computed from expires_in when the token arrives);
//   - after a 401 `token_expired` answer: refresh, then repeat the request once.
// One refresh at a time (single flight): several requests at once share it. That
// is not an optimisation: a refresh token is single-use, and a second refresh with
// it would trip the server's reuse detection and end the session.
// Only a refused refresh asks for the password again (the Authorize dialog opens).
// Logging out (or authorizing again) revokes the session at /revoke (RFC 7009).
// A 401 that only a new login fixes (`fresh_token_required`, `token_revoked`,
// `invalid_token`) offers to authorize again (#swagger-reauth in the page). Requests that carry any other credential (a pasted
// bearerAuth token, the /token request itself) are left alone.
//
// Hooks: the `requestInterceptor` option (it may return a promise: swagger-client
// awaits it), a `responseInterceptor` set on each OAuth 2.0 request by it (awaited
// too; swagger-client's http reads the request's own after the requestInterceptor
// ran, so the answer knows its request), the plugin system's `wrapActions` on the
// auth actions, and authSelectors / authActions (`authorizeOauth2WithPersistOption`,
// `logoutWithPersistOption`, `showDefinitions`). Checked against the Swagger UI
// that flask-swagger-ui ships (5.34.0); tests/browser/test_swagger_ui.py drives it.
//
// The new tokens go into Swagger UI's auth state, so the dialog shows them and
// `persistAuthorization` keeps them. That puts the refresh token in localStorage,
// readable by any script on this origin: a known trade-off of a development tool
// (the /demo page and real clients keep tokens in memory or HttpOnly cookies).
// The password itself is never kept (Swagger UI would keep it, in localStorage
// too).
(function () {
  "use strict";

  var MARGIN_SHARE = 0.1; // refresh this share of the lifetime before expiry...
  var MAX_MARGIN_MS = 30000; // ...but never more than this early
  // 401 error codes that only a new login fixes (the API's error envelope).
  var LOGIN_FIXES = {
    fresh_token_required:
      "This operation needs a fresh login (401 fresh_token_required): authorize " +
      "again with your password, then execute it again.",
    token_revoked:
      "This login's session has ended (401 token_revoked): authorize again.",
    invalid_token: "The token was refused (401 invalid_token): authorize again.",
  };

  var getSystem = null;
  var refreshing = null; // the one refresh in flight, shared by every request
  var generation = 0; // bumped by every login and logout of an OAuth 2.0 scheme
  var storingRefresh = false; // true while a refresh's tokens go into the state
  var oauthTokens = new Set(); // access tokens the OAuth 2.0 login has held

  /** The plugin: remembers the system, and wraps the auth actions. */
  function plugin(system) {
    getSystem = system.getSystem;
    return {
      statePlugins: {
        auth: {
          wrapActions: {
            authorizeOauth2: wrapAuthorizeOauth2,
            logout: wrapLogout,
            restoreAuthorization: wrapRestoreAuthorization,
          },
        },
      },
    };
  }

  function wrapAuthorizeOauth2(original) {
    return function (payload) {
      generation += 1;
      var token = Object.assign({}, payload.token);
      if (token.expires_in && !token.expires_at) {
        // Measured on arrival: later than the server's clock by the round trip,
        // which the margin covers (and a 401 token_expired covers the rest).
        token.expires_at = Date.now() + token.expires_in * 1000;
      }
      if (token.access_token) oauthTokens.add(token.access_token);
      if (!storingRefresh) hideNotice(); // a new login answers the notice
      return original({ auth: withoutPassword(payload.auth), token: token });
    };
  }

  function wrapLogout(original) {
    return function (names) {
      var login = oauthLogin();
      if (login && names.indexOf(login[0]) !== -1) {
        generation += 1;
        revoke(login[1]);
      }
      return original(names);
    };
  }

  /** Logging out (Swagger UI's Logout, or authorizing again) ends the session on
   * the server too: POST /revoke with the refresh token (RFC 7009 §2.1), without
   * waiting for the answer. A spent or revoked token is answered 200 all the
   * same, so this is harmless after a refused refresh. */
  function revoke(auth) {
    var token = auth.getIn(["token", "refresh_token"]);
    if (!token) return;
    fetch(new URL("revoke", tokenEndpoint(auth.get("schema"))), {
      method: "POST",
      body: new URLSearchParams({ token: token, token_type_hint: "refresh_token" }),
      credentials: "same-origin",
      keepalive: true,
    }).catch(function (error) {
      console.error("swagger-refresh: the session could not be revoked", error);
    });
  }

  function wrapRestoreAuthorization(original, system) {
    return function (payload) {
      var authorized = {};
      var scrubbed = false;
      Object.keys(payload.authorized || {}).forEach(function (name) {
        var auth = withoutPassword(payload.authorized[name]);
        var token = (auth && auth.token) || {};
        if (token.access_token) oauthTokens.add(token.access_token);
        scrubbed = scrubbed || auth !== payload.authorized[name];
        authorized[name] = auth;
      });
      var result = original(Object.assign({}, payload, { authorized: authorized }));
      // A password that an earlier page stored leaves localStorage too.
      if (scrubbed) system.authActions.persistAuthorizationIfNeeded();
      return result;
    };
  }

  /** The auth with its password dropped: the refresh token stands in for it. */
  function withoutPassword(auth) {
    if (!auth || typeof auth !== "object" || !("password" in auth)) return auth;
    var copy = Object.assign({}, auth);
    delete copy.password;
    return copy;
  }

  /** [name, auth] of the OAuth 2.0 login that holds a refresh token, or null. */
  function oauthLogin() {
    if (!getSystem) return null;
    var found = getSystem()
      .authSelectors.authorized()
      .findEntry(function (auth) {
        return (
          auth.getIn(["schema", "type"]) === "oauth2" &&
          Boolean(auth.getIn(["token", "refresh_token"]))
        );
      });
    return found || null;
  }

  function accessToken() {
    var login = oauthLogin();
    var token = login && login[1].getIn(["token", "access_token"]);
    if (token) oauthTokens.add(token);
    return token || null;
  }

  function expiresSoon() {
    var login = oauthLogin();
    var expiresAt = login && login[1].getIn(["token", "expires_at"]);
    if (!expiresAt) return false; // unknown: the 401 token_expired path handles it
    var lifetime = (login[1].getIn(["token", "expires_in"]) || 0) * 1000;
    return Date.now() >= expiresAt - Math.min(MAX_MARGIN_MS, lifetime * MARGIN_SHARE);
  }

  function bearerOf(request) {
    var headers = request.headers || {};
    var value = headers.Authorization || headers.authorization || "";
    var match = /^Bearer (\S+)$/i.exec(value);
    return match ? match[1] : null;
  }

  function setBearer(request, token) {
    delete request.headers.authorization;
    request.headers.Authorization = "Bearer " + token;
  }

  /** Swagger UI's requestInterceptor: a fresh enough token on OAuth 2.0 requests. */
  function requestInterceptor(request) {
    var sent = bearerOf(request);
    accessToken(); // remember the current one
    if (!sent || !oauthTokens.has(sent)) return request; // not the OAuth 2.0 login's
    return beforeSending(request);
  }

  async function beforeSending(request) {
    if (expiresSoon()) await refreshOnce();
    var current = accessToken();
    if (current) setBearer(request, current);
    request.responseInterceptor = function (response) {
      return afterAnswer(request, response);
    };
    return request;
  }

  /** The answer to an OAuth 2.0 request: refresh and repeat once if it expired. */
  async function afterAnswer(request, response) {
    if (response.status !== 401) return response;
    if (errorOf(response) === "token_expired") {
      var used = bearerOf(request);
      var current = accessToken();
      // Another request may have refreshed while this one was on its way.
      var renewed = current !== null && current !== used && !expiresSoon();
      if (renewed || (await refreshOnce())) response = await repeat(request);
    }
    if (response.status === 401) offerLogin(errorOf(response));
    return response;
  }

  /** The request again with the current token, through swagger-client's http. */
  async function repeat(request) {
    var again = Object.assign({}, request, {
      headers: Object.assign({}, request.headers),
    });
    delete again.requestInterceptor;
    delete again.responseInterceptor;
    setBearer(again, accessToken());
    try {
      return await getSystem().fn.fetch(again);
    } catch (error) {
      if (error.response) return error.response; // an answer, just not a 2xx
      throw error;
    }
  }

  function errorOf(response) {
    var body = response.body;
    if (!body || typeof body !== "object") {
      try {
        body = JSON.parse(response.text);
      } catch (error) {
        return null;
      }
    }
    return (body && body.error) || null;
  }

  /** Resolves to true once a new token is in place; one refresh for all callers. */
  function refreshOnce() {
    if (refreshing === null) {
      refreshing = refresh()
        .catch(function (error) {
          console.error("swagger-refresh: the refresh failed", error);
          return false;
        })
        .finally(function () {
          refreshing = null;
        });
    }
    return refreshing;
  }

  async function refresh() {
    var login = oauthLogin();
    if (!login) return false;
    var name = login[0];
    var auth = login[1];
    var started = generation;
    var response;
    var data = {};
    try {
      response = await fetch(refreshUrl(name, auth.get("schema")), {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: auth.getIn(["token", "refresh_token"]),
        }),
        credentials: "same-origin",
        cache: "no-store",
      });
      data = await response.json().catch(function () {
        return {};
      });
    } catch (error) {
      showNotice("The token could not be refreshed (" + error.message + ").");
      return false;
    }
    if (generation !== started) {
      // Logged in or out meanwhile: that login stands, this answer is stale.
      return accessToken() !== null;
    }
    var system = getSystem();
    if (response.ok && data.access_token) {
      storingRefresh = true;
      try {
        system.authActions.authorizeOauth2WithPersistOption({
          auth: auth.delete("token").toJS(),
          token: data,
        });
      } finally {
        storingRefresh = false;
      }
      return true;
    }
    if (response.status === 400 || response.status === 401) {
      // The refresh token is spent, expired or revoked: only the password helps.
      system.authActions.logoutWithPersistOption([name]);
      var reason = data.error_description || data.error || "HTTP " + response.status;
      showNotice(
        "Your session has ended (" +
          reason.replace(/\.$/, "") +
          "): authorize again with your password."
      );
      openAuthorize();
      return false;
    }
    showNotice(
      "The token could not be refreshed (HTTP " + response.status + "); try again."
    );
    return false;
  }

  /** The flow's refreshUrl (else its tokenUrl), resolved as Swagger UI resolves
   * tokenUrl. Swagger UI's copy of the scheme drops refreshUrl: read the spec's. */
  function refreshUrl(name, schema) {
    var system = getSystem();
    var flow = ["components", "securitySchemes", name, "flows", schema.get("flow")];
    return resolved(
      system.specSelectors.specJson().getIn(flow.concat("refreshUrl")) ||
        schema.get("tokenUrl")
    );
  }

  /** The token endpoint; /revoke is its sibling (under any path prefix too). */
  function tokenEndpoint(schema) {
    return resolved(schema.get("tokenUrl"));
  }

  function resolved(url) {
    var oas3 = getSystem().oas3Selectors;
    var server = oas3 && oas3.serverEffectiveValue(oas3.selectedServer());
    return String(new URL(url, new URL(server || ".", document.baseURI)));
  }

  function offerLogin(error) {
    if (LOGIN_FIXES[error]) showNotice(LOGIN_FIXES[error]);
  }

  /** Forget the OAuth 2.0 login (its token cannot do this), then ask for it. */
  function authorizeAgain() {
    hideNotice();
    var login = oauthLogin();
    if (login) getSystem().authActions.logoutWithPersistOption([login[0]]);
    openAuthorize();
  }

  function openAuthorize() {
    var system = getSystem();
    system.authActions.showDefinitions(system.authSelectors.definitionsToAuthorize());
  }

  function showNotice(text) {
    var notice = document.getElementById("swagger-reauth");
    if (!notice) return;
    document.getElementById("swagger-reauth-message").textContent = text;
    notice.hidden = false;
  }

  function hideNotice() {
    var notice = document.getElementById("swagger-reauth");
    if (notice) notice.hidden = true;
  }

  function listen() {
    var button = document.getElementById("swagger-reauth-button");
    if (button) button.addEventListener("click", authorizeAgain);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", listen);
  } else {
    listen();
  }

  window.SwaggerRefresh = {
    plugin: plugin,
    requestInterceptor: requestInterceptor,
  };
})();
