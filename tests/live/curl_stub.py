"""A stub of the API for tests/live/test_curl_demo.py: it answers clients/curl/demo.sh
as the API does (each login a session of its own, ended by /logout and /revoke;
TOTP with codes checked as RFC 6238 has them; a login with a DPoP proof bound to
its key, RFC 9449, the proofs checked with PyJWT), but breaks the contract where
told.
"""

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import jwt
import pyotp

from auth.dpop import BOUND, OTHER_KEY
from clients.python.dpop import access_token_hash, jwk_thumbprint
from tests.servers import HOST

STOP_TIMEOUT = 15.0
STEP_UP_CHALLENGE = (
    'Bearer realm="api", error="insufficient_user_authentication", '
    'error_description="The token is not fresh.", max_age="900"'
)


def _b64(data: dict) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def fake_jwt(**claims) -> str:
    """Looks like a JWT to the script (it never checks signatures)."""
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"


def token_pair(
    *,
    fresh: bool,
    family: str,
    expires_in: int = 0,
    refresh_jti: str = "r1",
    amr: tuple[str, ...] = ("pwd",),
    jkt: str | None = None,
) -> dict:
    """A token answer; with `jkt`, both tokens bound to that key (RFC 9449 §6)."""
    bound = {} if jkt is None else {"cnf": {"jkt": jkt}}
    access = {"type": "access", "fresh": fresh, "jti": secrets.token_hex(4)}
    refresh = {"type": "refresh", "jti": refresh_jti}
    return {
        "access_token": fake_jwt(**access, fam=family, amr=amr, **bound),
        "refresh_token": fake_jwt(**refresh, fam=family, amr=amr, **bound),
        "token_type": "Bearer" if jkt is None else "DPoP",
        "expires_in": expires_in,
    }


def claims_of(token: str) -> dict:
    """The payload of a fake_jwt (empty for anything else)."""
    try:
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}


def token_error(error: str, message: str) -> dict:
    return {"code": 401, "status": "Unauthorized", "message": message, "error": error}


EXPIRED = token_error("token_expired", "The token has expired.")
REVOKED = token_error("token_revoked", "The token has been revoked.")
NOT_FRESH = token_error("fresh_token_required", "The token is not fresh.")
CHALLENGE = {
    "WWW-Authenticate": 'Bearer realm="api", error="invalid_token", '
    'error_description="x"'
}
STEP_UP = {"WWW-Authenticate": STEP_UP_CHALLENGE}
MFA_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}
MFA_REQUIRED = token_error("mfa_required", "A second factor is required.")
INVALID_CODE = token_error("invalid_code", "The code is not valid.")
BOTH_FACTORS = ("pwd", "otp")
DPOP_ALGS = "ES256 ES384 EdDSA RS256 PS256"
# The stub tells a replayed proof from a bad one no more than the demo asks.
REPLAYED_OR_INVALID = (
    "This DPoP proof was used before: make a new one for every request."
)


def dpop_refusal(error: str, message: str) -> tuple:
    """A protected route's refusal of a bound token (RFC 9449 §7.1)."""
    challenge = f'DPoP error="{error}", error_description="{message}", '
    return (
        401,
        token_error(error, message),
        {"WWW-Authenticate": challenge + f'algs="{DPOP_ALGS}"'},
    )


def verified_proof(proof: str) -> tuple[dict, dict]:
    """(header, claims) of a proof whose signature checks out against its own
    JWK (RFC 9449 §4.3); jwt.PyJWTError for anything else."""
    header = jwt.get_unverified_header(proof)
    if header.get("typ") != "dpop+jwt" or not isinstance(header.get("jwk"), dict):
        raise jwt.InvalidTokenError("not a DPoP proof")
    public_key = jwt.PyJWK(header["jwk"], algorithm=header.get("alg")).key
    claims = jwt.decode(proof, public_key, algorithms=[header["alg"]])
    return header, claims


class StubAPI:
    """Answers like the API (each login a session of its own, ended by /logout and
    /revoke; a TOTP code good for its step and the one before, once), but breaks
    it where `broken` says."""

    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.me_calls = 0
        self.logins = 0
        self.ended: set[str] = set()  # the sessions (families) that ended
        self.refresh_token = ""
        self.username = ""
        self.password = ""
        self.families: list[str] = []  # every session started, in order
        self.lock = threading.Lock()
        self.pending_secret = ""
        self.totp_secret = ""  # TOTP is on
        self.last_step = -1  # the newest step whose code was used
        self.recovery_codes: set[str] = set()
        self.mfa_tokens: set[str] = set()  # logins waiting for a code
        self.jtis: set[str] = set()  # the DPoP proofs taken (each is good once)

    def _new_session(self) -> str:
        with self.lock:
            self.logins += 1
            family = f"stub-family-{self.logins}"
            self.families.append(family)
        return family

    def _spend(self, body: dict) -> bool:
        """Whether `body` carries a good code (spent now) or recovery code."""
        if body.get("recovery_code") in self.recovery_codes:
            self.recovery_codes.discard(body["recovery_code"])
            return True
        now = int(time.time()) // 30
        for step in (now - 1, now):
            totp = pyotp.TOTP(self.totp_secret or self.pending_secret)
            if step > self.last_step and totp.at(step * 30) == body.get("code"):
                self.last_step = step
                return True
        return False

    def second_factor(self, method: str, path: str, body: dict) -> tuple | None:
        """The answer of a TOTP route, or None for any other."""
        if (method, path) == ("POST", "/me/mfa/totp"):
            self.pending_secret = pyotp.random_base32()
            uri = f"otpauth://totp/Stub:{self.username}?secret={self.pending_secret}"
            svg = '<svg xmlns="http://www.w3.org/2000/svg"></svg>'
            return (
                201,
                {"secret": self.pending_secret, "otpauth_uri": uri, "qr_svg": svg},
                {},
            )
        if (method, path) == ("POST", "/me/mfa/totp/confirm"):
            if not self._spend(body):
                return 400, {**INVALID_CODE, "code": 400, "status": "Bad Request"}, {}
            self.totp_secret = self.pending_secret
            self.recovery_codes = {secrets.token_hex(8) for _ in range(10)}
            return 200, {"recovery_codes": sorted(self.recovery_codes)}, {}
        if (method, path) in (("GET", "/me/mfa"), ("DELETE", "/me/mfa/totp")):
            if method == "DELETE":
                self.totp_secret = ""
                self.recovery_codes = set()
            left = len(self.recovery_codes)
            return (
                200,
                {"totp": bool(self.totp_secret), "recovery_codes_left": left},
                {},
            )
        if (method, path) == ("POST", "/login/mfa"):
            if body.get("mfa_token") not in self.mfa_tokens:
                return 401, token_error("invalid_mfa_token", "Log in again."), {}
            if not self._spend(body):
                return 401, INVALID_CODE, {}
            self.mfa_tokens.discard(body["mfa_token"])
            amr = ("pwd",) if self.broken == "mfa_amr_password_only" else BOTH_FACTORS
            return 200, token_pair(fresh=True, family=self._new_session(), amr=amr), {}
        return None

    def proof_key(self, method: str, proof: str, token: str = "") -> str | None:
        """The thumbprint of a good proof's key (signed by it, for `method`, with
        `token`'s ath if one, never seen before); None for a bad proof."""
        try:
            header, claims = verified_proof(proof)
        except jwt.PyJWTError:
            return None
        ath = access_token_hash(token) if token else None
        with self.lock:
            replayed = claims.get("jti") in self.jtis
            self.jtis.add(claims.get("jti"))
        if replayed and self.broken != "dpop_replay_accepted":
            return None
        if claims.get("htm") != method or claims.get("ath") != ath:
            return None
        return jwk_thumbprint(header["jwk"])

    def dpop_refused(self, method: str, scheme: str, token: str, proof: str):
        """The refusal of a bound token without a good proof of its key, or
        None (an unbound token, or a good proof)."""
        jkt = claims_of(token).get("cnf", {}).get("jkt")
        if jkt is None:
            return None
        if scheme != "DPoP" or not proof:
            if self.broken == "dpop_bearer_accepted":
                return None
            return dpop_refusal("invalid_token", BOUND)
        proved = self.proof_key(method, proof, token)
        if proved is None:
            return dpop_refusal("invalid_dpop_proof", REPLAYED_OR_INVALID)
        if proved != jkt:
            return dpop_refusal("invalid_token", OTHER_KEY)
        return None

    def answer(
        self,
        method: str,
        path: str,
        token: str,
        body: dict,
        *,
        scheme: str = "Bearer",
        proof: str = "",
    ) -> tuple:
        """(status, JSON body, extra headers) for one request; `token` is the
        token sent with `scheme`, `body` the JSON or form parameters, `proof`
        the DPoP header."""
        family = claims_of(token).get("fam")
        with self.lock:
            if family is not None and family in self.ended and path != "/revoke":
                return 401, REVOKED, CHALLENGE
        refused = self.dpop_refused(method, scheme, token, proof)
        if refused is not None:
            return refused
        if (method, path) == ("POST", "/register"):
            if self.broken == "register_500":
                return 500, {"code": 500, "error": "internal_error"}, {}
            self.username = body.get("username", "")
            self.password = body.get("password", "")
            return 201, {"id": 1, "username": self.username}, {}
        answer = self.second_factor(method, path, body)
        if answer is not None:
            return answer
        if (method, path) == ("POST", "/login"):
            if self.totp_secret and self.broken != "mfa_ignored":
                mfa_token = secrets.token_urlsafe(32)
                self.mfa_tokens.add(mfa_token)
                return 401, {**MFA_REQUIRED, "mfa_token": mfa_token}, MFA_CHALLENGE
            jkt = None
            if proof and self.broken != "dpop_ignored":
                jkt = self.proof_key(method, proof)
                if jkt is None:
                    error = {"error": "invalid_dpop_proof", "code": 400}
                    return 400, {**error, "status": "Bad Request"}, {}
            family = self._new_session()
            expires_in = 900 if self.broken == "long_lifetime" else 0
            pair = token_pair(fresh=True, family=family, expires_in=expires_in, jkt=jkt)
            self.refresh_token = pair["refresh_token"]
            return 200, pair, {}
        if (method, path) == ("GET", "/me"):
            with self.lock:
                self.me_calls += 1
                calls = self.me_calls
            if calls == 2:  # the token "expired" in between
                return 401, EXPIRED, {} if self.broken == "no_challenge" else CHALLENGE
            return 200, {"id": 1, "username": self.username, "is_admin": False}, {}
        if (method, path) == ("POST", "/refresh"):
            pair = token_pair(
                fresh=self.broken == "refresh_fresh",
                family=family,
                refresh_jti="r2",
                jkt=claims_of(token).get("cnf", {}).get("jkt"),
            )
            if self.broken == "refresh_not_rotated":
                pair["refresh_token"] = self.refresh_token
            return 200, pair, {}
        if (method, path) == ("POST", "/store"):
            return 201, {"id": 7, "name": body.get("name")}, {}
        if (method, path) == ("POST", "/item"):
            if not claims_of(token).get("fresh"):
                return (
                    401,
                    NOT_FRESH,
                    CHALLENGE if self.broken == "old_challenge" else STEP_UP,
                )
            item = {"id": 1, "name": body.get("name"), "price": 1.5, "store": {"id": 7}}
            return 201, item, {}
        if (method, path) == ("POST", "/reauthenticate"):
            if body.get("password") != self.password:
                return (
                    401,
                    token_error("invalid_credentials", "Invalid credentials."),
                    {},
                )
            amr = ("pwd",)
            if self.totp_secret and self.broken != "step_up_without_code":
                if "code" not in body and "recovery_code" not in body:
                    return 401, MFA_REQUIRED, MFA_CHALLENGE
                if not self._spend(body):
                    return 401, INVALID_CODE, {}
                amr = BOTH_FACTORS
            if self.broken == "reauthenticate_forks":
                family = "stub-family-forked"
            pair = token_pair(fresh=True, family=family, refresh_jti="r3", amr=amr)
            return 200, pair, {}
        if (method, path) == ("GET", "/me/sessions"):
            with self.lock:
                live = [f for f in reversed(self.families) if f not in self.ended]
            if self.broken == "orphan_session":
                live.append("stub-orphan")
            return 200, [{"id": f, "current": f == family} for f in live], {}
        if (method, path) == ("POST", "/logout"):
            with self.lock:
                self.ended.add(family)
            return 200, {"message": "Successfully logged out."}, {}
        if (method, path) == ("POST", "/revoke"):
            revoked = claims_of(body.get("token", ""))
            ignored = {
                "revoke_ignored": True,
                "revoke_ignores_access_tokens": revoked.get("type") == "access",
            }.get(self.broken, False)
            if not ignored and "fam" in revoked:
                with self.lock:
                    self.ended.add(revoked.get("fam"))
            return 200, {"message": "The token is revoked."}, {}
        return 404, {"code": 404, "error": "not_found"}, {}


@contextmanager
def stub_server(broken: str) -> Iterator[int]:
    """A StubAPI on a loopback port, in a thread; always shut down and closed."""
    api = StubAPI(broken)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get_content_type() == "application/x-www-form-urlencoded":
                body = dict(parse_qsl(raw.decode()))
            else:
                body = json.loads(raw) if raw else {}
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            status, payload, headers = api.answer(
                self.command,
                self.path,
                token,
                body,
                scheme=scheme,
                proof=self.headers.get("DPoP", ""),
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT)
