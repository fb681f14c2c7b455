#!/usr/bin/env bash
# A script that calls the Stores API with an API token: no password, no refresh.
#
# Usage: STORES_API_TOKEN=<token> clients/curl/api-token.sh BASE_URL [STORE_NAME]
#
# Prints whose token it is and the stores (the first 100); with STORE_NAME,
# it creates that store first. Make the token once, with a fresh login (the token
# is shown in that answer only; keep it where you keep secrets):
#
#   access=$(curl -sS -X POST "$BASE_URL/login" -H 'Content-Type: application/json' \
#     -d '{"username": "alice", "password": "..."}' \
#     | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
#   curl -sS -X POST "$BASE_URL/me/api-tokens" -H "Authorization: Bearer $access" \
#     -H 'Content-Type: application/json' -d '{"name": "nightly", "expires_in_days": 30}'
#
# An API token is never fresh (operations that need a fresh login refuse it) and
# is never refreshed: on any 401 the script says why and stops. Revoke a token
# with DELETE /me/api-tokens/{id}; a password change revokes them all.
#
# Exit status: 0 done; 1 the API refused (its `error` and `message` are printed)
# or did not answer; 2 usage error or a missing tool.
#
# Needs bash, curl and python3 (for JSON; no jq).
set -euo pipefail

usage() {
  printf 'Usage: STORES_API_TOKEN=<token> %s BASE_URL [STORE_NAME]\n' "$0" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
BASE_URL="${1%/}"
case "$BASE_URL" in http://?* | https://?*) ;; *) usage ;; esac
if [ -z "${STORES_API_TOKEN:-}" ]; then
  printf 'STORES_API_TOKEN is not set: make an API token first (see the header).\n' >&2
  exit 2
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { printf 'needs %s\n' "$tool" >&2; exit 2; }
done

BODY="$(mktemp "${TMPDIR:-/tmp}/stores-api-token.XXXXXX")"
trap 'rm -f "$BODY"' EXIT

# call METHOD PATH [JSON]: the API's answer in $BODY, its status in $STATUS. The
# token goes in a header read from standard input, so `ps` never shows it.
call() {
  local data=()
  [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
  if ! STATUS="$(printf 'Authorization: Bearer %s\n' "$STORES_API_TOKEN" |
    curl -sS --max-time 10 -o "$BODY" -w '%{http_code}' -X "$1" -H @- \
      "${data[@]}" "$BASE_URL$2")"; then
    printf '%s %s: no answer from %s\n' "$1" "$2" "$BASE_URL" >&2
    exit 1
  fi
}

# field KEY: the value of KEY in the answer's JSON body (nothing when absent).
field() {
  python3 -c 'import json, sys
value = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if value is None else value)' "$BODY" "$1" 2>/dev/null || true
}

# expect STATUS WHAT: stop, saying why, unless the answer has that status.
expect() {
  [ "$STATUS" = "$1" ] && return
  local error
  error="$(field error)"
  printf '%s failed: HTTP %s %s: %s\n' "$2" "$STATUS" "${error:-?}" "$(field message)" >&2
  case "$error" in
    token_expired) printf 'The API token has expired: make a new one.\n' >&2 ;;
    token_revoked) printf 'The API token was revoked: make a new one.\n' >&2 ;;
    fresh_token_required) printf 'That needs a fresh login, not an API token.\n' >&2 ;;
  esac
  exit 1
}

call GET /me
expect 200 "Reading the token's user"
printf 'Acting as %s (with an API token)\n' "$(field username)"

if [ $# -eq 2 ]; then
  name="$(python3 -c 'import json, sys; print(json.dumps({"name": sys.argv[1]}))' "$2")"
  call POST /store "$name"
  expect 201 "Creating the store"
  printf 'Created store %s (id %s)\n' "$(field name)" "$(field id)"
fi

call GET '/store?page=1&page_size=100'
expect 200 "Listing the stores"
python3 -c 'import json, sys
stores = json.load(open(sys.argv[1]))
print("%d stores:" % len(stores))
for store in stores:
    print("  %s (id %s)" % (store["name"], store["id"]))' "$BODY"
