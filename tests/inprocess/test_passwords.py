"""Passwords (auth/factors/passwords.py): a login costs the same whether the username
exists or not, and over-long passwords are refused before any hashing."""

import statistics
import time

import pytest

from auth import passwords
from tests.helpers import (
    INVALID_CREDENTIALS,
    WRONG_PASSWORD,
    assert_error,
    assert_invalid_credentials,
    config,
    login,
)


@pytest.fixture
def app_config(request, app_config):
    """The base config, plus what `parametrize(..., indirect=True)` passes."""
    return {**app_config, **getattr(request, "param", {})}


# --- Passwords: timing-safe login, length limits --------------------------------

REALISTIC_HASHING = {
    "PASSWORD_ARGON2_MEMORY_COST": 19456,
    "PASSWORD_ARGON2_TIME_COST": 2,
    "RATELIMIT_ENABLED": False,
}


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, response


@config(**REALISTIC_HASHING)
def test_unknown_username_costs_the_same_as_a_wrong_password(client, auth):
    assert auth.register().status_code == 201
    unknown = lambda: login(client, "nobody", WRONG_PASSWORD)  # noqa: E731
    wrong = lambda: login(client, "alice", WRONG_PASSWORD)  # noqa: E731
    no_hash = lambda: login(client, "alice", "x" * 257)  # noqa: E731
    for call in (unknown, wrong, no_hash):  # warm up
        call()

    durations: dict[str, list[float]] = {"unknown": [], "wrong": [], "no_hash": []}
    bodies: dict[str, list] = {"unknown": [], "wrong": []}
    for round_ in range(15):
        order = [("unknown", unknown), ("wrong", wrong), ("no_hash", no_hash)]
        if round_ % 2:
            order.reverse()
        for name, call in order:
            seconds, response = timed(call)
            durations[name].append(seconds)
            if name in bodies:
                bodies[name].append(
                    (
                        response.status_code,
                        response.get_json(),
                        response.headers.get("WWW-Authenticate"),
                    )
                )
            else:
                assert_error(response, 422, "validation_error")

    medians = {name: statistics.median(values) for name, values in durations.items()}
    ratio = medians["unknown"] / medians["wrong"]
    print(
        "timing medians (ms): "
        + ", ".join(f"{k}={v * 1000:.2f}" for k, v in medians.items())
        + f"; unknown/wrong ratio={ratio:.3f}"
    )
    expected = (401, INVALID_CREDENTIALS, 'Bearer realm="api"')
    assert bodies["unknown"] == bodies["wrong"] == [expected] * 15
    # Hashing really happens (and dominates) on both paths...
    assert medians["wrong"] >= 3 * medians["no_hash"], medians
    assert medians["unknown"] >= 3 * medians["no_hash"], medians
    # ...and the two paths cost the same, within noise.
    assert 0.75 <= ratio <= 1.33, medians


@pytest.fixture
def hash_calls(monkeypatch) -> list[str]:
    """Record every hashing operation of the password hasher."""
    calls: list[str] = []
    for name in ("hash", "verify_and_update", "dummy_verify"):
        original = getattr(passwords, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(passwords, name, spy)
    return calls


@pytest.mark.parametrize("path", ["/register", "/login"])
def test_over_long_passwords_are_refused_before_hashing(client, hash_calls, path):
    minimum = 8 if path == "/register" else 1
    response = client.post(path, json={"username": "alice", "password": "p" * 257})

    body = assert_error(response, 422, "validation_error")
    assert body["errors"] == {
        "json": {"password": [f"Length must be between {minimum} and 256."]}
    }
    assert hash_calls == []


def test_passwords_up_to_256_characters_are_hashed(client, auth, hash_calls):
    password = "p" * 256
    response = auth.register("alice", password)
    assert response.status_code == 201, response.get_json()
    assert hash_calls == ["hash"]

    assert_invalid_credentials(login(client, "alice", "q" * 256))
    assert_invalid_credentials(login(client, "nobody", "q" * 256))
    assert hash_calls == ["hash", "verify_and_update", "dummy_verify"]
    assert set(auth.login("alice", password)) >= {"access_token", "refresh_token"}
