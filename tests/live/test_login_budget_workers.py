"""The login budgets over the production entry point: gunicorn with two workers,
the limits in a real Redis, clients behind one trusted proxy (X-Forwarded-For).

With shared storage a budget is exact whichever worker answers: exactly budget
failures are let through, the next attempt is a 429, and the attempts were served
by both workers. A device that logged in before still gets in once strangers
have spent the username's budget. With each worker's memory as the storage and two
workers, gunicorn warns at start-up, in its JSON log.
"""

import http.client
import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.helpers import MFA_KEY, RACE_ROUNDS
from tests.servers import HOST, NO_CONTROL_SOCKET, free_port
from tests.services import redis_namespace

WORKERS = 2
PER_ADDRESS = 4  # RATELIMIT_LOGIN_USERNAME: failures per (username, address)
PER_USERNAME = 6  # RATELIMIT_LOGIN_USERNAME_TOTAL: from every address together
# At most, until both workers served counted attempts of one round: sequential
# requests may all reach one worker for a while on a busy machine (seen in CI:
# six rounds on one worker).
ROUNDS = RACE_ROUNDS
WRONG = "wrong horse battery"
ACCESS_LINE = re.compile(r"^<(\d+)> (\d{3}) POST /login")
WARNING = "Rate limits are counted in each worker's memory"


@dataclass
class Answer:
    status: int
    body: dict
    headers: http.client.HTTPMessage


def login(base: str, username: str, password: str, client: str, device=None):
    """POST /login through the (pretend) proxy for `client`, with a device cookie."""
    headers = {
        "Content-Type": "application/json",
        "Connection": "close",
        "X-Forwarded-For": client,
    }
    if device:
        headers["Cookie"] = f"login_device={device}"
    port = int(base.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        body = json.dumps({"username": username, "password": password})
        connection.request("POST", "/login", body=body, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, json.loads(response.read()), response.headers)
    finally:
        connection.close()


def device_of(answer: Answer) -> str:
    (value,) = {
        cookie.split(";", 1)[0].split("=", 1)[1]
        for cookie in answer.headers.get_all("Set-Cookie") or []
        if cookie.startswith("login_device=")
    }
    return value


def env_for(tmp_path: Path, port: int, **settings) -> dict:
    """Every setting explicit: a developer's .env cannot change what is tested."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "BLOCKLIST_BACKEND": "database",
        "HOST": HOST,
        "PORT": str(port),
        "PUBLIC_URL": servers.base_url(port),
        "TRUSTED_HOSTS": HOST,
        "TRUSTED_PROXIES": "1",
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_THREADS": "1",
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_LOGIN": "1000 per hour",
        "RATELIMIT_REGISTER": "1000 per hour",
        "RATELIMIT_LOGIN_USERNAME": f"{PER_ADDRESS} per hour",
        "RATELIMIT_LOGIN_USERNAME_TOTAL": f"{PER_USERNAME} per hour",
        **settings,
    }


@contextmanager
def gunicorn(tmp_path: Path, **settings) -> Iterator[tuple[str, Path, Path]]:
    """(base URL, access log naming each request's worker, error log)."""
    port = free_port()
    access, errors = tmp_path / "access.log", tmp_path / "errors.log"
    args = [
        *NO_CONTROL_SOCKET,
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(p)s %(s)s %(r)s",
    ]
    env = env_for(tmp_path, port, **settings)
    with servers.live_server(env, errors, workers=WORKERS, args=args) as base:
        yield base, access, errors


def login_pids(access: Path, offset: int, expected: int) -> list[str]:
    """The workers that refused the logins logged after `offset` (401 or 429;
    each worker writes its line after answering, so no order is assumed)."""
    deadline = time.monotonic() + 5.0
    while True:
        with access.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        messages = [json.loads(line)["message"] for line in lines if line.strip()]
        lines = [m.groups() for m in map(ACCESS_LINE.match, messages) if m]
        pids = [pid for pid, status in lines if status in ("401", "429")]
        if len(pids) >= expected or time.monotonic() > deadline:
            assert len(pids) == expected, (pids, expected)
            return pids
        time.sleep(0.05)


def assert_refused(answer: Answer) -> None:
    assert answer.status == 429, (answer.status, answer.body)
    assert answer.body["error"] == "rate_limited", answer.body
    assert answer.body["code"] == 429, answer.body
    assert 1 <= int(answer.headers["Retry-After"]) <= 3600, dict(answer.headers)


def one_round(base: str, access: Path, n: int) -> Counter[str]:
    """Both budgets spent exactly, on a new account; the workers that counted."""
    username = f"owner{n}_{secrets.token_hex(3)}"
    servers.register(base, username)
    offset = access.stat().st_size if access.exists() else 0
    owner = login(base, username, servers.PASSWORD, "192.0.2.1")
    assert owner.status == 200, owner.body
    device = device_of(owner)

    # One attacker address: exactly PER_ADDRESS failures, then refused.
    one = [login(base, username, WRONG, "198.51.100.1") for _ in range(PER_ADDRESS)]
    assert [a.status for a in one] == [401] * PER_ADDRESS, [a.body for a in one]
    assert_refused(login(base, username, servers.PASSWORD, "198.51.100.1"))
    # Many addresses: exactly PER_USERNAME failures in all (PER_ADDRESS of them
    # spent above), then refused, even the right password from a new address.
    spread = [
        login(base, username, WRONG, f"203.0.113.{i}")
        for i in range(PER_USERNAME - PER_ADDRESS)
    ]
    assert [a.status for a in spread] == [401] * len(spread), [a.body for a in spread]
    assert_refused(login(base, username, servers.PASSWORD, "203.0.113.200"))
    counted = login_pids(access, offset, PER_USERNAME + 2)

    # The owner's device is let in, from home and from anywhere.
    for address in ("192.0.2.1", "203.0.113.201"):
        answer = login(base, username, servers.PASSWORD, address, device)
        assert answer.status == 200, answer.body
    return Counter(counted)


@contextmanager
def other_worker_kept_busy(base: str) -> Iterator[None]:
    """Probes sent in a loop while the block runs: on an idle machine one sync
    worker would accept every sequential request (seen in CI), and the round
    would prove nothing across workers. The probes are never counted."""
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            servers.request(base, "GET", "/healthz")

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        yield
    finally:
        stop.set()
        prober.join(10)


@pytest.mark.parametrize("storage", ["REDIS_URL", "RATELIMIT_STORAGE_URI"])
def test_budgets_are_exact_across_workers_on_a_shared_store(tmp_path, storage):
    with redis_namespace() as (url, prefix, client):
        settings = {storage: url, "REDIS_KEY_PREFIX": prefix}
        with (
            gunicorn(tmp_path, **settings) as (base, access, errors),
            other_worker_kept_busy(base),
        ):
            seen: list[Counter[str]] = []
            for n in range(ROUNDS):
                seen.append(one_round(base, access, n))
                if len(seen[-1]) == WORKERS:
                    break
            log = errors.read_text(errors="replace")
        assert any(len(pids) == WORKERS for pids in seen), seen
        assert WARNING not in log
        keys = [key.decode() for key in client.scan_iter(match=f"{prefix}*")]
        assert any("ratelimit" in key for key in keys), keys
    print(
        f"\n[budgets] {storage}: {len(seen)} round(s); workers that counted each "
        f"round's refusals (pid: attempts): {[dict(pids) for pids in seen]}"
    )


def test_per_worker_limits_are_warned_about_in_the_json_log(tmp_path):
    with gunicorn(tmp_path) as (base, _access, errors):
        assert servers.request(base, "GET", "/healthz").status == 200
        lines = errors.read_text(errors="replace").splitlines()

    records = [json.loads(line) for line in lines if line.startswith("{")]
    (warning,) = [r for r in records if WARNING in r["message"]]
    assert warning["level"] == "WARNING"
    assert f"and {WORKERS} workers serve" in warning["message"]
    assert (
        f"'{PER_ADDRESS} per hour' allows '{PER_ADDRESS * WORKERS} per 1 hour'"
        in warning["message"]
    )
