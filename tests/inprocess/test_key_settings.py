"""Key settings: what stops the start (an unknown algorithm; a key file missing,
unreadable, encrypted, of another algorithm, too short or of no supported kind; an
empty or short secret), the issuer warning in production, and `flask keys
generate`, which writes keys those settings accept."""

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from auth.keys import generate_private_key, thumbprint, write_private_key
from core import ConfigError
from core.settings import load_settings
from tests.helpers import (
    ASYMMETRIC,
    MFA_KEY,
    TEST_SETTINGS,
    header,
    key_file,
    log_in,
    make_app,
    me,
    public_file,
)

# --- settings that stop the start ----------------------------------------------


def fails_to_start(tmp_path, message: str, **settings) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(tmp_path, **settings)


def test_an_asymmetric_algorithm_needs_a_private_key_file(tmp_path):
    fails_to_start(
        tmp_path,
        "JWT_ALGORITHM=EdDSA needs JWT_PRIVATE_KEY_FILE",
        JWT_ALGORITHM="EdDSA",
    )


def test_an_unknown_algorithm_stops_the_start(tmp_path):
    fails_to_start(tmp_path, "JWT_ALGORITHM must be one of", JWT_ALGORITHM="HS512")


def test_a_missing_or_unreadable_key_file_stops_the_start(tmp_path):
    missing = str(tmp_path / "nope.pem")
    fails_to_start(
        tmp_path,
        "JWT_PRIVATE_KEY_FILE: cannot read .*nope.pem",
        JWT_ALGORITHM="EdDSA",
        JWT_PRIVATE_KEY_FILE=missing,
    )
    fails_to_start(
        tmp_path,
        "JWT_PUBLIC_KEY_FALLBACK_FILES: cannot read .*nope.pem",
        JWT_PUBLIC_KEY_FALLBACK_FILES=[missing],
    )


def test_a_key_file_that_is_not_a_private_key_stops_the_start(tmp_path):
    path = key_file(tmp_path, "EdDSA")
    fails_to_start(
        tmp_path,
        "JWT_PRIVATE_KEY_FILE: .* is not a PEM private key",
        JWT_ALGORITHM="EdDSA",
        JWT_PRIVATE_KEY_FILE=public_file(tmp_path, path),
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    fails_to_start(
        tmp_path,
        "JWT_PUBLIC_KEY_FALLBACK_FILES: .* is not a PEM key",
        JWT_PUBLIC_KEY_FALLBACK_FILES=[str(garbage)],
    )


def test_a_key_of_another_algorithm_stops_the_start(tmp_path):
    fails_to_start(
        tmp_path,
        "holds a key for ES256, not for JWT_ALGORITHM EdDSA",
        JWT_ALGORITHM="EdDSA",
        JWT_PRIVATE_KEY_FILE=key_file(tmp_path, "ES256"),
    )


def test_a_short_rsa_key_or_another_curve_stops_the_start(tmp_path):
    short = tmp_path / "short.pem"
    write_private_key(rsa.generate_private_key(65537, 1024), str(short))
    fails_to_start(
        tmp_path,
        "1024-bit RSA key; RS256 needs at least 2048",
        JWT_ALGORITHM="RS256",
        JWT_PRIVATE_KEY_FILE=str(short),
    )
    p384 = tmp_path / "p384.pem"
    write_private_key(ec.generate_private_key(ec.SECP384R1()), str(p384))
    fails_to_start(
        tmp_path,
        "is on secp384r1; ES256 is P-256",
        JWT_ALGORITHM="ES256",
        JWT_PRIVATE_KEY_FILE=str(p384),
    )


def test_production_checks_every_secret(tmp_path):
    fails_to_start(
        tmp_path,
        "JWT_SECRET_KEY_FALLBACKS: every secret must be at least 32",
        APP_ENV="production",
        MFA_ENCRYPTION_KEY=MFA_KEY,
        JWT_SECRET_KEY="z" * 40,
        JWT_SECRET_KEY_FALLBACKS=["short"],
    )


def test_production_with_an_asymmetric_key_needs_no_secret(tmp_path):
    app = make_app(
        tmp_path,
        APP_ENV="production",
        MFA_ENCRYPTION_KEY=MFA_KEY,
        TRUSTED_HOSTS=["localhost"],  # the test client's Host
        JWT_SECRET_KEY=None,
        JWT_ALGORITHM="EdDSA",
        JWT_PRIVATE_KEY_FILE=key_file(tmp_path, "EdDSA"),
        BLOCKLIST_BACKEND="database",
    )
    assert me(app, log_in(app)["access_token"]).status_code == 200


def test_production_warns_when_the_issuer_is_not_an_https_url():
    production = {
        **TEST_SETTINGS,
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "BLOCKLIST_BACKEND": "database",
        "TRUSTED_HOSTS": ["localhost"],
    }
    warned = [w for w in load_settings(production).warnings if "JWT_ISSUER" in w]
    assert warned == [
        "JWT_ISSUER is not an https URL: the server metadata at "
        "/.well-known/oauth-authorization-server names it as its issuer, and "
        "RFC 8414 §2 wants the API's public https URL there."
    ]
    conformant = {**production, "JWT_ENCODE_ISSUER": "https://api.example.com"}
    assert not [w for w in load_settings(conformant).warnings if "JWT_ISSUER" in w]
    development = load_settings(TEST_SETTINGS).warnings
    assert not [w for w in development if "JWT_ISSUER" in w]


def test_an_encrypted_key_file_stops_the_start(tmp_path):
    path = tmp_path / "encrypted.pem"
    key = generate_private_key("EdDSA")
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    fails_to_start(
        tmp_path,
        "JWT_PRIVATE_KEY_FILE: .* is encrypted; give it unencrypted",
        JWT_ALGORITHM="EdDSA",
        JWT_PRIVATE_KEY_FILE=str(path),
    )


def test_a_key_of_no_supported_kind_stops_the_start(tmp_path):
    path = tmp_path / "ed448.pem"
    write_private_key(ed448.Ed448PrivateKey.generate(), str(path))
    fails_to_start(
        tmp_path,
        "JWT_PUBLIC_KEY_FALLBACK_FILES: .* is neither an Ed25519, a P-256 nor an RSA",
        JWT_PUBLIC_KEY_FALLBACK_FILES=[str(path)],
    )


def test_an_empty_fallback_secret_stops_the_start(tmp_path):
    fails_to_start(
        tmp_path,
        "JWT_SECRET_KEY_FALLBACKS: a secret must not be empty",
        JWT_SECRET_KEY_FALLBACKS=[""],
    )


# --- flask keys generate --------------------------------------------------------


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_keys_generate_writes_a_private_key_only_its_owner_reads(tmp_path, algorithm):
    app = make_app(tmp_path)
    out = tmp_path / "new.pem"

    result = app.test_cli_runner().invoke(
        args=["keys", "generate", "--alg", algorithm, "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    with open(out, "rb") as file:
        pem = file.read()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = serialization.load_pem_private_key(pem, password=None)
    kid = thumbprint(key.public_key())
    assert f"kid {kid}" in result.output
    assert f"JWT_ALGORITHM={algorithm}" in result.output
    assert f"JWT_PRIVATE_KEY_FILE={out}" in result.output
    # The settings it prints start an app that signs with it.
    signer = make_app(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=str(out))
    assert header(log_in(signer)["access_token"])["kid"] == kid
    # Never over an existing file.
    again = app.test_cli_runner().invoke(
        args=["keys", "generate", "--alg", algorithm, "--out", str(out)]
    )
    assert again.exit_code == 1 and "File exists" in again.output
    with open(out, "rb") as file:
        assert file.read() == pem


def test_keys_generate_makes_a_secret_too(tmp_path):
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["keys", "generate", "--alg", "HS256"])
    assert result.exit_code == 0, result.output
    secret = next(
        line.split("=", 1)[1]
        for line in result.output.splitlines()
        if line.strip().startswith("JWT_SECRET_KEY=")
    )
    assert len(secret) >= 64
    signer = make_app(tmp_path, JWT_SECRET_KEY=secret)
    kid = header(log_in(signer)["access_token"])["kid"]
    assert f"kid {kid}" in result.output


def test_ed25519_keys_are_the_default(tmp_path):
    app = make_app(tmp_path)
    out = tmp_path / "default.pem"
    result = app.test_cli_runner().invoke(args=["keys", "generate", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)


def test_keys_generate_writes_to_the_instance_folder_by_default(tmp_path):
    app = make_app(tmp_path)
    app.instance_path = str(tmp_path / "instance")

    result = app.test_cli_runner().invoke(args=["keys", "generate", "--alg", "ES256"])

    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "instance").glob("jwt-es256-*.pem")
    assert f"JWT_PRIVATE_KEY_FILE={written}" in result.output
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
