"""Schemathesis against the app's own OpenAPI document: stateless and stateful.

Checks: no server error, and every status code, content type and body as the
document says, with each status code documented by the operation itself.

Every request carries a real token: the fuzzer's user (an administrator, so the
admin-only operations are reached too) logs in through `POST /login` right before
each request, so nothing the fuzzer does (log out, log out everywhere, change the
password, delete the account) can spoil the next one; when the account is gone or
its password changed, a new one is registered. `/refresh` gets the refresh token
of that login, every other operation its fresh access token. Cases where
schemathesis sends a missing or broken token on purpose keep theirs.

The second factor's states are reached too: the operations that act on TOTP once
it is on get an account that has it (the fuzzer then completes its own logins
with its recovery codes), and `POST /login/mfa` gets a real waiting login for
half of its well-formed mfa_tokens, with the current code for a well-formed code
(good once a step: the others are refused as used).

Bounded: about 3,000 requests, well under a minute.
"""

import itertools
import secrets
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case

from app import create_app
from auth.factors.schemas import CODE_RE
from core import db
from schemas import MAX_MFA_TOKEN_LENGTH
from tests.helpers import TEST_SETTINGS, AuthActions, bearer
from tests.mfa import code


def explicitly_documented_status(ctx, response, case):
    """The status code is documented by the operation itself, not only by `default`.

    `status_code_conformance` accepts any status when an operation has a `default`
    response, and every operation here has one; this holds them to the explicit list.
    Like it, this skips the probes schemathesis sends with an undeclared method or
    content type (only a server error counts for those).
    """
    if is_unexpected_http_status_case(case):
        return
    documented = [
        code for code in case.operation.responses.status_codes if code != "default"
    ]
    assert str(response.status_code) in documented, (
        f"Undocumented status code {response.status_code} "
        f"(documented explicitly: {', '.join(documented)})"
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    explicitly_documented_status,
]

# Per operation: up to 50 generated cases, on top of the document's examples and
# the coverage phase's boundary cases. Suppressed health checks: the data is reset
# once per operation, not per case, on purpose (function-scoped fixture); slow or
# heavily filtered generation is no fault of the app (a database-backed app on a
# small CI machine trips them). No example database: a run never depends on an
# earlier one (in CI, Hypothesis's `ci` profile also derandomizes).
FUZZ_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
# 100 scenarios of up to 12 linked requests each, never shrunk (a failure is
# reported as found).
STATEFUL_SETTINGS = settings(
    FUZZ_SETTINGS,
    max_examples=100,
    stateful_step_count=12,
    phases=[Phase.generate],
)


class Fuzzer:
    """The fuzzer's identity: an administrator that logs in for every case."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self.auth = AuthActions(app, self.client)
        self.accounts = itertools.count(1)
        self.username = ""
        self.password = ""
        self.secret = ""  # the account's TOTP secret, once the fuzzer turned it on
        self.recovery_codes: list[str] = []  # its unused recovery codes

    def tokens(self) -> dict:
        """A new login's token pair (a new account if the last one is gone, or
        asks for a second factor the fuzzer can no longer prove)."""
        if self.username:
            response = self._login()
            if response.status_code == 200:
                return response.get_json()
            if response.get_json().get("error") == "mfa_required":
                pair = self._second_step(response.get_json()["mfa_token"])
                if pair is not None:
                    return pair
        self._register()
        return self.auth.login(self.username, self.password)

    def with_totp(self, tokens: dict) -> None:
        """Turn TOTP on for the account (unless it is on), keeping the secret and
        the recovery codes."""
        headers = bearer(tokens["access_token"])
        started = self.client.post("/me/mfa/totp", headers=headers)
        if started.status_code == 409:
            return
        assert started.status_code == 201, started.get_json()
        self.secret = started.get_json()["secret"]
        # The previous step's code: this step's is left for POST /login/mfa.
        confirmed = self.client.post(
            "/me/mfa/totp/confirm",
            json={"code": code(self.secret, steps_ago=1)},
            headers=headers,
        )
        assert confirmed.status_code == 200, confirmed.get_json()
        self.recovery_codes = confirmed.get_json()["recovery_codes"]

    def waiting_login(self, body: dict) -> None:
        """A /login/mfa case's body with a real mfa_token of the account (for a
        well-formed one of even length: the odd ones stay unknown) and the current
        code for a well-formed code."""
        token = body.get("mfa_token")
        if (
            not isinstance(token, str)
            or not 0 < len(token) <= MAX_MFA_TOKEN_LENGTH
            or len(token) % 2
        ):
            return
        self.with_totp(self.tokens())
        response = self._login()
        assert response.status_code == 401, response.get_json()
        body["mfa_token"] = response.get_json()["mfa_token"]
        if isinstance(body.get("code"), str) and CODE_RE.match(body["code"]):
            body["code"] = code(self.secret)

    def _second_step(self, mfa_token: str) -> dict | None:
        """Complete the account's login with one of its recovery codes (a new set
        with the new token when the last is spent); None when they no longer
        work (a case renewed them, or turned TOTP off and on)."""
        if not self.recovery_codes:
            return None
        response = self.client.post(
            "/login/mfa",
            json={"mfa_token": mfa_token, "recovery_code": self.recovery_codes.pop()},
        )
        if response.status_code != 200:
            self.recovery_codes = []
            return None
        pair = response.get_json()
        if not self.recovery_codes:
            renewed = self.client.post(
                "/me/mfa/recovery-codes", headers=bearer(pair["access_token"])
            )
            assert renewed.status_code == 200, renewed.get_json()
            self.recovery_codes = renewed.get_json()["recovery_codes"]
        return pair

    def reset(self) -> None:
        """Empty the database and seed it: each operation and scenario starts here."""
        with self.app.app_context():
            db.session.remove()
            db.drop_all()
            db.create_all()
        # Same names after every reset: answers that show them (GET /me) must not
        # differ when Hypothesis replays a scenario.
        self.accounts = itertools.count(1)
        self.username = ""
        self._seed()

    def _login(self):
        """A login attempt: the fuzzer may have deleted the account or changed
        its password."""
        return self.client.post(
            "/login", json={"username": self.username, "password": self.password}
        )

    def _register(self) -> None:
        self.password = secrets.token_urlsafe(24)
        self.secret, self.recovery_codes = "", []
        while True:  # the fuzzer may have taken the name
            self.username = f"fuzzer-{next(self.accounts)}"
            response = self.auth.register(self.username, self.password)
            if response.status_code != 409:
                break
        assert response.status_code == 201, response.get_json()
        self.auth.make_admin(response.get_json()["id"])

    def _seed(self) -> None:
        """A store with an item and a tag linked to it, so small ids exist."""
        headers = bearer(self.tokens()["access_token"])
        store = self._created("/store", {"name": "Corner shop"}, headers)
        item = self._created(
            "/item", {"name": "Chair", "price": 15.99, "store_id": store}, headers
        )
        tag = self._created(f"/store/{store}/tag", {"name": "furniture"}, headers)
        self._created(f"/item/{item}/tag/{tag}", None, headers)

    def _created(self, path: str, body: dict | None, headers: dict) -> int:
        response = self.client.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]


def _load_schema():
    """The document the app serves, read from an app whose database stays unused.

    Schemathesis needs the operations when pytest collects the tests: its
    fixture-based loader (`schemathesis.pytest.from_fixture`) fails on pytest 9,
    which no longer has the `Node._nodeid` it sets. Requests go to the module's
    own app on a real database (`app=` below).
    """
    app = create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    try:
        return schemathesis.openapi.from_wsgi("/openapi.json", app)
    finally:
        with app.app_context():
            db.engine.dispose()


schema = _load_schema()


# What the auth provider puts on a case; replaced by a real token just before the
# request is sent (`sign_in`). Schemathesis builds the schema-example and coverage
# cases when pytest collects the tests, long before they are sent, so a token
# fetched then would be stale (or revoked by an earlier case) by send time.
PENDING_LOGIN = "Bearer pending-login"
# Operations whose answers differ once TOTP is on (with it off, 409 or 0 codes).
NEED_TOTP = {
    ("GET", "/me/mfa"),
    ("DELETE", "/me/mfa/totp"),
    ("POST", "/me/mfa/recovery-codes"),
}


def _is_public(context) -> bool:
    """Operations documented with `security: []` (register, login, probes)."""
    return context.operation.definition.raw.get("security") == []


@schema.auth(refresh_interval=None, retry_on=[]).skip_for(_is_public)
class RealToken:
    """Every protected operation's case carries the fuzzer's token.

    Cases where schemathesis tests a missing or invalid token skip providers, so
    they keep what schemathesis generated.
    """

    def get(self, case, context):
        return PENDING_LOGIN

    def set(self, case, data, context):
        case.headers["Authorization"] = data


def sign_in(case, fuzzer: Fuzzer) -> None:
    """Put a new login's token on the case: the refresh token for /refresh; an
    account with TOTP on for the operations that act on it; a real waiting login
    for /login/mfa."""
    if case.headers and case.headers.get("Authorization") == PENDING_LOGIN:
        tokens = fuzzer.tokens()
        if (case.method.upper(), case.path) in NEED_TOTP:
            fuzzer.with_totp(tokens)
        kind = "refresh_token" if case.path == "/refresh" else "access_token"
        case.headers["Authorization"] = f"Bearer {tokens[kind]}"
    if case.path == "/login/mfa" and isinstance(case.body, dict):
        fuzzer.waiting_login(case.body)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory) -> Iterator[Flask]:
    """The app on a real (SQLite file) database."""
    database = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    app = create_app(
        {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"}
    )
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def fuzzer(fuzz_app) -> Fuzzer:
    """The fuzzer's user."""
    return Fuzzer(fuzz_app)


@pytest.fixture
def seeded(fuzzer) -> Fuzzer:
    """The seeded data, fresh for each operation (not for each of its cases).

    Otherwise an operation that deletes (a store, the fuzzer's account) would leave
    nothing to find to the operations tested after it.
    """
    fuzzer.reset()
    return fuzzer


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_conforms(case, fuzz_app, seeded):
    """Each operation on its own: examples, boundary cases, then random ones."""
    sign_in(case, seeded)
    case.call_and_validate(app=fuzz_app, checks=CHECKS)


def test_stateful_sequences_conform(fuzz_app, fuzzer):
    """Sequences that follow the document's links: create, read, link, delete."""

    class APIWorkflow(schema.as_state_machine()):
        def setup(self):
            # Every scenario starts from the same data, so that Hypothesis sees
            # the same answers whenever it replays the same choices.
            fuzzer.reset()

        def before_call(self, case):
            sign_in(case, fuzzer)

        def get_call_kwargs(self, case):
            return {"app": fuzz_app}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                checks=CHECKS,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    APIWorkflow.run(settings=STATEFUL_SETTINGS)
