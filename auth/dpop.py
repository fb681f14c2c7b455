"""DPoP (RFC 9449): sessions bound to a key the client holds, so a stolen token
is of no use without that key.

A login (/login, /login/mfa, /login/passkey, the /token password grant) that
comes with a `DPoP` proof binds the new session to the proof's key: both tokens
carry `cnf: {"jkt": <thumbprint>}` (§6.1) and every token the session is
refreshed or stepped up into keeps it. From then on each use of a token of that
session must come with a proof made by that key for that very request:

- a protected route and /refresh: `Authorization: DPoP <token>` and a proof whose
  `ath` is the token's hash (§7.1); a refusal is a 401 with a DPoP challenge;
- the /token refresh grant and /revoke, where the token is a parameter: a proof
  without `ath` (§5); a refusal is a 400 with an `error_description`.

A proof of another key is refused and audited (`dpop_key_mismatch`), and nothing
else happens: the thief cannot use the session, nor end it. Each proof is good
once (its `jti` is kept in the revocation store until the proof would be too old
anyway, §11.1) and for DPOP_PROOF_MAX_AGE seconds; with DPOP_NONCE_REQUIRED it
must also carry a nonce of the server's (§8). Without a proof nothing changes:
bearer tokens, as before, unless DPOP_REQUIRED refuses them for sessions whose
tokens travel in the Authorization header (API tokens and cookies are exempt).
"""

import hashlib
import logging
import time
from typing import Any, NamedTuple
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from flask import Flask, Response, after_this_request, current_app, request

from auth.challenges import www_authenticate
from auth.keys import SYMMETRIC, KeyRing, signing_keys
from auth.nonces import Nonces
from auth.proofs import Expected, InvalidProof, Proof, check_proof
from blocklist import get_blocklist
from core import APIError, audit, decode_leeway_seconds
from core.telemetry import DPOP_PROOFS
from core.urls import public_base

EXTENSION = "dpop"
# The token of a request whose Authorization header used the DPoP scheme (set by
# auth/headers.py, which hands the token on to Flask-JWT-Extended as a bearer's).
TOKEN_ENVIRON = "stores.dpop_token"
PROOF_ENVIRON = "HTTP_DPOP"
INVALID_PROOF, INVALID_TOKEN, USE_NONCE = (
    "invalid_dpop_proof",
    "invalid_token",
    "use_dpop_nonce",
)
NONCE_HEADER = "DPoP-Nonce"
# RFC 3986 §3.3: what a path holds as it is, beside the unreserved characters.
PATH_CHARACTERS = "/:@!$&'()*+,;="
NOT_BOUND = (
    "This token is not DPoP-bound: send it as 'Bearer <token>', without a DPoP header."
)
BOUND = (
    "This token is DPoP-bound: send it as 'Authorization: DPoP <token>' with a "
    "DPoP proof of its key (RFC 9449 §7.1)."
)
# At /token and /revoke the token is a form parameter (§5).
BOUND_PARAMETER = (
    "This token is DPoP-bound: send a DPoP proof of its key with it, without ath "
    "(RFC 9449 §5)."
)
OTHER_KEY = (
    "The DPoP proof is signed by another key than the one the token is bound to."
)
DPOP_ONLY = (
    "This server takes DPoP-bound sessions only: log in with a DPoP proof "
    "(RFC 9449), or in cookie mode."
)


class DpopRefused(APIError):
    """A request refused for its DPoP proof or binding: at a protected route a 401
    whose challenge names the DPoP scheme and its algorithms (§7.1); at an
    endpoint that issues tokens a 400 with an `error_description` (§5). A nonce,
    when one is due, rides along (§8)."""

    def __init__(
        self, message: str, error: str, *, issuing: bool, nonce: str | None = None
    ) -> None:
        super().__init__(message, error)
        self.status_code = 400 if issuing else 401
        self.headers = (
            {} if issuing else {"WWW-Authenticate": challenge(error, message)}
        )
        if nonce is not None:
            self.headers[NONCE_HEADER] = nonce

    def extra_fields(self) -> dict[str, Any]:
        return {"error_description": self.message} if self.status_code == 400 else {}


class DpopSettings(NamedTuple):
    algorithms: tuple[str, ...]
    max_age: float
    leeway: float
    required: bool
    nonces: Nonces | None


def init_dpop(app: Flask) -> None:
    """Read the DPOP_* settings once (after the signing keys, which key the
    nonces)."""
    config = app.config
    nonces = None
    if config["DPOP_NONCE_REQUIRED"]:
        with app.app_context():
            nonces = Nonces(
                _nonce_secrets(signing_keys()), config["DPOP_NONCE_LIFETIME"]
            )
    app.extensions[EXTENSION] = DpopSettings(
        tuple(config["DPOP_ALGORITHMS"]),
        float(config["DPOP_PROOF_MAX_AGE"]),
        decode_leeway_seconds(config),
        config["DPOP_REQUIRED"],
        nonces,
    )


def _nonce_secrets(ring: KeyRing) -> list[bytes]:
    """What nonce keys are derived from: every key of the ring with secret
    material, the current one first. HS256 fallbacks are secrets, so while a new
    secret rolls out instance by instance each accepts the others' nonces; an
    asymmetric fallback is public, and derives none."""
    secrets = []
    for key in ring.keys():
        if key.algorithm == SYMMETRIC:
            secrets.append(key.verifying_key)
        elif key.signing_key is not None:
            secrets.append(
                key.signing_key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    return secrets


def _settings() -> DpopSettings:
    return current_app.extensions[EXTENSION]


def algorithms() -> list[str]:
    """The proof algorithms this server accepts (RFC 8414 metadata, §5.1)."""
    return list(_settings().algorithms)


def challenge(error: str | None = None, description: str | None = None) -> str:
    """§7.1: the DPoP challenge, with the algorithms proofs may be signed with."""
    value = www_authenticate(error, description, scheme="DPoP")
    return value + f', algs="{" ".join(_settings().algorithms)}"'


def bound_key(claims: dict[str, Any]) -> str | None:
    """The thumbprint of the key a token is bound to (its `cnf.jkt`), if any."""
    confirmation = claims.get("cnf")
    return None if confirmation is None else confirmation["jkt"]


def session_binding(token_delivery: str) -> str | None:
    """The key a new session is bound to: the request's proof's, or None without
    a proof. Cookie delivery is never bound (the browser's cookie jar is its
    binding); with DPOP_REQUIRED, tokens in the body must be."""
    value = _proof_header(issuing=True)
    if value is None:
        if _settings().required and token_delivery != "cookie":
            raise DpopRefused(DPOP_ONLY, INVALID_PROOF, issuing=True)
        return None
    if token_delivery == "cookie":
        raise DpopRefused(
            "Tokens delivered in cookies are not DPoP-bound: send no DPoP header "
            "with token_delivery 'cookie'.",
            INVALID_PROOF,
            issuing=True,
        )
    proof = _verified(value, None, issuing=True)
    _spend(proof, issuing=True)
    return proof.jkt


def check_presented_token(claims: dict[str, Any]) -> None:
    """A protected route's (and /refresh's) check of the token's binding: a bound
    token comes as `DPoP <token>` with a proof of its key for this request; an
    unbound one comes without any.

    Flask-JWT-Extended reads the Authorization header before the cookies, and a
    token found there is the one it decodes: so the token came in the header
    exactly when the header holds one (the library says where only later)."""
    environ = request.environ
    token = environ.get(TOKEN_ENVIRON)
    jkt = bound_key(claims)
    if jkt is None:
        if token is not None or PROOF_ENVIRON in environ:
            raise DpopRefused(NOT_BOUND, INVALID_TOKEN, issuing=False)
        if (
            _settings().required
            and "fam" in claims
            and request.headers.get(current_app.config["JWT_HEADER_NAME"])
        ):
            raise DpopRefused(DPOP_ONLY, INVALID_TOKEN, issuing=False)
        return
    value = _proof_header(issuing=False)
    if token is None or value is None:
        raise DpopRefused(BOUND, INVALID_TOKEN, issuing=False)
    proof = _verified(value, token, issuing=False)
    if proof.jkt != jkt:
        _key_mismatch(claims, proof.jkt, INVALID_TOKEN, issuing=False)
    _spend(proof, issuing=False)


def check_refresh_grant(claims: dict[str, Any]) -> None:
    """The /token refresh grant (§5): a bound refresh token is traded with a proof
    of its key, without `ath`; an unbound one without a proof (with DPOP_REQUIRED,
    not at all)."""
    _check_token_parameter(claims, mismatch_error="invalid_grant", issues=True)


def check_revocable(claims: dict[str, Any]) -> None:
    """/revoke (RFC 7009): a bound token is held by whoever holds its key, so its
    revocation needs a proof of that key; an unbound one, none."""
    _check_token_parameter(claims, mismatch_error=INVALID_PROOF, issues=False)


def _check_token_parameter(
    claims: dict[str, Any], *, mismatch_error: str, issues: bool
) -> None:
    value = _proof_header(issuing=True)
    jkt = bound_key(claims)
    if jkt is None:
        if value is not None:
            raise DpopRefused(NOT_BOUND, INVALID_PROOF, issuing=True)
        if issues and _settings().required:
            raise DpopRefused(DPOP_ONLY, INVALID_PROOF, issuing=True)
        return
    if value is None:
        raise DpopRefused(BOUND_PARAMETER, INVALID_PROOF, issuing=True)
    proof = _verified(value, None, issuing=True)
    if proof.jkt != jkt:
        _key_mismatch(claims, proof.jkt, mismatch_error, issuing=True)
    _spend(proof, issuing=True)


def _proof_header(*, issuing: bool) -> str | None:
    """The request's one DPoP header (§4.3 check 1). A server joins repeated
    headers with commas, which a JWS never holds."""
    value = request.environ.get(PROOF_ENVIRON)
    if value is None:
        return None
    if "," in value or not value.strip():
        raise DpopRefused(
            "Send exactly one DPoP header (RFC 9449 §4.3).",
            INVALID_PROOF,
            issuing=issuing,
        )
    return value.strip()


def request_url() -> str:
    """This request's URL as the client sent it, without the query (§4.3 check 9):
    under PUBLIC_URL when it is set, else at the (trusted) host, scheme and mount
    path the proxies forwarded. WSGI hands the path over decoded: it is encoded
    again (RFC 3986 §2.1), and compared after normalisation (auth/proofs.py)."""
    path = quote(request.path, safe=PATH_CHARACTERS)
    public_url = current_app.config["PUBLIC_URL"]
    if public_url is not None:
        return public_base(public_url) + path
    root = quote(request.script_root, safe=PATH_CHARACTERS)
    return f"{request.scheme}://{request.host}{root}{path}"


def _verified(value: str, token: str | None, *, issuing: bool) -> Proof:
    """The proof, after every check but its `jti`'s; the server's nonce too."""
    settings = _settings()
    expected = Expected(
        request.method,
        request_url(),
        token,
        settings.algorithms,
        time.time(),
        settings.max_age,
        settings.leeway,
    )
    try:
        proof = check_proof(value, expected)
    except InvalidProof as exc:
        DPOP_PROOFS.labels("invalid").inc()
        raise DpopRefused(str(exc), INVALID_PROOF, issuing=issuing) from None
    if settings.nonces is not None:
        _check_nonce(settings.nonces, proof, issuing=issuing)
    return proof


def _check_nonce(nonces: Nonces, proof: Proof, *, issuing: bool) -> None:
    """§8: a proof carries the server's nonce; a retired one gets the new one."""
    state = nonces.check(proof.nonce)
    if state is None:
        DPOP_PROOFS.labels("nonce").inc()
        raise DpopRefused(
            "Make the DPoP proof again with the nonce in the DPoP-Nonce header.",
            USE_NONCE,
            issuing=issuing,
            nonce=nonces.current(),
        )
    if state is False:
        fresh = nonces.current()

        @after_this_request
        def hand_out(response: Response) -> Response:
            response.headers[NONCE_HEADER] = fresh
            return response


def _spend(proof: Proof, *, issuing: bool) -> None:
    """§11.1: a proof is used once. Its `jti` (per key) is kept until the proof is
    too old anyway, in the revocation store every worker and instance shares."""
    settings = _settings()
    key = hashlib.sha256(f"{proof.jkt}.{proof.jti}".encode()).hexdigest()
    expires_at = proof.iat + settings.max_age + settings.leeway
    if not get_blocklist().first_use_of_proof(key, expires_at):
        DPOP_PROOFS.labels("replayed").inc()
        raise DpopRefused(
            "This DPoP proof was used before: make a new one for every request.",
            INVALID_PROOF,
            issuing=issuing,
        )
    DPOP_PROOFS.labels("valid").inc()


def _key_mismatch(
    claims: dict[str, Any], presented: str, error: str, *, issuing: bool
) -> None:
    """A bound token with another key's proof: refused and audited, and nothing
    more, so a thief can neither use the session nor end it."""
    DPOP_PROOFS.labels("key_mismatch").inc()
    audit(
        "dpop_key_mismatch",
        "A DPoP-bound token came with a proof of another key",
        level=logging.WARNING,
        user_id=claims.get("sub"),
        family=claims.get("fam"),
        jkt=presented,
    )
    raise DpopRefused(OTHER_KEY, error, issuing=issuing)


def dpop_challenges(response: Response) -> Response:
    """For a request that used the DPoP scheme: the token layer's other 401s
    (expired, revoked, not fresh enough) challenge with the DPoP scheme too."""
    value = response.headers.get("WWW-Authenticate", "")
    if response.status_code == 401 and value.startswith("Bearer "):
        response.headers["WWW-Authenticate"] = (
            "DPoP "
            + value[len("Bearer ") :]
            + f', algs="{" ".join(_settings().algorithms)}"'
        )
    return response
