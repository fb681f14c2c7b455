"""The key that seals TOTP secrets (auth/factors/encryption.py): required in
production, checked at start-up, and rotated like the signing keys (a fallback
opens what the old key sealed; `flask mfa reseal` seals it again)."""

import pytest
from cryptography.fernet import Fernet

from app import create_app
from auth.factors.encryption import SealedSecretError, unseal
from core import db
from core.settings import DEVELOPMENT_MFA_ENCRYPTION_KEY, ConfigError
from models import TotpFactorModel
from tests.helpers import PASSWORD, TEST_SETTINGS
from tests.mfa import code, enrol, mfa_token

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("APP_ENV", "MFA_ENCRYPTION_KEY", "MFA_ENCRYPTION_KEY_FALLBACKS"):
        monkeypatch.delenv(name, raising=False)


def production(**settings):
    return create_app(
        {
            "APP_ENV": "production",
            "JWT_SECRET_KEY": "s" * 32,
            "TRUSTED_HOSTS": ["localhost"],
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            **settings,
        }
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "MFA_ENCRYPTION_KEY must be set in production"),
        (DEVELOPMENT_MFA_ENCRYPTION_KEY, "the development key"),
        ("too-short", "32 url-safe base64-encoded bytes"),
    ],
)
def test_production_refuses_to_start_without_a_sound_key(key, reason):
    with pytest.raises(ConfigError, match=reason):
        production(MFA_ENCRYPTION_KEY=key)


def test_production_starts_with_a_key():
    app = production(MFA_ENCRYPTION_KEY=NEW_KEY)

    assert app.config["MFA_ENCRYPTION_KEY"] == NEW_KEY


def test_a_fallback_must_be_a_key_too(monkeypatch):
    monkeypatch.setenv("MFA_ENCRYPTION_KEY_FALLBACKS", f"{OLD_KEY}, not-a-key")

    with pytest.raises(ConfigError, match="MFA_ENCRYPTION_KEY_FALLBACKS"):
        create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_development_seals_with_the_development_key_and_says_so(caplog):
    app = create_app(
        {
            **TEST_SETTINGS,
            "MFA_ENCRYPTION_KEY": None,
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
        }
    )

    assert app.config["MFA_ENCRYPTION_KEY"] == DEVELOPMENT_MFA_ENCRYPTION_KEY
    assert "MFA_ENCRYPTION_KEY is not set" in caplog.text


@pytest.mark.parametrize(
    "name", ["MFA_TOKEN_EXPIRES", "MFA_TOKEN_MAX_FAILURES"], ids=str.lower
)
def test_the_waiting_logins_bounds_are_at_least_one(name):
    with pytest.raises(ConfigError, match=f"{name} must be at least 1"):
        create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://", name: 0})


def _app(database: str, key: str, fallbacks: list[str]):
    app = create_app(
        {
            **TEST_SETTINGS,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
            "MFA_ENCRYPTION_KEY": key,
            "MFA_ENCRYPTION_KEY_FALLBACKS": fallbacks,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def _sealed_with(app) -> str:
    with app.app_context():
        return db.session.scalars(db.select(TotpFactorModel.secret)).one()


def test_a_rotated_key_still_opens_old_secrets_until_they_are_resealed(tmp_path):
    database = tmp_path / "rotation.db"
    old = _app(database, OLD_KEY, [])
    client = old.test_client()
    client.post("/register", json={"username": "alice", "password": PASSWORD})
    login = client.post("/login", json={"username": "alice", "password": PASSWORD})
    secret, _ = enrol(client, login.get_json()["access_token"])
    sealed_before = _sealed_with(old)

    # Step 1: the new key seals, the old one is a fallback: the code still works.
    rotated = _app(database, NEW_KEY, [OLD_KEY])
    client = rotated.test_client()
    token = mfa_token(client, "alice")
    assert (
        client.post(
            "/login/mfa", json={"mfa_token": token, "code": code(secret)}
        ).status_code
        == 200
    )

    # Step 2: reseal; step 3: the old key goes, and the secret still opens.
    result = rotated.test_cli_runner().invoke(args=["mfa", "reseal"])
    assert result.exit_code == 0, result.output
    assert "Resealed 1 TOTP secret(s)" in result.output
    sealed_after = _sealed_with(rotated)
    assert sealed_after != sealed_before
    assert sealed_after.split(":")[0] != sealed_before.split(":")[0]
    again = rotated.test_cli_runner().invoke(args=["mfa", "reseal"])
    assert "Resealed 0 TOTP secret(s)" in again.output

    final = _app(database, NEW_KEY, [])
    with final.app_context():
        assert unseal(sealed_after) == secret
        with pytest.raises(SealedSecretError, match="neither MFA_ENCRYPTION_KEY"):
            unseal(sealed_before)


def test_generate_key_prints_a_usable_key():
    app = create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"})

    result = app.test_cli_runner().invoke(args=["mfa", "generate-key"])

    assert result.exit_code == 0
    line = result.output.splitlines()[0]
    assert line.startswith("MFA_ENCRYPTION_KEY=")
    Fernet(line.split("=", 1)[1].encode())  # a valid key
