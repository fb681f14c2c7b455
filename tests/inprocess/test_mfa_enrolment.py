"""TOTP enrolment (auth/factors/totp.py, resources/mfa.py): a pending secret shown
once, confirmed by a first code, ten recovery codes shown once, renewed, turned
off; the secret sealed at rest; audit events and metrics for each."""

import re
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import pyotp
import pytest

from core import db
from models import RecoveryCodeModel, TotpFactorModel, UserModel
from tests.helpers import assert_error, bearer, records
from tests.mfa import code, enrol

RECOVERY_CODE = re.compile(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}\Z")


@pytest.fixture
def app_config(app_config, request) -> dict:
    """The suite's settings, with a test's own (`indirect` parameters) on top."""
    return {**app_config, **getattr(request, "param", {})}


def start(client, token: str):
    return client.post("/me/mfa/totp", headers=bearer(token))


def status(client, token: str) -> dict:
    response = client.get("/me/mfa", headers=bearer(token))
    assert response.status_code == 200
    return response.get_json()


def test_enrolment_shows_a_new_160_bit_secret_as_text_uri_and_qr_code(auth, client):
    _, tokens = auth.user("alice")

    response = start(client, tokens["access_token"])

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert re.fullmatch(r"[A-Z2-7]{32}", body["secret"])  # 32 x 5 = 160 bits
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Stores REST API:alice"
    assert parse_qs(uri.query) == {
        "secret": [body["secret"]],
        "issuer": ["Stores REST API"],
    }
    assert body["qr_svg"].startswith("<svg") and body["qr_svg"].endswith("</svg>")
    # A standalone SVG document (its namespace declared), so it shows as an <img>
    # or a data: URL too: clients never insert server text as HTML.
    root = ElementTree.fromstring(body["qr_svg"])
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    # Pending: nothing asks for a code yet.
    assert status(client, tokens["access_token"]) == {
        "totp": False,
        "recovery_codes_left": 0,
    }


@pytest.mark.parametrize("app_config", [{"MFA_ISSUER": "Acme & Co"}], indirect=True)
def test_the_issuer_comes_from_the_settings(auth, client, app_config):
    _, tokens = auth.user("alice")

    uri = start(client, tokens["access_token"]).get_json()["otpauth_uri"]

    parsed = pyotp.parse_uri(uri)
    assert (parsed.issuer, parsed.name) == ("Acme & Co", "alice")


def test_a_confirmed_secret_turns_totp_on_with_ten_recovery_codes(auth, client):
    _, tokens = auth.user("alice")
    secret = start(client, tokens["access_token"]).get_json()["secret"]

    response = client.post(
        "/me/mfa/totp/confirm",
        json={"code": code(secret)},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    codes = response.get_json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(RECOVERY_CODE.match(c) for c in codes)
    assert status(client, tokens["access_token"]) == {
        "totp": True,
        "recovery_codes_left": 10,
    }


def test_a_wrong_code_enables_nothing(auth, client):
    _, tokens = auth.user("alice")
    secret = start(client, tokens["access_token"]).get_json()["secret"]

    response = client.post(
        "/me/mfa/totp/confirm",
        json={"code": code(secret, steps_ago=2)},
        headers=bearer(tokens["access_token"]),
    )

    assert_error(response, 400, "invalid_code")
    assert status(client, tokens["access_token"])["totp"] is False
    # The pending secret still confirms with a right code.
    right = client.post(
        "/me/mfa/totp/confirm",
        json={"code": code(secret)},
        headers=bearer(tokens["access_token"]),
    )
    assert right.status_code == 200


def test_a_second_start_replaces_the_pending_secret(auth, client):
    _, tokens = auth.user("alice")
    first = start(client, tokens["access_token"]).get_json()["secret"]
    second = start(client, tokens["access_token"]).get_json()["secret"]
    assert first != second

    stale = client.post(
        "/me/mfa/totp/confirm",
        json={"code": code(first)},
        headers=bearer(tokens["access_token"]),
    )

    # Unless the two secrets share a code this step (one chance in a million).
    if code(first) != code(second):
        assert_error(stale, 400, "invalid_code")


def test_confirming_with_nothing_pending_is_a_conflict(auth, client):
    _, tokens = auth.user("alice")

    response = client.post(
        "/me/mfa/totp/confirm",
        json={"code": "123456"},
        headers=bearer(tokens["access_token"]),
    )

    assert_error(response, 409, "no_pending_enrolment")


def test_an_account_with_totp_must_turn_it_off_before_a_new_secret(auth, client):
    _, tokens = auth.user("alice")
    enrol(client, tokens["access_token"])

    assert_error(start(client, tokens["access_token"]), 409, "totp_enabled")
    confirm = client.post(
        "/me/mfa/totp/confirm",
        json={"code": "123456"},
        headers=bearer(tokens["access_token"]),
    )
    assert_error(confirm, 409, "no_pending_enrolment")


def test_new_recovery_codes_replace_the_old_ones(app, auth, client):
    _, tokens = auth.user("alice")
    _, old = enrol(client, tokens["access_token"])

    response = client.post(
        "/me/mfa/recovery-codes", headers=bearer(tokens["access_token"])
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = response.get_json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    with app.app_context():
        stored = db.session.scalars(db.select(RecoveryCodeModel.code_hash)).all()
    assert len(stored) == 10
    # Stored as digests only: no code appears in the table.
    assert not {c.replace("-", "") for c in new + old} & set(stored)


def test_recovery_codes_and_turning_off_need_totp(auth, client):
    _, tokens = auth.user("alice")

    renew = client.post(
        "/me/mfa/recovery-codes", headers=bearer(tokens["access_token"])
    )
    off = client.delete("/me/mfa/totp", headers=bearer(tokens["access_token"]))

    assert_error(renew, 409, "totp_not_enabled")
    assert_error(off, 409, "totp_not_enabled")


def test_turning_totp_off_goes_back_to_the_password_alone(app, auth, client):
    _, tokens = auth.user("alice")
    enrol(client, tokens["access_token"])

    response = client.delete("/me/mfa/totp", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert response.get_json() == {"totp": False, "recovery_codes_left": 0}
    login = auth.login("alice")
    assert set(login) >= {"access_token", "refresh_token"}
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(TotpFactorModel.user_id))) == 0
        assert db.session.scalar(db.select(db.func.count(RecoveryCodeModel.id))) == 0


def test_a_pending_secret_can_be_dropped(auth, client):
    _, tokens = auth.user("alice")
    start(client, tokens["access_token"])

    response = client.delete("/me/mfa/totp", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert_error(
        client.post(
            "/me/mfa/totp/confirm",
            json={"code": "123456"},
            headers=bearer(tokens["access_token"]),
        ),
        409,
        "no_pending_enrolment",
    )


def test_the_secret_is_sealed_at_rest_and_never_shown_again(app, auth, client):
    user_id, tokens = auth.user("alice")
    secret, codes = enrol(client, tokens["access_token"])

    with app.app_context():
        factor = db.session.get(TotpFactorModel, user_id)
        assert secret not in factor.secret
        kid, _, sealed = factor.secret.partition(":")
        assert re.fullmatch(r"[0-9a-f]{8}", kid) and sealed
        assert db.session.get(UserModel, user_id).totp_enabled is True
    shown = client.get("/me/mfa", headers=bearer(tokens["access_token"]))
    assert secret not in shown.get_data(as_text=True)


def test_each_change_is_audited_and_counted(auth, client, caplog):
    _, tokens = auth.user("alice")
    before = _metrics(client)

    with caplog.at_level("INFO", logger="api.audit"):
        secret, _ = enrol(client, tokens["access_token"])
        client.post("/me/mfa/recovery-codes", headers=bearer(tokens["access_token"]))
        client.delete("/me/mfa/totp", headers=bearer(tokens["access_token"]))

    events = [
        r.event
        for r in records(caplog, "api.audit")
        if r.event.startswith(("totp_", "recovery_codes_"))
    ]
    assert events == [
        "totp_enrolment_started",
        "totp_enabled",
        "recovery_codes_renewed",
        "totp_disabled",
    ]
    assert secret not in caplog.text
    after = _metrics(client)
    for action in (
        "totp_started",
        "totp_enabled",
        "recovery_codes_renewed",
        "totp_disabled",
    ):
        key = f'auth_mfa_changes_total{{action="{action}"}}'
        assert after[key] == before.get(key, 0) + 1
    key = 'auth_mfa_verifications_total{factor="totp",outcome="success"}'
    assert after[key] == before.get(key, 0) + 1


def _metrics(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("auth_mfa_")
    }


def test_a_step_is_spent_once_and_only_for_the_secret_it_was_checked_with(
    app, auth, client
):
    """A confirmation racing a new enrolment cannot confirm the new secret with
    a code of the old one; a step, once spent, is spent."""
    user_id, tokens = auth.user("alice")
    start(client, tokens["access_token"])
    with app.app_context():
        stale = TotpFactorModel.of(user_id).secret
    start(client, tokens["access_token"])  # replaced meanwhile

    with app.app_context():
        current = TotpFactorModel.of(user_id).secret
        assert not TotpFactorModel.spend_step(user_id, 7, stale, pending=True)
        assert TotpFactorModel.spend_step(user_id, 7, current, pending=True)
        assert not TotpFactorModel.spend_step(user_id, 7, current, pending=True)
        assert not TotpFactorModel.spend_step(user_id, 6, current, pending=True)
        assert TotpFactorModel.spend_step(user_id, 8, current, pending=True)
        db.session.rollback()
