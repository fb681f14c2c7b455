"""clients/curl/dpop-proof.py, the curl clients' DPoP proof helper (RFC 9449): its
proofs verify with PyJWT against the JWK they carry, its key file is made once,
readable by its owner only, and its thumbprint is RFC 7638's, as the Python
client's (clients/python/dpop.py) computes it. Run as curl users run it: a
subprocess."""

import stat
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clients.python.dpop import access_token_hash, jwk_thumbprint
from tests.helpers import REPO

HELPER = REPO / "clients" / "curl" / "dpop-proof.py"
URL = "http://127.0.0.1:5000/refresh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HELPER), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def proof_of(*args: str) -> str:
    done = run(*args)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.count("\n") == 1  # one line: fit for "DPoP: $(...)"
    return done.stdout.strip()


def verified(proof: str) -> tuple[dict, dict]:
    header = jwt.get_unverified_header(proof)
    public_key = jwt.PyJWK(header["jwk"], algorithm="ES256").key
    return header, jwt.decode(proof, public_key, algorithms=["ES256"])


def test_a_proof_for_a_login_makes_the_key_file_and_verifies(tmp_path):
    key_file = tmp_path / "dpop.pem"
    before = int(time.time())

    header, claims = verified(proof_of(str(key_file), "post", f"{URL}?x=1#top"))

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private_key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    assert private_key.curve.name == "secp256r1"
    assert (header["typ"], header["alg"]) == ("dpop+jwt", "ES256")
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # no "d"
    assert set(claims) == {"jti", "htm", "htu", "iat"}
    assert (claims["htm"], claims["htu"]) == ("POST", URL)
    assert before <= claims["iat"] <= int(time.time())


def test_the_key_file_is_kept_and_its_jkt_is_rfc_7638s(tmp_path):
    key_file = str(tmp_path / "dpop.pem")
    first, _ = verified(proof_of(key_file, "GET", URL))
    saved = (tmp_path / "dpop.pem").read_bytes()

    second, _ = verified(proof_of(key_file, "GET", URL))
    jkt = run(key_file, "--jkt")

    assert (tmp_path / "dpop.pem").read_bytes() == saved
    assert second["jwk"] == first["jwk"]
    assert (jkt.returncode, jkt.stdout) == (0, f"{jwk_thumbprint(first['jwk'])}\n")


def test_a_token_and_a_nonce_go_in_the_claims(tmp_path):
    key_file = str(tmp_path / "dpop.pem")
    token = "eyJhbGciOiJFUzI1NiJ9.eyJ0eXBlIjoicmVmcmVzaCJ9.c2ln"

    _, claims = verified(proof_of(key_file, "POST", URL, token, "nonce-1"))
    _, nonce_only = verified(proof_of(key_file, "POST", URL, "", "nonce-2"))
    proofs = {proof_of(key_file, "GET", URL) for _ in range(5)}

    assert (claims["ath"], claims["nonce"]) == (access_token_hash(token), "nonce-1")
    assert "ath" not in nonce_only and nonce_only["nonce"] == "nonce-2"
    assert len({verified(proof)[1]["jti"] for proof in proofs}) == 5


def test_an_existing_key_of_another_kind_is_refused(tmp_path):
    key_file = tmp_path / "p384.pem"
    other = ec.generate_private_key(ec.SECP384R1())
    key_file.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "junk.pem").write_text("not a key\n")

    refused = run(str(key_file), "GET", URL)
    junk = run(str(tmp_path / "junk.pem"), "GET", URL)

    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == f"{key_file}: not an ECDSA P-256 key.\n"
    assert (junk.returncode, junk.stdout) == (2, "")
    assert "not a PEM private key" in junk.stderr


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("KEY",),
        ("KEY", "GET"),
        ("KEY", "GET", URL, "token", "nonce", "extra"),
        ("KEY", "GET /x", URL),
    ],
)
def test_wrong_arguments_print_the_usage(tmp_path, args):
    done = run(*[str(tmp_path / "k.pem") if a == "KEY" else a for a in args])

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("Usage: dpop-proof.py KEYFILE METHOD URL")
    assert not (tmp_path / "k.pem").exists()


@pytest.mark.parametrize("url", ["/refresh", "ftp://host/x", "http:///x"])
def test_the_url_must_be_absolute(tmp_path, url):
    done = run(str(tmp_path / "k.pem"), "GET", url)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"URL must be an absolute http(s) URL, got {url!r}.\n"
    assert not (tmp_path / "k.pem").exists()


def test_a_key_file_that_cannot_be_written_is_a_usage_error(tmp_path):
    done = run(str(tmp_path / "missing" / "k.pem"), "GET", URL)

    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr == f"{tmp_path / 'missing' / 'k.pem'}: No such file or directory.\n"
    )
