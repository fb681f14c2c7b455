#!/usr/bin/env bash
# The three-step JWT client flow of the Stores API, with curl.
#
# Usage: clients/curl/demo.sh BASE_URL      e.g. clients/curl/demo.sh http://127.0.0.1:5000
#
# Registers a throw-away user (demo_<random hex>) and walks the flow of the README:
#   1. send the access token you have              -> 200
#   2. on 401 token_expired, POST /refresh          -> a non-fresh access token and a
#      new refresh token (rotation); repeat the request -> 200
#   3. on any other 401, log in again; its step-up variant: POST /item answers 401
#      fresh_token_required with the RFC 9470 challenge (WWW-Authenticate: Bearer
#      error="insufficient_user_authentication", max_age="N"), so the user proves
#      who they are again INSIDE the session (POST /reauthenticate with the access
#      token and the password: a fresh access token of the same session and a new
#      refresh token), the request is repeated -> 201, and GET /me/sessions still
#      lists one session
# then logs in elsewhere and out, checking that that session's tokens answer 401
# token_revoked, and ends two more sessions with POST /revoke (RFC 7009: the token in
# a form body, no Authorization header): one with its refresh token (a new login),
# and the first login's with its long-expired access token.
# Last, a second factor (docs/mfa.md): TOTP turned on (POST /me/mfa/totp, confirmed
# with a first code: ten recovery codes), a login that answers 401 mfa_required with
# an mfa_token and is completed with a code at POST /login/mfa (amr ["pwd", "otp"]),
# a step-up that needs a code with the password (a recovery code here), and TOTP
# turned off. The codes are RFC 6238's, computed by python3 from the secret, as an
# authenticator app would.
# Then DPoP (RFC 9449): a login with a proof binds the session to this run's key
# (token_type DPoP, cnf.jkt its thumbprint); the token works with a proof of that
# key (Authorization: DPoP), not as a Bearer token (401 invalid_token) nor with a
# proof used before (401 invalid_dpop_proof), and /refresh takes the refresh token
# with a proof. The proofs come from clients/curl/dpop-proof.py (ES256, the key in
# a temporary file); a server with DPOP_NONCE_REQUIRED=true is not shown.
# Each step prints one numbered line: the request, the status, the relevant part of
# the body, OK or FAIL. Tokens are shortened, never printed whole.
#
# An expired access token: this script cannot mint tokens (it has no secret), so it
# WAITS for the access token from /login to expire: expires_in (from /login) plus the
# server's clock-skew leeway (JWT_DECODE_LEEWAY, 5 s by default) plus one second.
# That is practical only against a server with a short access-token lifetime, e.g.
#     JWT_ACCESS_TOKEN_EXPIRES=3 ./scripts/serve.sh
# When expires_in is longer than DEMO_MAX_WAIT the script says so and stops (exit 3).
# (A run registers once, logs in six times, completes one login with a code and
# re-authenticates three times: these share the login flood limit, RATELIMIT_LOGIN
# "10 per minute" by default, which allows about one run a minute from one address.)
#
# Environment:
#   DEMO_MAX_WAIT  the longest access-token lifetime worth waiting for, seconds (30)
#   DEMO_LEEWAY    the server's JWT_DECODE_LEEWAY, seconds (5)
#
# Exit status: 0 every answer was the one the contract promises; 1 an answer differed
# (expected and actual are printed) or the server did not answer; 2 usage error or a
# missing tool; 3 the access-token lifetime is too long to wait for.
#
# Needs only bash, curl and python3 (for JSON and the JWT payloads; no jq) with the
# cryptography package (for the DPoP proofs).

set -euo pipefail

PROG=${0##*/}

usage() {
  printf 'Usage: %s BASE_URL      e.g. %s http://127.0.0.1:5000\n' "$PROG" "$PROG"
  printf 'Walks the three-step JWT client flow against the Stores API. The server\n'
  printf 'needs a short access-token lifetime (JWT_ACCESS_TOKEN_EXPIRES of at most\n'
  printf 'DEMO_MAX_WAIT=%s seconds): the demo waits for a token to expire.\n' \
    "${DEMO_MAX_WAIT:-30}"
}

if [[ $# -ne 1 || -z ${1:-} ]]; then
  usage >&2
  exit 2
fi
if [[ $1 == -h || $1 == --help ]]; then
  usage
  exit 0
fi
BASE_URL=$1
while [[ $BASE_URL == */ ]]; do
  BASE_URL=${BASE_URL%/}
done
if [[ ! $BASE_URL =~ ^https?://[^/]+ ]]; then
  printf '%s: BASE_URL must start with http:// or https://, got %q\n' "$PROG" "$1" >&2
  usage >&2
  exit 2
fi

for tool in curl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    printf '%s: %s is required but not installed\n' "$PROG" "$tool" >&2
    exit 2
  fi
done
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then
  printf '%s: python3 needs the cryptography package for the DPoP proofs\n' "$PROG" >&2
  printf '(pip install cryptography)\n' >&2
  exit 2
fi
DPOP_PROOF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/dpop-proof.py

MAX_WAIT=${DEMO_MAX_WAIT:-30}
LEEWAY=${DEMO_LEEWAY:-5}
for setting in "DEMO_MAX_WAIT=$MAX_WAIT" "DEMO_LEEWAY=$LEEWAY"; do
  if [[ ! ${setting#*=} =~ ^[0-9]+$ ]]; then
    printf '%s: %s must be a whole number of seconds\n' "$PROG" "$setting" >&2
    exit 2
  fi
done

TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stores-demo.XXXXXX")
cleanup() { rm -rf "$TMP_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
BODY=$TMP_DIR/body.json
HEADERS=$TMP_DIR/headers.txt

# JSON and JWT without jq: after every request, one python3 call flattens the answer
# into KEYS/VALUES: the JSON body's values by dotted path ("store.id"; "0.id" for a
# list's first), the claims of any *_token in it, decoded but NOT verified
# ("access_token:fresh"; a client only reads them, the server checks the
# signature), the WWW-Authenticate header ("@www-authenticate") and the start of
# the body ("@snippet"). Missing and null values are simply absent.
PY_HELPERS='
import base64, hashlib, hmac, json, secrets, struct, sys, time

def text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)

def flatten(data, prefix=""):
    if isinstance(data, (dict, list)):
        items = data.items() if isinstance(data, dict) else enumerate(data)
        for key, value in items:
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif data is not None and prefix:
        yield prefix, text(data)

def claims(token):
    try:
        part = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}

def answer(body_file, headers_file):
    with open(body_file, "rb") as body:
        raw = body.read()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    yield from flatten(data)
    if isinstance(data, dict):
        for key, value in data.items():
            if str(key).endswith("_token") and isinstance(value, str):
                for claim, item in claims(value).items():
                    if item is not None:
                        yield f"{key}:{claim}", text(item)
    challenge = None
    with open(headers_file, encoding="latin-1") as headers:
        for line in headers:
            name, colon, rest = line.partition(":")
            if line.startswith("HTTP/"):
                challenge = None  # only the last response counts
            elif colon and name.strip().lower() == "www-authenticate":
                challenge = rest.strip()
    if challenge is not None:
        yield "@www-authenticate", challenge
    snippet = " ".join(raw[:200].decode("utf-8", "replace").split())[:80]
    yield "@snippet", snippet or "(empty)"

if sys.argv[1] == "answer":  # answer BODY_FILE HEADERS_FILE: NUL-separated pairs
    for pair in answer(sys.argv[2], sys.argv[3]):
        for part in pair:
            sys.stdout.write(part.replace(chr(0), "") + chr(0))
elif sys.argv[1] == "random":  # random N: N random bytes, as hex
    print(secrets.token_hex(int(sys.argv[2])))
elif sys.argv[1] == "totp":  # totp SECRET STEPS_AGO: RFC 6238 (SHA-1, 30 s, 6 digits)
    if 30 - time.time() % 30 < 2:  # a code that must arrive within its step
        time.sleep(30 - time.time() % 30)
    secret = sys.argv[2].upper()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    step = int(time.time()) // 30 - int(sys.argv[3])
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 15  # RFC 4226 §5.3: dynamic truncation
    number = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    print(f"{number % 1000000:06d}")
'
py() { python3 -c "$PY_HELPERS" "$@"; }

KEYS=()
VALUES=()
parse_answer() {
  local key value
  KEYS=()
  VALUES=()
  while IFS= read -r -d '' key && IFS= read -r -d '' value; do
    KEYS+=("$key")
    VALUES+=("$value")
  done < <(py answer "$BODY" "$HEADERS")
}

# field KEY: a value of the last answer (see above); nothing when it is absent.
field() {
  local i
  for ((i = 0; i < ${#KEYS[@]}; i++)); do
    if [[ ${KEYS[i]} == "$1" ]]; then
      printf '%s' "${VALUES[i]}"
      return 0
    fi
  done
}

short() { printf '%s...%s' "${1:0:8}" "${1: -6}"; } # never a whole token

STEP=0
STATUS=000
REQUEST=
HINT=

# line DETAIL VERDICT: the numbered line of the current step.
line() {
  printf '%2d. %-32s -> %s  %s  %s\n' "$STEP" "$REQUEST" "$STATUS" "$1" "$2"
}

# What an answer says: `error` and `message` of an error envelope, else its start.
answer() {
  local error message
  error=$(field error)
  message=$(field message)
  if [[ -n $error || -n $message ]]; then
    printf 'error=%s "%s"' "${error:-?}" "$message"
  else
    printf 'body: %s' "$(field @snippet)"
  fi
}

ok() { line "$1" OK; }

# fail WHAT EXPECTED ACTUAL: print the step as FAIL, expected vs actual, and stop.
fail() {
  line "$(answer)" FAIL
  printf '    expected %s: %s\n' "$1" "$2"
  printf '    actual   %s: %s\n' "$1" "$3"
  if [[ -n $HINT ]]; then
    printf '    hint: %s\n' "$HINT"
  fi
  printf '\nFAILED at step %d (%d passed before it).\n' "$STEP" "$((STEP - 1))"
  exit 1
}

# transmit METHOD PATH SHOWN [CURL_ARGS...]: one request, shown as SHOWN; sets
# STATUS and the answer's fields. No answer at all (refused, timed out) fails the step.
transmit() {
  local method=$1 path=$2
  REQUEST=$3
  shift 3
  STEP=$((STEP + 1))
  : >"$BODY"
  : >"$HEADERS"
  if ! STATUS=$(curl -sS --max-time 10 -o "$BODY" -D "$HEADERS" -w '%{http_code}' \
    -X "$method" -H 'Accept: application/json' "$@" "$BASE_URL$path"); then
    STATUS=000
    parse_answer
    fail "an HTTP answer" "any" "none (curl failed, see above)"
  fi
  parse_answer
}

# send METHOD PATH [TOKEN] [JSON]: TOKEN as the bearer token, JSON as the body.
send() {
  local method=$1 path=$2 token=${3:-} data=${4:-}
  local args=()
  if [[ -n $token ]]; then
    args+=(-H "Authorization: Bearer $token")
  fi
  if [[ -n $data ]]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$data")
  fi
  transmit "$method" "$path" "$method $path${token:+ [$(short "$token")]}" "${args[@]}"
}

# dpop_proof METHOD PATH [TOKEN]: a new DPoP proof (RFC 9449 §4) of this run's key
# for METHOD BASE_URL/PATH, with the hash of TOKEN (ath) when one goes with it in
# Authorization: DPoP; sets PROOF. The key file is made at the first proof.
dpop_proof() {
  if ! PROOF=$(python3 "$DPOP_PROOF" "$DPOP_KEY" "$1" "$BASE_URL$2" "${3:-}"); then
    printf '%s: dpop-proof.py failed (see above)\n' "$PROG" >&2
    exit 2
  fi
}

# send_dpop METHOD PATH TOKEN [JSON] [WHICH]: PROOF in the DPoP header, TOKEN (if
# any) as Authorization: DPoP, JSON as the body; WHICH names the proof (shown).
send_dpop() {
  local method=$1 path=$2 token=$3 data=${4:-} which=${5:-proof}
  local args=(-H "DPoP: $PROOF")
  if [[ -n $token ]]; then
    args+=(-H "Authorization: DPoP $token")
  fi
  if [[ -n $data ]]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$data")
  fi
  transmit "$method" "$path" \
    "$method $path ${token:+DPoP [$(short "$token")] }+ $which" "${args[@]}"
}

# revoke TOKEN HINT: POST /revoke as RFC 7009 has it, the token (and its type, HINT)
# form-encoded and no Authorization header: holding a token is the right to revoke it.
revoke() {
  transmit POST /revoke "POST /revoke token=$(short "$1")" \
    --data-urlencode "token=$1" --data-urlencode "token_type_hint=$2"
}

expect_status() {
  if [[ $STATUS != "$1" ]]; then
    fail "status" "$1" "$STATUS"
  fi
}

# expect_field KEY VALUE: the answer's KEY is VALUE.
expect_field() {
  local actual
  actual=$(field "$1")
  if [[ $actual != "$2" ]]; then
    fail "$1" "$2" "${actual:-(missing)}"
  fi
}

# expect_number KEY: the answer's KEY is a whole number.
expect_number() {
  local actual
  actual=$(field "$1")
  if [[ ! $actual =~ ^[0-9]+$ ]]; then
    fail "$1" "a whole number" "${actual:-(missing)}"
  fi
}

# expect_token_error ERROR: 401 with that `error` and an RFC 6750 challenge.
expect_token_error() {
  local challenge
  expect_status 401
  expect_field error "$1"
  challenge=$(field @www-authenticate)
  if [[ $challenge != *'error="invalid_token"'* ]]; then
    fail "WWW-Authenticate" 'Bearer realm="api", error="invalid_token", ...' \
      "${challenge:-(missing)}"
  fi
}

# expect_dpop_error ERROR: 401 with that `error` and a DPoP challenge naming it
# (RFC 9449 §7.1).
expect_dpop_error() {
  local challenge
  expect_status 401
  expect_field error "$1"
  challenge=$(field @www-authenticate)
  if [[ $challenge != "DPoP "*"error=\"$1\""* ]]; then
    fail "WWW-Authenticate" "DPoP error=\"$1\", ..." "${challenge:-(missing)}"
  fi
}

# expect_step_up: 401 fresh_token_required with the RFC 9470 challenge; sets
# MAX_AGE (quoted or bare in the header) and CHALLENGE.
expect_step_up() {
  expect_status 401
  expect_field error fresh_token_required
  CHALLENGE=$(field @www-authenticate)
  if [[ $CHALLENGE != *'error="insufficient_user_authentication"'* ]]; then
    fail "WWW-Authenticate" \
      'Bearer realm="api", error="insufficient_user_authentication", ..., max_age="N"' \
      "${CHALLENGE:-(missing)}"
  fi
  MAX_AGE=
  if [[ $CHALLENGE =~ max_age=\"?([0-9]+) ]]; then
    MAX_AGE=${BASH_REMATCH[1]}
  else
    fail "max_age in WWW-Authenticate" "a whole number of seconds" "$CHALLENGE"
  fi
}

# expect_tokens FRESH [TYPE]: a token answer (both tokens, token_type TYPE, Bearer
# unless said, expires_in in whole seconds) whose access token's `fresh` claim is
# FRESH (true or false).
expect_tokens() {
  local name
  expect_status 200
  for name in access_token refresh_token; do
    if [[ -z $(field "$name") ]]; then
      fail "$name" "a token" "(missing)"
    fi
  done
  expect_field token_type "${2:-Bearer}"
  expect_number expires_in
  expect_field access_token:type access
  expect_field access_token:fresh "$1"
  expect_field refresh_token:type refresh
}

# expect_session_pair FRESH PREVIOUS WHAT: a token answer (see expect_tokens) of
# the session FAMILY whose refresh token is new, not PREVIOUS (WHAT says which that
# is); sets PAIR_ACCESS and PAIR_REFRESH.
expect_session_pair() {
  expect_tokens "$1"
  expect_field access_token:fam "$FAMILY"
  PAIR_ACCESS=$(field access_token)
  PAIR_REFRESH=$(field refresh_token)
  if [[ $PAIR_REFRESH == "$2" ]]; then
    fail "refresh_token" "a new refresh token (rotation)" "$3"
  fi
}

RANDOM_HEX=$(py random 16)
USERNAME=demo_${RANDOM_HEX:0:8}
PASSWORD=demo-${RANDOM_HEX:8}
CREDENTIALS=$(printf '{"username": "%s", "password": "%s"}' "$USERNAME" "$PASSWORD")
STORE_NAME=demo-store-${RANDOM_HEX:0:8}
ITEM_NAME=demo-item-${RANDOM_HEX:0:8}

printf 'Three-step JWT client flow against %s (throw-away user %s)\n\n' \
  "$BASE_URL" "$USERNAME"

# -- Register and log in: a fresh access token and a refresh token ------------------
send POST /register "" "$CREDENTIALS"
expect_status 201
expect_number id
expect_field username "$USERNAME"
ok "id=$(field id) username=$(field username)"

send POST /login "" "$CREDENTIALS"
expect_tokens true
ACCESS=$(field access_token)
REFRESH=$(field refresh_token)
EXPIRES_IN=$(field expires_in)
FAMILY=$(field access_token:fam)
if [[ -z $FAMILY ]]; then
  fail "claim fam of the access token" "a session id" "(missing)"
fi
ok "token_type=Bearer expires_in=$EXPIRES_IN access=$(short "$ACCESS") (fresh: true)\
 refresh=$(short "$REFRESH")"

# -- 1. Send the access token you have -----------------------------------------------
send GET /me "$ACCESS"
expect_status 200
expect_field username "$USERNAME"
ok "username=$(field username): the access token works"

# -- Wait for it to expire -----------------------------------------------------------
if ((EXPIRES_IN > MAX_WAIT)); then
  printf '\nThe server issues access tokens for %s s (expires_in): too long to wait\n' \
    "$EXPIRES_IN"
  printf 'for (DEMO_MAX_WAIT=%s). This demo needs a server with a short access-token\n' \
    "$MAX_WAIT"
  printf 'lifetime, e.g. JWT_ACCESS_TOKEN_EXPIRES=3, or a larger DEMO_MAX_WAIT.\n'
  exit 3
fi
WAIT=$((EXPIRES_IN + LEEWAY + 1))
printf '    ... waiting %d s for the access token to expire (expires_in %d s + %d s\n' \
  "$WAIT" "$EXPIRES_IN" "$LEEWAY"
printf '        clock-skew leeway + 1 s; the script cannot mint an expired token)\n'
sleep "$WAIT"

# -- 2. On 401 token_expired, refresh and repeat the request -------------------------
HINT="is the server's JWT_DECODE_LEEWAY larger than DEMO_LEEWAY=$LEEWAY?"
send GET /me "$ACCESS"
expect_token_error token_expired
HINT=
ok "$(answer) -> refresh"

send POST /refresh "$REFRESH"
expect_session_pair false "$REFRESH" "the one that was sent"
NON_FRESH=$PAIR_ACCESS
NEW_REFRESH=$PAIR_REFRESH
ok "access=$(short "$NON_FRESH") (fresh: false, same session)\
 refresh=$(short "$NEW_REFRESH") (rotated: keep the new one)"

send GET /me "$NON_FRESH"
expect_status 200
expect_field username "$USERNAME"
ok "username=$(field username): the repeated request works"

send POST /store "$NON_FRESH" "$(printf '{"name": "%s"}' "$STORE_NAME")"
expect_status 201
expect_number id
expect_field name "$STORE_NAME"
STORE_ID=$(field id)
ok "id=$STORE_ID name=$(field name) (any access token will do)"

# -- 3. On any other 401, log in again; for a step-up, re-authenticate instead ------
ITEM=$(printf '{"name": "%s", "price": 1.5, "store_id": %s}' "$ITEM_NAME" "$STORE_ID")
send POST /item "$NON_FRESH" "$ITEM"
expect_step_up
ok "$(answer) max_age=$MAX_AGE -> step up"
printf '    WWW-Authenticate: %s\n' "$CHALLENGE"

REAUTH=$(printf '{"password": "%s"}' "$PASSWORD")
send POST /reauthenticate "$NON_FRESH" "$REAUTH"
expect_session_pair true "$NEW_REFRESH" "the one held before"
STEPPED=$PAIR_ACCESS
STEPPED_REFRESH=$PAIR_REFRESH
ok "access=$(short "$STEPPED") (fresh: true, same session)\
 refresh=$(short "$STEPPED_REFRESH") (keep both)"

send POST /item "$STEPPED" "$ITEM"
expect_status 201
expect_number id
expect_field name "$ITEM_NAME"
expect_field store.id "$STORE_ID"
ok "id=$(field id) name=$(field name) price=$(field price) store.id=$(field store.id)"

send GET /me/sessions "$STEPPED"
expect_status 200
expect_field 0.id "$FAMILY"
expect_field 0.current true
if [[ -n $(field 1.id) ]]; then
  fail "sessions" "one (the step-up starts none)" "more than one"
fi
ok "1 session, id=$(short "$FAMILY") (current): the step-up kept it"

# -- Log in elsewhere, then log out: every token of that login is revoked -----------
send POST /login "" "$CREDENTIALS"
expect_tokens true
FRESH=$(field access_token)
FRESH_REFRESH=$(field refresh_token)
ok "access=$(short "$FRESH") refresh=$(short "$FRESH_REFRESH") (a new session)"

send POST /logout "$FRESH"
expect_status 200
ok "message=\"$(field message)\""

send GET /me "$FRESH"
expect_token_error token_revoked
ok "$(answer): logged out"

send POST /refresh "$FRESH_REFRESH"
expect_token_error token_revoked
ok "$(answer): the refresh token of that login too"

# -- Revoke (RFC 7009): any token of a session ends it, no other credential ----------
REVOKED='The token is revoked.' # the answer for any token, so a prober learns nothing

send POST /login "" "$CREDENTIALS"
expect_tokens true
OTHER=$(field access_token)
OTHER_REFRESH=$(field refresh_token)
ok "access=$(short "$OTHER") refresh=$(short "$OTHER_REFRESH") (a new session)"

revoke "$OTHER_REFRESH" refresh_token
expect_status 200
expect_field message "$REVOKED"
ok "message=\"$(field message)\" (what a client sends at logout)"

send GET /me "$OTHER"
expect_token_error token_revoked
ok "$(answer): its access token too"

send POST /refresh "$OTHER_REFRESH"
expect_token_error token_revoked
ok "$(answer): that session is over"

# The first login's session is still alive (refreshed and stepped up above); its
# access token from /login expired long ago, and still names the session.
revoke "$ACCESS" access_token
expect_status 200
expect_field message "$REVOKED"
ok "message=\"$(field message)\" (an expired access token)"

send POST /refresh "$STEPPED_REFRESH"
expect_token_error token_revoked
ok "$(answer): the expired token ended its session"

# -- A second factor: TOTP (docs/mfa.md) ---------------------------------------------
BOTH_FACTORS='["pwd", "otp"]' # the `amr` claim (RFC 8176) of a login with a code

send POST /login "" "$CREDENTIALS"
expect_tokens true
MFA_ACCESS=$(field access_token)
ok "access=$(short "$MFA_ACCESS") (fresh: turning TOTP on needs a fresh login)"

send POST /me/mfa/totp "$MFA_ACCESS"
expect_status 201
SECRET=$(field secret)
if [[ ! $SECRET =~ ^[A-Z2-7]{32}$ ]]; then
  fail "secret" "32 base32 characters" "${SECRET:-(missing)}"
fi
if [[ $(field otpauth_uri) != otpauth://totp/* ]]; then
  fail "otpauth_uri" "otpauth://totp/ISSUER:USERNAME?secret=..." "$(field otpauth_uri)"
fi
if [[ $(field qr_svg) != '<svg'* ]]; then
  fail "qr_svg" "an SVG QR code of otpauth_uri" "$(field qr_svg)"
fi
ok "secret=$(short "$SECRET") otpauth_uri=otpauth://totp/... qr_svg=<svg...> (pending)"

# A code is good for its 30-second step and the one before, and never twice: the
# previous step's code confirms, so the current step's is left for the login below.
send POST /me/mfa/totp/confirm "$MFA_ACCESS" \
  "$(printf '{"code": "%s"}' "$(py totp "$SECRET" 1)")"
expect_status 200
RECOVERY_CODE=$(field recovery_codes.0)
if [[ -z $(field recovery_codes.9) || -n $(field recovery_codes.10) ]]; then
  fail "recovery_codes" "10 codes" "$(field @snippet)"
fi
ok "10 recovery codes, shown this once: TOTP is on"

send GET /me/mfa "$MFA_ACCESS"
expect_status 200
expect_field totp true
expect_field recovery_codes_left 10
ok "totp=true recovery_codes_left=10"

send POST /login "" "$CREDENTIALS"
expect_status 401
expect_field error mfa_required
MFA_TOKEN=$(field mfa_token)
if [[ -z $MFA_TOKEN || -n $(field access_token) ]]; then
  fail "the answer" "an mfa_token and no tokens" "$(field @snippet)"
fi
ok "error=mfa_required mfa_token=$(short "$MFA_TOKEN"): the password was right -> a code"

send POST /login/mfa "" \
  "$(printf '{"mfa_token": "%s", "code": "%s"}' "$MFA_TOKEN" "$(py totp "$SECRET" 0)")"
expect_tokens true
expect_field access_token:amr "$BOTH_FACTORS"
OTP_ACCESS=$(field access_token)
OTP_FAMILY=$(field access_token:fam)
ok "access=$(short "$OTP_ACCESS") amr=$BOTH_FACTORS (a new session)"

send POST /reauthenticate "$OTP_ACCESS" "$REAUTH"
expect_status 401
expect_field error mfa_required
if [[ -n $(field mfa_token) ]]; then
  fail "mfa_token" "none (the session binds the step-up)" "one"
fi
ok "error=mfa_required: the password alone is not enough -> with a code"

send POST /reauthenticate "$OTP_ACCESS" \
  "$(printf '{"password": "%s", "recovery_code": "%s"}' "$PASSWORD" "$RECOVERY_CODE")"
expect_tokens true
expect_field access_token:amr "$BOTH_FACTORS"
expect_field access_token:fam "$OTP_FAMILY"
OTP_STEPPED=$(field access_token)
ok "access=$(short "$OTP_STEPPED") (fresh, same session; a recovery code, once)"

send DELETE /me/mfa/totp "$OTP_STEPPED"
expect_status 200
expect_field totp false
expect_field recovery_codes_left 0
ok "totp=false recovery_codes_left=0: the password alone logs in again"

# -- DPoP (RFC 9449): a session bound to a key ---------------------------------------
# Each request of the session carries a new proof signed with the key; the tokens
# name the key (cnf.jkt, its RFC 7638 thumbprint), so a copied token is useless.
DPOP_KEY=$TMP_DIR/dpop-key.pem
dpop_proof POST /login # makes the key
JKT=$(python3 "$DPOP_PROOF" "$DPOP_KEY" --jkt)
BOUND_TO=$(printf '{"jkt": "%s"}' "$JKT") # the `cnf` claim of a bound token

send_dpop POST /login "" "$CREDENTIALS"
expect_tokens true DPoP
expect_field access_token:cnf "$BOUND_TO"
expect_field refresh_token:cnf "$BOUND_TO"
BOUND=$(field access_token)
BOUND_REFRESH=$(field refresh_token)
ok "token_type=DPoP cnf.jkt=$(short "$JKT") (this key's thumbprint: both tokens)"

dpop_proof GET /me "$BOUND"
send_dpop GET /me "$BOUND"
expect_status 200
expect_field username "$USERNAME"
ok "username=$(field username): the token with a proof of its key"

transmit GET /me "GET /me Bearer [$(short "$BOUND")]" -H "Authorization: Bearer $BOUND"
expect_dpop_error invalid_token
ok "$(answer): not a bearer token"

send_dpop GET /me "$BOUND" "" "the same proof"
expect_dpop_error invalid_dpop_proof
ok "$(answer): a proof is good once"

dpop_proof POST /refresh "$BOUND_REFRESH"
send_dpop POST /refresh "$BOUND_REFRESH"
expect_tokens false DPoP
expect_field access_token:cnf "$BOUND_TO"
if [[ $(field refresh_token) == "$BOUND_REFRESH" ]]; then
  fail "refresh_token" "a new refresh token (rotation)" "the one that was sent"
fi
BOUND=$(field access_token)
ok "access=$(short "$BOUND") (fresh: false) cnf.jkt=$(short "$JKT") (the same key)"

dpop_proof GET /me "$BOUND"
send_dpop GET /me "$BOUND"
expect_status 200
expect_field username "$USERNAME"
ok "username=$(field username): the refreshed token, with a new proof"

printf '\nAll %d steps passed.\n' "$STEP"
