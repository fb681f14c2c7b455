"""DPoP (RFC 9449, issue 27) on live servers: the production entry point with
four sync workers on PostgreSQL, with the Redis revocation store and with the
database store, each request on its own connection so requests spread over the
workers (gunicorn's access log names the worker, `%(p)s`, of each); then two
instances side by side on one database, one Redis namespace and one signing key.

A proof is good once (§11.1): its `jti` is spent in the revocation store every
worker and every instance shares, so a proof used through one worker is refused
by every other, and one proof sent side by side to several workers (or to both
instances) is accepted once, ROUNDS rounds each in one run; the same for
/refresh, whose proof carries the refresh token's hash. Nonces (§8) are made
and checked without a store, under a key derived from the signing key: a nonce
one instance hands out is good at the other, also halfway through a rolling
rotation of the signing key (docs/keys.md). A thief's key is refused at every
worker (401 invalid_token, §7.1) and the owner's session goes on.
"""

import http.client
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest

from devtools.servers import reply_of
from tests.dpop import ProofKey
from tests.helpers import PASSWORD, RACE_ROUNDS, TOKEN_KEYS, at_once
from tests.live.test_mfa_workers import WORKERS, Server, workers_on_postgresql
from tests.servers import (
    REQUEST_TIMEOUT,
    Reply,
    base_url,
    free_port,
    gunicorn,
    migrate,
    production_env,
    register,
    stop,
    wait_until_ready,
)
from tests.services import postgres_database, redis_namespace

ROUNDS = RACE_ROUNDS
COVERAGE_ROUNDS = max(ROUNDS, 60)
THREADS = 5
INSTANCE_WORKERS = 1  # the workers are tested above: here, the instances
ME, REFRESH, LOGIN = "/me", "/refresh", "/login"
ALGS = 'algs="ES256 ES384 EdDSA RS256 PS256"'
# Unset: each server's URLs (and so each proof's `htu`) are the address the
# client reached it at, as its Host names it.
OWN_ADDRESS = {"PUBLIC_URL": ""}
# Two instances behind one load balancer: one public address (port 80, which
# nothing here listens on), whichever instance answers.
ONE_ADDRESS = "http://127.0.0.1"
Headers = dict[str, str] | list[tuple[str, str]]


# --- requests -------------------------------------------------------------------------


def call(
    base: str, method: str, path: str, headers: Headers = (), body: dict | None = None
) -> Reply:
    """One request to `base` + `path` on its own connection, with `headers` (pairs:
    a name may come twice) and `body` as JSON; the body parsed, headers keyed in
    lower case."""
    url = urlsplit(base)
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        pairs += [("Content-Type", "application/json")]
    connection = http.client.HTTPConnection(
        url.hostname, url.port, timeout=REQUEST_TIMEOUT
    )
    try:
        connection.putrequest(method, url.path.rstrip("/") + path)
        for name, value in [("Connection", "close"), *pairs]:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(data or b"")))
        connection.endheaders(data)
        return reply_of(connection.getresponse())
    finally:
        connection.close()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def assert_refused(reply: Reply, status: int, error: str, fragment: str = "") -> dict:
    """The error envelope; a 401 challenges with the DPoP scheme and its
    algorithms (§7.1), a 400 has an `error_description` (RFC 6749 §5.2)."""
    body = reply.body
    assert reply.status == status, (reply.status, body)
    assert body["code"] == status and body["error"] == error, body
    assert fragment in body["message"], body
    if status == 401:
        challenge = reply.headers["www-authenticate"]
        assert challenge.startswith(f'DPoP realm="api", error="{error}"'), challenge
        assert challenge.endswith(ALGS), challenge
    else:
        assert body["error_description"] == body["message"], body
    return body


def bound_login(
    base: str, key: ProofKey, username: str, public: str = "", nonce: str | None = None
) -> dict:
    """POST /login at `base` with a proof of `key` naming `public` (`base` unless
    given) + /login: the pair, bound to the key (§6.1)."""
    proof = key.proof("POST", (public or base) + LOGIN, nonce=nonce)
    body = {"username": username, "password": PASSWORD}
    reply = call(base, "POST", LOGIN, {"DPoP": proof}, body)
    assert reply.status == 200, reply.body
    assert set(reply.body) == TOKEN_KEYS and reply.body["token_type"] == "DPoP"
    for name in ("access_token", "refresh_token"):
        assert claims_of(reply.body[name])["cnf"] == {"jkt": key.jkt}
    return reply.body


def new_session(
    base: str, public: str = "", nonce: str | None = None
) -> tuple[str, ProofKey, dict]:
    """A new account and a session of it bound to a new key: (username, key, pair)."""
    username = f"user_{uuid.uuid4().hex[:12]}"
    register(base, username)
    key = ProofKey()
    return username, key, bound_login(base, key, username, public, nonce)


def me(
    base: str, key: ProofKey, token: str, public: str = "", nonce: str | None = None
) -> Reply:
    """GET /me at `base` with `token` and a proof naming `public` + /me."""
    url = (public or base) + ME
    return call(base, "GET", ME, key.headers("GET", url, token, nonce=nonce))


def refresh(
    base: str, key: ProofKey, token: str, public: str = "", nonce: str | None = None
) -> Reply:
    """POST /refresh at `base` with `token` and a proof naming `public` + /refresh."""
    url = (public or base) + REFRESH
    return call(base, "POST", REFRESH, key.headers("POST", url, token, nonce=nonce))


def assert_refreshed(reply: Reply, key: ProofKey) -> dict:
    """A new pair, still bound to `key`."""
    assert reply.status == 200, reply.body
    assert reply.body["token_type"] == "DPoP", reply.body
    assert claims_of(reply.body["refresh_token"])["cnf"] == {"jkt": key.jkt}
    return reply.body


# --- the workers that answered --------------------------------------------------------


def answered_by(server: Server, offset: int, expected: int, method: str, path: str):
    """The workers of the `method path` answers logged after `offset`, once
    `expected` of them are (each worker writes its line after answering)."""
    deadline = time.monotonic() + 5.0
    while True:
        with server.access.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        words = [json.loads(line)["message"].split() for line in lines if line]
        pids = [w[0].strip("<>") for w in words if w[2:4] == [method, path]]
        if len(pids) >= expected or time.monotonic() > deadline:
            assert len(pids) == expected, (pids, expected)
            return pids
        time.sleep(0.05)


def rounds(covered: Callable[[], bool]) -> Iterator[int]:
    """ROUNDS rounds, and more until `covered()` (every worker has answered), at
    most COVERAGE_ROUNDS: the workers take connections as they come, so which
    one answers is up to chance."""
    for round_number in range(COVERAGE_ROUNDS):
        if round_number >= ROUNDS and covered():
            return
        yield round_number


@pytest.fixture(scope="module", params=["redis", "database-postgresql"])
def server(request, tmp_path_factory) -> Iterator[Server]:
    """Four workers, for every test of the module (each test has its own users)."""
    folder = tmp_path_factory.mktemp(f"dpop-{request.param}")
    with workers_on_postgresql(folder, request.param, **OWN_ADDRESS) as server:
        yield server


# --- four workers ---------------------------------------------------------------------


def test_a_bound_session_is_served_by_every_worker(server):
    username, key, tokens = new_session(server.base)
    offset = server.offset()
    served_by: set[str] = set()
    for round_number in rounds(lambda: served_by == server.workers()):
        sends = [partial(me, server.base, key, tokens["access_token"])] * WORKERS
        replies = at_once(sends)
        for reply in replies:
            assert reply.status == 200, (round_number, reply.body)
            assert reply.body["username"] == username
        count = WORKERS * (round_number + 1)
        served_by.update(answered_by(server, offset, count, "GET", ME))
    assert served_by == server.workers(), (served_by, server.workers())


def test_a_used_proof_is_refused_by_every_worker(server):
    _, key, tokens = new_session(server.base)
    token = tokens["access_token"]
    refused_by: set[str] = set()
    for round_number in rounds(lambda: refused_by == server.workers()):
        headers = key.headers("GET", server.base + ME, token)
        offset = server.offset()
        first = call(server.base, "GET", ME, headers)
        assert first.status == 200, first.body
        (accepted_by,) = answered_by(server, offset, 1, "GET", ME)
        offset = server.offset()

        replies = at_once([partial(call, server.base, "GET", ME, headers)] * WORKERS)

        for reply in replies:
            assert reply.status == 401, (round_number, accepted_by, reply.body)
            assert_refused(reply, 401, "invalid_dpop_proof", "used before")
        refused_by.update(answered_by(server, offset, WORKERS, "GET", ME))
    assert refused_by == server.workers(), (refused_by, server.workers())
    assert me(server.base, key, token).status == 200  # the session goes on


def test_one_proof_side_by_side_on_several_workers_is_accepted_once(server):
    username, key, tokens = new_session(server.base)
    offset = server.offset()
    for round_number in range(ROUNDS):
        headers = key.headers("GET", server.base + ME, tokens["access_token"])

        replies = at_once([partial(call, server.base, "GET", ME, headers)] * THREADS)

        won = [r.body for r in replies if r.status == 200]
        assert len(won) == 1, (round_number, [(r.status, r.body) for r in replies])
        assert won[0]["username"] == username
        for reply in replies:
            if reply.status != 200:
                assert_refused(reply, 401, "invalid_dpop_proof", "used before")
    pids = answered_by(server, offset, ROUNDS * THREADS, "GET", ME)
    assert len(set(pids)) > 1, pids


def test_a_used_refresh_proof_is_refused_by_every_worker(server):
    """Each round refreshes, then replays that very request (token and proof)
    to every worker: refused for the proof, before any reuse detection, so the
    session is not ended by it (the next round refreshes its new pair)."""
    _, key, tokens = new_session(server.base)
    refused_by: set[str] = set()
    for round_number in rounds(lambda: refused_by == server.workers()):
        token = tokens["refresh_token"]
        headers = key.headers("POST", server.base + REFRESH, token)
        offset = server.offset()
        tokens = assert_refreshed(call(server.base, "POST", REFRESH, headers), key)
        (accepted_by,) = answered_by(server, offset, 1, "POST", REFRESH)
        offset = server.offset()

        replies = at_once(
            [partial(call, server.base, "POST", REFRESH, headers)] * WORKERS
        )

        for reply in replies:
            assert reply.status == 401, (round_number, accepted_by, reply.body)
            assert_refused(reply, 401, "invalid_dpop_proof", "used before")
        refused_by.update(answered_by(server, offset, WORKERS, "POST", REFRESH))
    assert refused_by == server.workers(), (refused_by, server.workers())
    assert me(server.base, key, tokens["access_token"]).status == 200


def test_one_refresh_proof_side_by_side_refreshes_once(server):
    _, key, tokens = new_session(server.base)
    offset = server.offset()
    for round_number in range(ROUNDS):
        token = tokens["refresh_token"]
        headers = key.headers("POST", server.base + REFRESH, token)

        replies = at_once(
            [partial(call, server.base, "POST", REFRESH, headers)] * THREADS
        )

        won = [r for r in replies if r.status == 200]
        assert len(won) == 1, (round_number, [(r.status, r.body) for r in replies])
        tokens = assert_refreshed(won[0], key)
        for reply in replies:
            if reply.status != 200:
                assert_refused(reply, 401, "invalid_dpop_proof", "used before")
    pids = answered_by(server, offset, ROUNDS * THREADS, "POST", REFRESH)
    assert len(set(pids)) > 1, pids
    assert me(server.base, key, tokens["access_token"]).status == 200


def test_a_thiefs_key_is_refused_by_every_worker_and_the_owner_goes_on(server):
    """The thief holds both tokens and signs proofs of its own key, for this very
    request and token each: every worker refuses them (invalid_token, the token
    is bound to another key), and nothing of the session is ended by them."""
    username, key, tokens = new_session(server.base)
    thief = ProofKey()
    stolen_access, stolen_refresh = tokens["access_token"], tokens["refresh_token"]
    offset = server.offset()
    refused_by: dict[str, set[str]] = {ME: set(), REFRESH: set()}
    everywhere = {ME: server.workers(), REFRESH: server.workers()}
    for round_number in rounds(lambda: refused_by == everywhere):
        replies = at_once(
            [partial(me, server.base, thief, stolen_access)] * WORKERS
            + [partial(refresh, server.base, thief, stolen_refresh)] * WORKERS
        )

        for reply in replies:
            assert reply.status == 401, (round_number, reply.body)
            assert_refused(reply, 401, "invalid_token", "another key")
        count = WORKERS * (round_number + 1)
        for method, path in (("GET", ME), ("POST", REFRESH)):
            refused_by[path] = set(answered_by(server, offset, count, method, path))
    assert refused_by == everywhere

    served = me(server.base, key, stolen_access)
    assert served.status == 200 and served.body["username"] == username
    renewed = assert_refreshed(refresh(server.base, key, stolen_refresh), key)
    assert me(server.base, key, renewed["access_token"]).status == 200


# --- two instances --------------------------------------------------------------------


@contextmanager
def two_instances(
    folder: Path, own: tuple[dict, dict] = ({}, {}), **settings: str
) -> Iterator[tuple[str, str]]:
    """Two production servers (one worker each) on their own ports, one
    PostgreSQL database, one Redis namespace (the revocation store) and one
    signing key (production_env makes one per call; `own` settings of each may
    say otherwise), migrated once and started side by side: their base URLs."""
    with postgres_database() as database_url, redis_namespace() as redis:
        url, prefix, _client = redis
        env = production_env(
            database_url,
            INSTANCE_WORKERS,
            BLOCKLIST_BACKEND="redis",
            REDIS_URL=url,
            REDIS_KEY_PREFIX=prefix,
            **settings,
        )
        migrate(env)
        ports = set()
        while len(ports) < 2:  # neither is bound before both are started
            ports.add(free_port())
        with ExitStack() as stack:
            started = []
            for port, name, mine in zip(ports, "ab", own, strict=True):
                log = folder / f"{name}.log"
                instance_env = {**env, "PORT": str(port), **mine}
                started.append((stack.enter_context(gunicorn(instance_env, log)), log))
            # Stopped side by side, first (each context's own stop is then a no-op).
            stack.callback(stop, *(process for process, _ in started))
            bases = tuple(base_url(port) for port in ports)
            for (process, log), base in zip(started, bases, strict=True):
                wait_until_ready(
                    process,
                    partial(ready, base),
                    lambda log=log: log.read_text(errors="replace")[-3000:],
                )
            yield bases


def ready(base: str) -> bool:
    return call(base, "GET", "/healthz").status == 200


@pytest.fixture(scope="module")
def behind_one_address(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Two instances that both serve ONE_ADDRESS (their PUBLIC_URL): a proof names
    it, whichever instance the request reaches."""
    folder = tmp_path_factory.mktemp("dpop-instances")
    with two_instances(folder, PUBLIC_URL=ONE_ADDRESS) as bases:
        yield bases


@pytest.fixture(scope="module")
def with_nonces(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Two instances at their own addresses, each asking for its nonces (§8)."""
    folder = tmp_path_factory.mktemp("dpop-nonces")
    with two_instances(folder, DPOP_NONCE_REQUIRED="true", **OWN_ADDRESS) as bases:
        yield bases


def test_a_proof_used_at_one_instance_is_refused_at_the_other(behind_one_address):
    a, b = behind_one_address
    username, key, tokens = new_session(a, public=ONE_ADDRESS)
    token = tokens["access_token"]
    for first, then in ((a, b), (b, a)):
        headers = key.headers("GET", ONE_ADDRESS + ME, token)
        used = call(first, "GET", ME, headers)
        assert used.status == 200 and used.body["username"] == username, used.body

        replayed = call(then, "GET", ME, headers)

        assert_refused(replayed, 401, "invalid_dpop_proof", "used before")
    refreshed = refresh(b, key, tokens["refresh_token"], public=ONE_ADDRESS)
    tokens = assert_refreshed(refreshed, key)
    assert me(a, key, tokens["access_token"], public=ONE_ADDRESS).status == 200


def test_one_proof_at_both_instances_at_once_is_accepted_once(behind_one_address):
    a, b = behind_one_address
    _, key, tokens = new_session(b, public=ONE_ADDRESS)
    for round_number in range(ROUNDS):
        headers = key.headers("GET", ONE_ADDRESS + ME, tokens["access_token"])

        replies = at_once(
            [partial(call, base, "GET", ME, headers) for base in (a, b)]
            * (THREADS // 2 + 1)
        )

        statuses = sorted(reply.status for reply in replies)
        assert statuses.count(200) == 1, (round_number, statuses)
        for reply in replies:
            if reply.status != 200:
                assert_refused(reply, 401, "invalid_dpop_proof", "used before")


def nonce_of(base: str) -> str:
    """The nonce a client learns from its first proof's refusal (§8): 400
    use_dpop_nonce at a login, with the nonce in DPoP-Nonce."""
    proof = {"DPoP": ProofKey().proof("POST", base + LOGIN)}
    body = {"username": "nobody", "password": PASSWORD}
    asked = call(base, "POST", LOGIN, proof, body)
    assert_refused(asked, 400, "use_dpop_nonce", "nonce")
    return asked.headers["dpop-nonce"]


def test_a_nonce_of_one_instance_is_good_at_the_other(with_nonces):
    a, b = with_nonces
    from_a = nonce_of(a)
    username, key, tokens = new_session(b, nonce=from_a)  # bound at B, A's nonce
    assert me(b, key, tokens["access_token"], nonce=from_a).status == 200

    without = me(b, key, tokens["access_token"])
    assert_refused(without, 401, "use_dpop_nonce", "nonce")
    from_b = without.headers["dpop-nonce"]
    served = me(a, key, tokens["access_token"], nonce=from_b)
    assert served.status == 200 and served.body["username"] == username, served.body
    forged = me(a, key, tokens["access_token"], nonce=from_b[::-1])
    assert_refused(forged, 401, "use_dpop_nonce", "nonce")


def test_a_session_bound_at_one_instance_goes_on_at_the_other(with_nonces):
    """The proofs at B name B's URL (§4.3 check 9: the URL of the request as
    the client sent it), with the nonce A handed out."""
    a, b = with_nonces
    nonce = nonce_of(a)
    username, key, tokens = new_session(a, nonce=nonce)

    served = me(b, key, tokens["access_token"], nonce=nonce)
    assert served.status == 200 and served.body["username"] == username, served.body
    named_a = me(b, key, tokens["access_token"], nonce=nonce, public=a)
    assert_refused(
        named_a,
        401,
        "invalid_dpop_proof",
        f"The DPoP proof's htu must be this request's URL, {b}{ME}",
    )
    renewed = assert_refreshed(
        refresh(b, key, tokens["refresh_token"], nonce=nonce), key
    )
    assert me(a, key, renewed["access_token"], nonce=nonce).status == 200
    assert me(b, key, renewed["access_token"], nonce=nonce).status == 200


# docs/keys.md, "Rotating a key without logging anyone out", step 2 halfway
# through its rolling restart: A signs with the new secret, B still with the old
# one, and each holds the other's as a fallback, so each accepts the other's
# tokens ("instances may restart in any order").
OLD_SECRET, NEW_SECRET = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
MID_ROTATION = (
    {"JWT_SECRET_KEY": NEW_SECRET, "JWT_SECRET_KEY_FALLBACKS": OLD_SECRET},
    {"JWT_SECRET_KEY": OLD_SECRET, "JWT_SECRET_KEY_FALLBACKS": NEW_SECRET},
)


@pytest.fixture(scope="module")
def mid_rotation(tmp_path_factory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("dpop-rotation")
    with two_instances(
        folder, MID_ROTATION, DPOP_NONCE_REQUIRED="true", **OWN_ADDRESS
    ) as bases:
        yield bases


def test_a_nonce_is_good_at_every_instance_while_the_signing_key_rotates(
    mid_rotation,
):
    """Behind a load balancer a client's next request may reach either instance.
    Both accept each other's tokens mid-rotation; a nonce (§8) of one must be
    good at the other as well, or a client that retries once with the nonce it
    was just given (§8) can land on the other instance and fail again."""
    a, b = mid_rotation
    from_a, from_b = nonce_of(a), nonce_of(b)
    username, key, tokens = new_session(a, nonce=from_a)
    token = tokens["access_token"]
    served = me(b, key, token, nonce=from_b)  # A's token, at B: the keys are sound
    assert served.status == 200 and served.body["username"] == username, served.body

    at_b = me(b, key, token, nonce=from_a)
    at_a = me(a, key, token, nonce=from_b)

    assert (at_b.status, at_b.error) == (200, None), at_b.body
    assert (at_a.status, at_a.error) == (200, None), at_a.body
