"""clients/python/dpop.py: the Python client's DPoP key (RFC 9449) and the proofs
it signs, checked with PyJWT against the public JWK each proof carries, and the
thumbprints against the RFCs' own examples. No server: what the server does with
a proof is tested live (tests/live/test_python_client_dpop.py)."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from clients.python.dpop import (
    PROOF_TYPE,
    DpopKey,
    access_token_hash,
    htu_of,
    jwk_thumbprint,
)

URL = "http://127.0.0.1:5000/api/item/3"

# RFC 7638 §3.1: the example RSA key (its required members) and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFF"
    "xuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w"
    "6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1"
    "n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF"
    "44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
# RFC 9449 §4.2 (Figure 2): the example proof's EC key; §6.1 (Figure 9) its jkt.
RFC9449_KEY = {
    "kty": "EC",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    "crv": "P-256",
}
RFC9449_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
# RFC 9449 §7.1 (Figures 12 and 13): an access token and its proof's ath.
RFC9449_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC9449_ATH = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth"}


def verified(proof: str) -> tuple[dict, dict]:
    """(header, claims) of a proof whose signature checks out against the public
    JWK in its own header, as the server checks it (RFC 9449 §4.3)."""
    header = jwt.get_unverified_header(proof)
    public_key = jwt.PyJWK(header["jwk"], algorithm=header["alg"]).key
    claims = jwt.decode(
        proof,
        public_key,
        algorithms=[header["alg"]],
        options={"require": ["jti", "htm", "htu", "iat"]},
    )
    return header, claims


def test_a_new_key_signs_an_es256_proof_that_verifies_against_its_jwk():
    key = DpopKey()
    before = int(time.time())

    header, claims = verified(key.proof("post", URL))

    assert header == {"typ": PROOF_TYPE, "alg": "ES256", "jwk": key.public_jwk}
    assert set(key.public_jwk) == {"kty", "crv", "x", "y"}
    assert (key.public_jwk["kty"], key.public_jwk["crv"]) == ("EC", "P-256")
    assert key.algorithm == "ES256"
    assert set(claims) == {"jti", "htm", "htu", "iat"}  # no ath, no nonce
    assert (claims["htm"], claims["htu"]) == ("POST", URL)
    assert before <= claims["iat"] <= int(time.time())
    assert isinstance(claims["iat"], int)
    assert 16 <= len(claims["jti"]) <= 256


def test_a_proof_with_a_token_carries_its_hash_and_the_nonce():
    key = DpopKey()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"

    _, claims = verified(key.proof("GET", URL, token=token, nonce="n-0123"))

    assert claims["ath"] == access_token_hash(token)
    assert claims["nonce"] == "n-0123"
    assert "=" not in claims["ath"] and "+" not in claims["ath"]


def test_ath_is_rfc_9449s_example():
    assert access_token_hash(RFC9449_TOKEN) == RFC9449_ATH


def test_each_proof_has_its_own_jti():
    key = DpopKey()
    jtis = {verified(key.proof("GET", URL))[1]["jti"] for _ in range(50)}
    assert len(jtis) == 50


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        (URL, URL),
        (f"{URL}?page=2&x=1", URL),
        (f"{URL}#top", URL),
        (f"{URL}?page=2#top", URL),
        ("https://api.example/v1/", "https://api.example/v1/"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_htu_is_the_url_without_query_or_fragment(url, htu):
    assert htu_of(url) == htu
    assert verified(DpopKey().proof("GET", url))[1]["htu"] == htu


@pytest.mark.parametrize("url", ["/item/3", "item/3", "ftp://host/x", "http:///x"])
def test_htu_must_be_an_absolute_http_url(url):
    with pytest.raises(ValueError, match="absolute http"):
        htu_of(url)


def test_the_thumbprint_is_rfc_7638s_example():
    assert jwk_thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT
    # Only the required members count, in any order (RFC 7638 §3.2-3.3).
    required = {"n": RFC7638_KEY["n"], "kty": "RSA", "e": "AQAB"}
    assert jwk_thumbprint(required) == RFC7638_THUMBPRINT


def test_the_thumbprint_of_an_ec_key_is_rfc_9449s_jkt():
    assert jwk_thumbprint(RFC9449_KEY) == RFC9449_JKT
    assert jwk_thumbprint({**RFC9449_KEY, "use": "sig", "kid": "k"}) == RFC9449_JKT


def test_a_keys_thumbprint_is_that_of_its_public_jwk():
    key = DpopKey()
    assert key.thumbprint == jwk_thumbprint(key.public_jwk)
    assert len(key.thumbprint) == 43  # SHA-256, base64url without padding
    assert DpopKey().thumbprint != key.thumbprint  # a new key each time


@pytest.mark.parametrize("jwk", [{"kty": "oct", "k": "c2VjcmV0"}, {}])
def test_a_thumbprint_of_an_unknown_key_type_is_refused(jwk):
    with pytest.raises(ValueError, match="Unsupported JWK key type"):
        jwk_thumbprint(jwk)


def test_a_key_taken_keeps_its_thumbprint():
    private_key = ec.generate_private_key(ec.SECP256R1())

    first, second = DpopKey(private_key), DpopKey(private_key)

    assert first.thumbprint == second.thumbprint
    assert first.public_jwk == second.public_jwk
    numbers = private_key.public_key().public_numbers()
    assert verified(first.proof("GET", URL))[0]["jwk"]["x"] == first.public_jwk["x"]
    assert numbers.x == int.from_bytes(
        jwt.utils.base64url_decode(first.public_jwk["x"])
    )


@pytest.mark.parametrize(("secret", "short"), [(379, "x"), (43, "y")])
def test_ec_coordinates_keep_their_leading_zeros(secret, short):
    """RFC 7518 §6.2.1.2: x and y are the full 32 bytes of a P-256 coordinate,
    leading zeros included, or the thumbprint differs from the server's. These
    private values give a point whose `short` coordinate is under 2**248."""
    private_key = ec.derive_private_key(secret, ec.SECP256R1())
    point = private_key.public_key().public_numbers()
    assert getattr(point, short) < 2**248

    key = DpopKey(private_key)

    raw = jwt.utils.base64url_decode(key.public_jwk[short])
    assert (len(raw), raw[0]) == (32, 0)
    assert int.from_bytes(raw) == getattr(point, short)
    verified(key.proof("GET", URL))


@pytest.mark.parametrize(
    ("make", "algorithm", "expected", "kty"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), None, "ES256", "EC"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), None, "ES384", "EC"),
        (ed25519.Ed25519PrivateKey.generate, None, "EdDSA", "OKP"),
        (lambda: rsa.generate_private_key(65537, 2048), None, "RS256", "RSA"),
        (lambda: rsa.generate_private_key(65537, 2048), "PS256", "PS256", "RSA"),
    ],
    ids=["P-256", "P-384", "Ed25519", "RSA", "RSA-PSS"],
)
def test_every_algorithm_the_server_accepts_signs_a_proof(
    make, algorithm, expected, kty
):
    key = DpopKey(make(), algorithm=algorithm)

    header, claims = verified(key.proof("PATCH", URL, token="t", nonce="n"))

    assert (key.algorithm, header["alg"], header["jwk"]["kty"]) == (
        expected,
        expected,
        kty,
    )
    assert not PRIVATE_MEMBERS & set(header["jwk"])
    assert jwk_thumbprint(header["jwk"]) == key.thumbprint
    assert (claims["htm"], claims["ath"], claims["nonce"]) == (
        "PATCH",
        access_token_hash("t"),
        "n",
    )


@pytest.mark.parametrize(
    ("make", "algorithm", "says"),
    [
        (lambda: ec.generate_private_key(ec.SECP521R1()), None, "Unsupported curve"),
        (lambda: rsa.generate_private_key(65537, 1024), None, "2048 bits"),
        (x25519.X25519PrivateKey.generate, None, "Unsupported key"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES384", "does not fit"),
        (lambda: rsa.generate_private_key(65537, 2048), "ES256", "RS256 or PS256"),
    ],
    ids=["P-521", "RSA-1024", "X25519", "P-256-as-ES384", "RSA-as-ES256"],
)
def test_a_key_the_server_would_refuse_is_refused_here(make, algorithm, says):
    with pytest.raises(ValueError, match=says):
        DpopKey(make(), algorithm=algorithm)


def test_the_private_key_shows_nowhere():
    key = DpopKey()
    header, _ = verified(key.proof("GET", URL))

    assert not PRIVATE_MEMBERS & set(header["jwk"])
    assert not PRIVATE_MEMBERS & set(key.public_jwk)
    assert repr(key) == f"DpopKey(ES256, jkt={key.thumbprint})"
    key.public_jwk["d"] = "tampered"  # a copy: the key's own JWK is unchanged
    assert "d" not in key.public_jwk
