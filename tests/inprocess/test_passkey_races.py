"""Races on passkeys (issue 26), ROUNDS rounds each in one run, on every
revocation store: one answer to a ceremony sent by several threads at once is
accepted once (its challenge is spent by one DELETE that one request wins), and
two assertions of one passkey side by side never move its counter backwards.

Each thread has its own test client and all wait at a barrier
(test_mfa_races.race), so the requests overlap.
"""

import pytest

from tests.authenticator import SoftAuthenticator
from tests.helpers import RACE_ROUNDS, TOKEN_KEYS, bearer
from tests.inprocess.test_mfa_races import race
from tests.passkeys import (
    ORIGIN,
    login_options,
    passkey_account,
    register_options,
    step_up_options,
    stored_passkeys,
    with_client_data,
)

ROUNDS = RACE_ROUNDS
THREADS = 5


@pytest.fixture
def app_config(request, app_config, backend) -> dict:
    """Each revocation store; room for a passkey a round unless a test says."""
    limit = {"WEBAUTHN_MAX_CREDENTIALS": ROUNDS + 1}
    return {**app_config, **backend, **limit, **getattr(request, "param", {})}


def statuses(answers: list[tuple[int, dict]]) -> list[tuple[int, str | None]]:
    """(status, error) of each answer, the winner's error None."""
    return [(status, body.get("error")) for status, body in answers]


def one_winner(answers, status: int, loser: tuple[int, str], label: str) -> dict:
    """Exactly one answer has `status`, every other is `loser`: the winner's body."""
    won = [body for code, body in answers if code == status]
    assert len(won) == 1, (label, statuses(answers))
    lost = [answer for answer in statuses(answers) if answer[0] != status]
    assert set(lost) <= {loser}, (label, lost)
    return won[0]


def test_one_login_assertion_sent_side_by_side_logs_in_once(app, client, auth):
    user_id, _, authenticator = passkey_account(auth, client)
    for round_number in range(ROUNDS):
        credential = authenticator.get(login_options(client))

        answers = race(app, [{"credential": credential}] * THREADS, "/login/passkey")

        label = f"round {round_number}"
        won = one_winner(answers, 200, (401, "challenge_expired"), label)
        assert set(won) == TOKEN_KEYS
        (passkey,) = stored_passkeys(app, user_id)
        assert passkey["sign_count"] == round_number + 1, label


def test_one_registration_sent_side_by_side_registers_once(app, client, auth):
    user_id, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    for round_number in range(ROUNDS):
        device = SoftAuthenticator(origin=ORIGIN)
        credential = device.create(register_options(client, headers))
        body = {"name": f"key {round_number}", "credential": credential}

        answers = race(app, [body] * THREADS, "/me/passkeys", headers=headers)

        label = f"round {round_number}"
        one_winner(answers, 201, (400, "challenge_expired"), label)
        names = [passkey["name"] for passkey in stored_passkeys(app, user_id)]
        assert names == [f"key {n}" for n in range(round_number + 1)], label


def test_one_step_up_assertion_sent_side_by_side_steps_up_once(app, client, auth):
    user_id, tokens, authenticator = passkey_account(auth, client)
    headers = bearer(tokens["access_token"])
    for round_number in range(ROUNDS):
        credential = authenticator.get(step_up_options(client, headers))

        answers = race(
            app,
            [{"credential": credential}] * THREADS,
            "/reauthenticate",
            headers=headers,
        )

        label = f"round {round_number}"
        won = one_winner(answers, 200, (401, "challenge_expired"), label)
        assert set(won) == TOKEN_KEYS
        (passkey,) = stored_passkeys(app, user_id)
        assert passkey["sign_count"] == round_number + 1, label


def test_two_assertions_of_one_passkey_side_by_side_keep_the_counter_ahead(
    app, client, auth
):
    """Two challenges, two assertions (counters n+1 and n+2): the first checked
    wins; the other wins too if its counter is still ahead, else it is refused
    (a counter that did not move forward, or one moved meanwhile). The counter
    ends at the highest accepted, never lower."""
    user_id, _, authenticator = passkey_account(auth, client)
    counter = 0
    for round_number in range(ROUNDS):
        first, second = (authenticator.get(login_options(client)) for _ in range(2))

        answers = race(
            app, [{"credential": first}, {"credential": second}], "/login/passkey"
        )

        label = f"round {round_number}: {statuses(answers)}"
        assert 200 in [status for status, _ in answers], label
        assert set(statuses(answers)) <= {(200, None), (401, "invalid_credential")}, (
            label
        )
        accepted = [counter + 1 + i for i, (s, _) in enumerate(answers) if s == 200]
        counter += 2
        (passkey,) = stored_passkeys(app, user_id)
        assert passkey["sign_count"] == max(accepted), label


def test_one_credential_registered_from_two_tabs_side_by_side_is_kept_once(
    app, client, auth
):
    """Two options (two tabs), one authenticator's credential answering both
    (attestation "none" signs nothing, so the second is the first with the other
    challenge): one passkey, the other tab told it exists."""
    user_id, tokens = auth.user("alice")
    headers = bearer(tokens["access_token"])
    for round_number in range(ROUNDS):
        first, second = (register_options(client, headers) for _ in range(2))
        credential = SoftAuthenticator(origin=ORIGIN).create(first)
        other = with_client_data(credential, challenge=second["challenge"])
        bodies = [
            {"name": f"tab 1 of {round_number}", "credential": credential},
            {"name": f"tab 2 of {round_number}", "credential": other},
        ]

        answers = race(app, bodies, "/me/passkeys", headers=headers)

        label = f"round {round_number}"
        one_winner(answers, 201, (409, "passkey_exists"), label)
        assert len(stored_passkeys(app, user_id)) == round_number + 1, label


@pytest.mark.parametrize("app_config", [{"WEBAUTHN_MAX_CREDENTIALS": 2}], indirect=True)
def test_registrations_side_by_side_never_pass_the_limit(app, client, auth):
    """Each thread registers another authenticator, with options of its own: the
    account holds WEBAUTHN_MAX_CREDENTIALS passkeys at most, whoever comes first."""
    for round_number in range(ROUNDS):
        user_id, tokens, _ = passkey_account(auth, client, f"user{round_number}")
        headers = bearer(tokens["access_token"])
        bodies = [
            {
                "name": f"key {i}",
                "credential": SoftAuthenticator(origin=ORIGIN).create(
                    register_options(client, headers)
                ),
            }
            for i in range(THREADS)
        ]

        answers = race(app, bodies, "/me/passkeys", headers=headers)

        label = f"round {round_number}"
        one_winner(answers, 201, (409, "too_many_passkeys"), label)
        assert len(stored_passkeys(app, user_id)) == 2, label
