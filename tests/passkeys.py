"""Passkeys for tests: the ceremonies of the API, played by a software
authenticator (tests/authenticator.py) through the Flask test client."""

from flask.testing import FlaskClient

from tests.authenticator import SoftAuthenticator
from tests.helpers import bearer

# What the development settings (and so the tests') accept: ./scripts/serve.sh.
ORIGIN = "http://localhost:5000"


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
