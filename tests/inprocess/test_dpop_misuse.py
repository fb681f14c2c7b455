"""DPoP (RFC 9449) misused: proofs and headers a client gets wrong, or an attacker
bends, at every place a proof is read. Each is refused in the JSON envelope with
`invalid_dpop_proof` and a message that names the problem, never a 500: at a
protected route and /refresh a 401 with a DPoP challenge (§7.1), at /login, /token
and /revoke a 400 with an `error_description` (§5, RFC 6749 §5.2). A refused
request changes nothing: no session is started, ended or rotated.

URLs spelled otherwise but equal to the request's after RFC 3986 §6.2.2-6.2.3
normalisation are accepted (§4.3 asks servers to normalise before comparing).
"""

import base64
import functools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms

from tests.dpop import BASE, DROP, ProofKey, ath, b64url
from tests.helpers import PASSWORD, assert_error, bearer, config

SESSIONS = "/me/sessions"
ALGS = 'algs="ES256 ES384 EdDSA RS256 PS256"'
MAX_AGE, LEEWAY = 60, 5  # DPOP_PROOF_MAX_AGE and JWT_DECODE_LEEWAY by default
LOGIN = {"username": "alice", "password": PASSWORD}
# What the messages say of each kind of problem.
NOT_A_JWT = "is not a JWT"
BAD_ALG = "alg must be one of"
BAD_TYP = "typ must be 'dpop+jwt'"
NOT_THIS_URL = "htu must be this request's URL"
BAD_IAT = "iat must be the time it was made"
BAD_JTI = "jti of 1 to 256 characters"
ONE_HEADER = "Send exactly one DPoP header"


@pytest.fixture
def app_config(request, app_config) -> dict:
    """No refresh grace: a refresh token a refused request had rotated would be
    a replay afterwards, which `assert_unchanged` would see."""
    grace = {"REFRESH_REUSE_GRACE_SECONDS": 0}
    return {**app_config, **grace, **getattr(request, "param", {})}


@functools.cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """One RSA key of each size a run (each takes a while to make)."""
    return rsa.generate_private_key(65537, bits)


def rsa_jwk(bits: int) -> dict:
    return get_default_algorithms()["RS256"].to_jwk(
        rsa_key(bits).public_key(), as_dict=True
    )


def signed(header: dict | bytes, payload: dict | bytes, alg: str, signer: Any) -> str:
    """A compact JWS of any header and payload, signed with PyJWT's bare `alg`
    primitive (which checks neither the key nor the header); "none" signs nothing."""
    parts = [
        v if isinstance(v, bytes) else json.dumps(v).encode() for v in (header, payload)
    ]
    signing_input = ".".join(b64url(part) for part in parts)
    algorithm = get_default_algorithms().get(alg)
    signature = algorithm.sign(signing_input.encode(), signer) if algorithm else b""
    return f"{signing_input}.{b64url(signature)}"


def without(members: dict, name: str) -> dict:
    return {key: value for key, value in members.items() if key != name}


@dataclass(frozen=True)
class Request:
    """The request a proof is made for (with `token` in its Authorization header,
    if any), and the client's key."""

    key: ProofKey
    method: str
    url: str
    token: str | None

    def proof(self, signer: ProofKey | None = None, header=None, **claims) -> str:
        """A proof of this request, by `signer` (the key unless given); `header`
        and `claims` change members (DROP removes one)."""
        made_by = signer or self.key
        return made_by.proof(
            self.method, self.url, token=self.token, header=header, **claims
        )

    def header(self, **members: Any) -> dict:
        return {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.jwk, **members}

    def claims(self) -> dict:
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": self.method,
            "htu": self.url,
            "iat": int(time.time()),
        }
        return claims if self.token is None else {**claims, "ath": ath(self.token)}

    def es256(self, header: dict | bytes, payload: dict | bytes) -> str:
        return signed(header, payload, "ES256", self.key.private_key)


def off_the_curve(jwk: dict) -> dict:
    """The key with one bit of y flipped: a point that is not on P-256."""
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "="))
    y[-1] ^= 1
    return {**jwk, "y": b64url(bytes(y))}


def es512(request: Request) -> str:
    """A sound ES512 proof (P-521): an algorithm the server does not list."""
    private_key = ec.generate_private_key(ec.SECP521R1())
    jwk = get_default_algorithms()["ES512"].to_jwk(
        private_key.public_key(), as_dict=True
    )
    header = request.header(alg="ES512", jwk=jwk)
    return signed(header, request.claims(), "ES512", private_key)


def tampered(request: Request) -> str:
    """A proof of the key's with the claims of another proof of the key's."""
    head, _, signature = request.proof().split(".")
    return f"{head}.{request.proof().split('.')[1]}.{signature}"


def now() -> int:
    return int(time.time())


Make = Callable[[Request], str | list[str]]


def rsa_signer() -> ProofKey:
    return ProofKey("RS256", rsa_key(2048))


def case(make: Make, problem: str, name: str):
    return pytest.param(make, problem, id=name)


# (how the proof is made, what the refusal's message says, the case's name)
BAD_PROOFS = [
    case(lambda r: "garbage", NOT_A_JWT, "garbage"),
    case(lambda r: r.proof().rsplit(".", 1)[0], NOT_A_JWT, "two-segments"),
    case(lambda r: "!!!.@@@.###", NOT_A_JWT, "bad-base64"),
    case(lambda r: r.es256(b"{oops", r.claims()), NOT_A_JWT, "header-not-json"),
    case(lambda r: r.es256(b"[1]", r.claims()), NOT_A_JWT, "header-an-array"),
    case(lambda r: r.proof() + "\u00e9", NOT_A_JWT, "not-ascii"),
    case(lambda r: r.proof(pad="x" * 8200), NOT_A_JWT, "over-8-KiB"),
    case(lambda r: r.es256(r.header(), b"[1]"), "not a JSON object", "claims-array"),
    case(lambda r: r.es256(r.header(), b"{oops"), "not a JSON object", "claims-bad"),
    case(lambda r: r.es256(b"[" * 5000, r.claims()), NOT_A_JWT, "header-nested-deep"),
    case(
        lambda r: r.es256(r.header(), b"[" * 5000),
        "not a JSON object",
        "claims-nested-deep",
    ),
    case(lambda r: r.proof(header={"jwk": "key"}), "as a jwk", "jwk-a-string"),
    case(lambda r: r.proof(header={"jwk": [r.key.jwk]}), "as a jwk", "jwk-a-list"),
    case(lambda r: r.proof(header={"jwk": DROP}), "as a jwk", "jwk-missing"),
    case(
        lambda r: r.proof(header={"jwk": {**r.key.jwk, "d": r.key.jwk["x"]}}),
        "the public key only",
        "jwk-with-d",
    ),
    case(
        lambda r: r.proof(rsa_signer(), header={"jwk": {**rsa_jwk(2048), "p": "AQAB"}}),
        "the public key only",
        "rsa-jwk-with-p",
    ),
    case(
        lambda r: r.proof(header={"jwk": {**r.key.jwk, "k": "c2VjcmV0"}}),
        "the public key only",
        "jwk-with-k",
    ),
    case(
        # Signed by hand: PyJWT refuses to sign with a key this small.
        lambda r: signed(
            r.header(alg="RS256", jwk=rsa_jwk(1024)), r.claims(), "RS256", rsa_key(1024)
        ),
        "RSA key must have 2048 to 8192 bits",
        "rsa-1024-bits",
    ),
    case(
        lambda r: r.proof(header={"jwk": off_the_curve(r.key.jwk)}),
        "jwk is not a valid key",
        "ec-point-off-the-curve",
    ),
    case(
        lambda r: r.proof(header={"jwk": ProofKey("ES384").jwk}),
        "alg ES256 needs a EC P-256 key",
        "p384-key-with-es256",
    ),
    case(
        lambda r: r.proof(ProofKey("ES384"), header={"jwk": r.key.jwk}),
        "alg ES384 needs a EC P-384 key",
        "p256-key-with-es384",
    ),
    case(
        lambda r: r.proof(rsa_signer(), header={"jwk": r.key.jwk}),
        "alg RS256 needs a RSA key",
        "ec-key-with-rs256",
    ),
    case(
        lambda r: r.proof(header={"jwk": without(r.key.jwk, "y")}),
        "jwk is not a key",
        "jwk-without-y",
    ),
    case(
        lambda r: r.proof(header={"jwk": {**r.key.jwk, "x": 5}}),
        "jwk is not a key",
        "jwk-x-a-number",
    ),
    case(
        lambda r: signed(r.header(alg="none"), r.claims(), "none", None),
        BAD_ALG,
        "alg-none",
    ),
    case(
        lambda r: signed(r.header(alg="HS256"), r.claims(), "HS256", b"k" * 32),
        BAD_ALG,
        "alg-HS256",
    ),
    case(es512, BAD_ALG, "alg-ES512-not-listed"),
    case(lambda r: r.es256(without(r.header(), "alg"), r.claims()), BAD_ALG, "no-alg"),
    case(lambda r: r.proof(header={"typ": DROP}), BAD_TYP, "typ-missing"),
    case(lambda r: r.proof(header={"typ": "JWT"}), BAD_TYP, "typ-JWT"),
    case(
        lambda r: r.proof(ProofKey(), header={"jwk": r.key.jwk}),
        "signature is invalid",
        "signed-by-another-key",
    ),
    case(tampered, "signature is invalid", "claims-changed-after-signing"),
    case(lambda r: r.proof(htm="PATCH"), "htm must be", "htm-another-method"),
    case(lambda r: r.proof(htm=r.method.lower()), "htm must be", "htm-lower-case"),
    case(lambda r: r.proof(htm=DROP), "htm must be", "htm-missing"),
    case(lambda r: r.proof(htu=r.url + "?a=1"), "no query or fragment", "htu-query"),
    case(lambda r: r.proof(htu=r.url + "#top"), "no query or fragment", "htu-fragment"),
    case(
        lambda r: r.proof(htu=r.url.replace("localhost", "evil.example")),
        NOT_THIS_URL,
        "htu-another-host",
    ),
    case(
        lambda r: r.proof(htu=r.url.replace("http:", "https:")),
        NOT_THIS_URL,
        "htu-https",
    ),
    case(
        lambda r: r.proof(htu=r.url.replace("localhost", "localhost:8080")),
        NOT_THIS_URL,
        "htu-another-port",
    ),
    case(lambda r: r.proof(htu=BASE + "/item/1"), NOT_THIS_URL, "htu-another-path"),
    case(lambda r: r.proof(htu=r.url + "/"), NOT_THIS_URL, "htu-trailing-slash"),
    case(
        # RFC 3986 §6.2.2-6.2.3 keep the userinfo: another URL than the request's.
        lambda r: r.proof(htu=r.url.replace("://", "://evil@")),
        NOT_THIS_URL,
        "htu-with-userinfo",
    ),
    case(lambda r: r.proof(htu=r.url.removeprefix(BASE)), NOT_THIS_URL, "htu-a-path"),
    case(lambda r: r.proof(htu=DROP), "needs an htu", "htu-missing"),
    case(lambda r: r.proof(htu=5), "needs an htu", "htu-a-number"),
    case(lambda r: r.proof(iat=now() + LEEWAY + 30), BAD_IAT, "iat-in-the-future"),
    case(lambda r: r.proof(iat=now() - MAX_AGE - LEEWAY - 30), BAD_IAT, "iat-too-old"),
    case(lambda r: r.proof(iat=str(now())), BAD_IAT, "iat-a-string"),
    case(lambda r: r.proof(iat=True), BAD_IAT, "iat-true"),
    case(lambda r: r.proof(iat=DROP), BAD_IAT, "iat-missing"),
    case(lambda r: r.proof(iat=float("nan")), BAD_IAT, "iat-NaN"),
    case(lambda r: r.proof(jti="j" * 257), BAD_JTI, "jti-of-257-characters"),
    case(lambda r: r.proof(jti=DROP), BAD_JTI, "jti-missing"),
    case(lambda r: r.proof(jti=12345), BAD_JTI, "jti-a-number"),
    case(lambda r: r.proof(jti=""), BAD_JTI, "jti-empty"),
    case(lambda r: r.proof(nonce=5), "nonce must be a string", "nonce-a-number"),
    case(lambda r: [r.proof(), r.proof()], ONE_HEADER, "two-DPoP-headers"),
    case(lambda r: "", ONE_HEADER, "empty-DPoP-header"),
    case(lambda r: "   ", ONE_HEADER, "blank-DPoP-header"),
]
# §4.3 check 12: a proof sent with a token is made for that very token.
BAD_ATH = [
    pytest.param(lambda r: r.proof(ath=DROP), id="ath-missing"),
    pytest.param(lambda r: r.proof(ath=ath("another token")), id="ath-of-another"),
    pytest.param(lambda r: r.proof(ath=5), id="ath-a-number"),
    pytest.param(lambda r: r.proof(ath=ath(r.token) + "="), id="ath-padded"),
]


@dataclass(frozen=True)
class Place:
    """Where a proof is read: a request, the session's token it sends in the
    Authorization header (the proof's `ath` is that token's), its body."""

    method: str
    path: str
    authorization: str | None = None
    body: Callable[[dict], dict] = lambda session: {}

    @property
    def issuing(self) -> bool:
        """Where tokens are issued or revoked, refusals are RFC 6749 §5.2's 400s."""
        return self.authorization is None


def form(**parameters: Callable[[dict], str] | str) -> Callable[[dict], dict]:
    """A form body, each callable parameter read from the session."""
    return lambda session: {
        "data": {k: v(session) if callable(v) else v for k, v in parameters.items()}
    }


def refresh_token_of(session: dict) -> str:
    return session["refresh_token"]


PROTECTED = Place("GET", SESSIONS, "access_token")
REFRESH = Place("POST", "/refresh", "refresh_token")
REFRESH_GRANT = Place(
    "POST",
    "/token",
    body=form(grant_type="refresh_token", refresh_token=refresh_token_of),
)
REVOKE = Place("POST", "/revoke", body=form(token=refresh_token_of))
PLACES = {
    "protected-route": PROTECTED,
    "refresh": REFRESH,
    "login": Place("POST", "/login", body=lambda session: {"json": LOGIN}),
    "password-grant": Place(
        "POST", "/token", body=form(grant_type="password", **LOGIN)
    ),
    "refresh-grant": REFRESH_GRANT,
    "revoke": REVOKE,
}
every_place = pytest.mark.parametrize("place", PLACES.values(), ids=list(PLACES))


def send(client, place: Place, session: dict, key: ProofKey, make: Make, scheme="DPoP"):
    """The request of `place` in `session`, with the DPoP headers `make` makes."""
    token = session[place.authorization] if place.authorization else None
    proofs = make(Request(key, place.method, BASE + place.path, token))
    headers = [
        ("DPoP", proof) for proof in ([proofs] if isinstance(proofs, str) else proofs)
    ]
    if token is not None:
        headers.append(("Authorization", f"{scheme} {token}"))
    return client.open(
        place.path, method=place.method, headers=headers, **place.body(session)
    )


def assert_refused(response, place: Place, problem: str) -> dict:
    """The refusal of a bad proof at `place`, its message naming `problem`."""
    if place.issuing:
        body = assert_error(response, 400, "invalid_dpop_proof")
        assert problem in body["error_description"], body
        assert body["message"] == body["error_description"]
        assert "WWW-Authenticate" not in response.headers
        return body
    body = assert_error(response, 401, "invalid_dpop_proof")
    assert problem in body["message"], body
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP realm="api", error="invalid_dpop_proof"')
    assert challenge.endswith(ALGS), challenge
    return body


def assert_unchanged(client, key: ProofKey, session: dict) -> None:
    """The session is alice's one session still (none started, none ended), and
    its refresh token was never rotated (without grace, a second rotation is a
    replay, which ends the session)."""
    token = session["access_token"]
    listed = client.get(SESSIONS, headers=key.headers("GET", SESSIONS, token))
    assert listed.status_code == 200, listed.get_json()
    assert [entry["current"] for entry in listed.get_json()] == [True]
    refreshed = client.post(
        "/refresh", headers=key.headers("POST", "/refresh", session["refresh_token"])
    )
    assert refreshed.status_code == 200, refreshed.get_json()


# --- bad proofs, everywhere -----------------------------------------------------------


@every_place
@pytest.mark.parametrize("make, problem", BAD_PROOFS)
def test_a_bad_proof_is_refused_and_changes_nothing(
    client, bound, key, place, make, problem
):
    response = send(client, place, bound, key, make)

    assert_refused(response, place, problem)
    assert_unchanged(client, key, bound)


@pytest.mark.parametrize("place", [PROTECTED, REFRESH], ids=["route", "refresh"])
@pytest.mark.parametrize("make", BAD_ATH)
def test_a_proof_not_made_for_the_token_sent_is_refused(
    client, bound, key, place, make
):
    response = send(client, place, bound, key, make)

    assert_refused(response, place, "ath must be the token's SHA-256 hash")
    assert_unchanged(client, key, bound)


# --- the same URL, spelled otherwise --------------------------------------------------


def encoded(path: str, hex_digits=str.upper) -> str:
    """`path` with its letters percent-encoded, needlessly (RFC 3986 §2.3)."""
    return "".join(
        hex_digits(f"%{ord(char):02x}") if char.isalpha() else char for char in path
    )


EQUIVALENT = [
    pytest.param(lambda path: "HTTP://LOCALHOST" + path, id="upper-case-scheme-host"),
    pytest.param(lambda path: "http://LocalHost:80" + path, id="explicit-default-port"),
    pytest.param(lambda path: "http://localhost:" + path, id="empty-port"),
    pytest.param(lambda path: BASE + encoded(path), id="percent-encoded-unreserved"),
    pytest.param(lambda path: BASE + encoded(path, str.lower), id="lower-case-hex"),
    pytest.param(lambda path: "Http://LOCALhost:80" + encoded(path), id="all-at-once"),
    # RFC 3986 §6.2.2.3, a part of syntax-based normalisation: no dot-segments.
    pytest.param(lambda path: BASE + "/x/.." + path, id="dot-segments"),
]


@every_place
@pytest.mark.parametrize("spell", EQUIVALENT)
def test_an_equivalent_url_is_accepted(client, bound, key, place, spell):
    response = send(client, place, bound, key, lambda r: r.proof(htu=spell(place.path)))

    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "iat",
    [
        pytest.param(lambda: now() + LEEWAY - 2, id="ahead-within-the-leeway"),
        pytest.param(lambda: now() - MAX_AGE + 5, id="made-a-minute-ago"),
        pytest.param(time.time, id="with-a-fraction"),
    ],
)
def test_a_proof_within_its_time_window_is_accepted(client, bound, key, iat):
    headers = key.headers("GET", SESSIONS, bound["access_token"], iat=iat())

    assert client.get(SESSIONS, headers=headers).status_code == 200


# --- the headers around the proof -----------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    ["DPoP {token} {token}", "DPoP {token}, DPoP {token}", "DPoP", "DPoP "],
    ids=["two-tokens", "two-credentials", "no-token", "no-token-but-a-space"],
)
def test_a_dpop_authorization_without_exactly_one_token_is_refused(
    client, bound, key, authorization
):
    """§7.1: `DPoP` 1*SP token68. Refused as any malformed Authorization header
    is (its `error` code kept), with the DPoP challenge of a DPoP request, and a
    message that names the scheme the client used, not Bearer's alone."""
    token = bound["access_token"]
    headers = {
        "Authorization": authorization.format(token=token),
        "DPoP": key.proof("GET", SESSIONS, token=token),
    }

    response = client.get(SESSIONS, headers=headers)

    body = assert_error(response, 401, "authorization_required")
    assert "DPoP" in body["message"], body
    assert response.headers["WWW-Authenticate"].startswith('DPoP realm="api"')
    assert_unchanged(client, key, bound)


@pytest.mark.parametrize(
    "place",
    [PROTECTED, REFRESH, REFRESH_GRANT, REVOKE],
    ids=["route", "refresh", "refresh-grant", "revoke"],
)
@pytest.mark.parametrize("proof", ["valid", "garbage"])
def test_a_dpop_header_with_an_unbound_token_is_refused(
    auth, client, key, place, proof
):
    """A Bearer session's token with a DPoP header: the client takes its session
    for a bound one, and it is not. Refused, whatever the proof, as a token of the
    wrong kind; the session goes on."""
    auth.register()
    session = auth.login()
    make = (lambda r: "garbage") if proof == "garbage" else Request.proof

    response = send(client, place, session, key, make, scheme="Bearer")

    if place.issuing:
        body = assert_error(response, 400, "invalid_dpop_proof")
    else:
        body = assert_error(response, 401, "invalid_token")
    assert "not DPoP-bound" in body["message"], body
    listed = client.get(SESSIONS, headers=bearer(session["access_token"]))
    assert listed.status_code == 200
    assert len(listed.get_json()) == 1


# --- the algorithms the server is set to accept ---------------------------------------


@config(DPOP_ALGORITHMS=["ES256"])
def test_an_algorithm_the_server_is_not_set_to_accept_is_refused(client, bound, key):
    eddsa = ProofKey("EdDSA")
    login = client.post(
        "/login", json=LOGIN, headers={"DPoP": eddsa.proof("POST", "/login")}
    )
    body = assert_error(login, 400, "invalid_dpop_proof")
    assert body["error_description"] == "The DPoP proof's alg must be one of ES256"

    token = bound["access_token"]
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": eddsa.proof("GET", SESSIONS, token=token),
    }
    response = client.get(SESSIONS, headers=headers)
    assert_error(response, 401, "invalid_dpop_proof")
    assert response.headers["WWW-Authenticate"].endswith('algs="ES256"')
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256"]
    assert_unchanged(client, key, bound)
