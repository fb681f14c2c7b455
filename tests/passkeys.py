"""Passkeys for tests: the ceremonies of the API, played by a software
authenticator (tests/authenticator.py) through the Flask test client."""

import json

from flask import Flask
from flask.testing import FlaskClient

from core import db
from models import PasskeyModel
from tests.authenticator import SoftAuthenticator, b64url, b64url_decode
from tests.helpers import bearer

# What the development settings (and so the tests') accept: ./scripts/serve.sh.
ORIGIN = "http://localhost:5000"
# The three ceremonies (the challenges' purposes), where each is answered.
CEREMONY_PATHS = {
    "login": "/login/passkey",
    "step_up": "/reauthenticate",
    "register": "/me/passkeys",
}
PURPOSES = list(CEREMONY_PATHS)
# A login or a step-up refused is a 401 (who are you?); a registration a 400 (the
# caller is known: the credential is what is wrong).
REFUSED = {"login": 401, "step_up": 401, "register": 400}


def register_options(client: FlaskClient, headers: dict) -> dict:
    """POST /me/passkeys/options, asserting 200: the creation options."""
    response = client.post("/me/passkeys/options", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def register_passkey(
    client: FlaskClient,
    headers: dict,
    authenticator: SoftAuthenticator,
    name: str = "laptop",
) -> dict:
    """Register a passkey of `authenticator`, asserting 201: the passkey."""
    credential = authenticator.create(register_options(client, headers))
    response = client.post(
        "/me/passkeys", json={"name": name, "credential": credential}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def login_options(client: FlaskClient, username: str | None = None) -> dict:
    """POST /login/passkey/options, asserting 200: the request options."""
    body = {} if username is None else {"username": username}
    response = client.post("/login/passkey/options", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def login_assertion(
    client: FlaskClient, authenticator: SoftAuthenticator, **forged
) -> dict:
    """A login assertion of `authenticator` for new options (`forged`: what
    SoftAuthenticator.get may forge: origin, rp_id, challenge, counter...)."""
    return authenticator.get(login_options(client), **forged)


def passkey_login(client: FlaskClient, credential: dict, **body):
    """POST /login/passkey with a credential: the response."""
    return client.post("/login/passkey", json={"credential": credential, **body})


def step_up_options(client: FlaskClient, headers: dict) -> dict:
    """POST /reauthenticate/options, asserting 200: the request options."""
    response = client.post("/reauthenticate/options", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def step_up(client: FlaskClient, headers: dict, credential: dict):
    """POST /reauthenticate with a passkey's assertion: the response."""
    return client.post(
        "/reauthenticate", json={"credential": credential}, headers=headers
    )


def passkey_account(auth, client: FlaskClient, username: str = "alice"):
    """An account with one passkey: (user id, tokens, its authenticator)."""
    user_id, tokens = auth.user(username)
    authenticator = SoftAuthenticator(origin=ORIGIN)
    register_passkey(client, bearer(tokens["access_token"]), authenticator)
    return user_id, tokens, authenticator


def stored_passkeys(app: Flask, user_id: int) -> list[dict]:
    """The user's passkeys as the database holds them (counter and all), oldest
    first."""
    with app.app_context():
        rows = db.session.scalars(
            db.select(PasskeyModel)
            .where(PasskeyModel.user_id == user_id)
            .order_by(PasskeyModel.id)
        )
        return [
            {
                "id": row.id,
                "name": row.name,
                "sign_count": row.sign_count,
                "last_used_at": row.last_used_at,
            }
            for row in rows
        ]


def with_client_data(credential: dict, **members) -> dict:
    """The credential with its clientDataJSON's `members` changed. Only a
    registration stays valid so (attestation "none" signs nothing): an
    assertion's signature covers its clientDataJSON."""
    response = credential["response"]
    client_data = json.loads(b64url_decode(response["clientDataJSON"]))
    client_data.update(members)
    encoded = json.dumps(client_data, separators=(",", ":")).encode()
    return {**credential, "response": {**response, "clientDataJSON": b64url(encoded)}}


# --- any of the three ceremonies, for the tests that attack them all ----------------


def options_for(client: FlaskClient, purpose: str, headers: dict) -> dict:
    """New options (a new challenge) of the ceremony `purpose`, asserting 200."""
    if purpose == "login":
        return login_options(client)
    if purpose == "step_up":
        return step_up_options(client, headers)
    return register_options(client, headers)


def device_for(purpose: str, authenticator: SoftAuthenticator) -> SoftAuthenticator:
    """The account's device asserts; a registration needs a device without its
    passkey (an authenticator creates one passkey per account at most)."""
    return SoftAuthenticator(origin=ORIGIN) if purpose == "register" else authenticator


def answer(purpose: str, device: SoftAuthenticator, options: dict, **forged) -> dict:
    """The request body of a ceremony: the device's answer to `options`
    (`forged`: what SoftAuthenticator.create or get may forge)."""
    if purpose == "register":
        return {"name": "phone", "credential": device.create(options, **forged)}
    return {"credential": device.get(options, **forged)}


def send_answer(client: FlaskClient, purpose: str, headers: dict, body=None, **kwargs):
    """POST a ceremony's answer (a login's without the token): the response."""
    sent = None if purpose == "login" else headers
    return client.post(CEREMONY_PATHS[purpose], json=body, headers=sent, **kwargs)


def ceremony(
    client: FlaskClient,
    purpose: str,
    headers: dict,
    device: SoftAuthenticator,
    options: dict | None = None,
    **forged,
):
    """Options (unless given) and the device's answer, sent: the response."""
    options = options or options_for(client, purpose, headers)
    return send_answer(
        client, purpose, headers, answer(purpose, device, options, **forged)
    )


def assert_untouched(app: Flask, user_id: int, count: int = 1) -> None:
    """The account has `count` passkeys, none of them ever used."""
    passkeys = stored_passkeys(app, user_id)
    assert len(passkeys) == count, passkeys
    assert {(p["sign_count"], p["last_used_at"]) for p in passkeys} == {(0, None)}
