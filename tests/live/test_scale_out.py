"""Two instances of the API, one PostgreSQL database, one Redis: scale-out works.

Each test runs the production entry point twice (`gunicorn "app:create_app()"`,
APP_ENV=production, two sync workers each, gunicorn.conf.py reading HOST, PORT and
WEB_CONCURRENCY) as separate processes on two loopback ports, on a fresh PostgreSQL
database (migrated with `flask db upgrade`) and a fresh Redis key namespace, and
talks to them with the standard library only, one connection per request.

- data written through one instance is read through the other;
- a token revoked through one (logout, logout-all, refresh reuse) is refused by the
  other;
- the per-address login rate limit counts across both, in Redis;
- concurrent registrations and item creations on PostgreSQL: exact 201/409 counts,
  no 5xx, no lost rows.
"""

import http.client
import os
import secrets
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests import servers
from tests.helpers import MFA_KEY, PASSWORD
from tests.servers import HOST, Reply, free_port, migrate, request, stop
from tests.services import postgres_database, redis_namespace

WORKERS_PER_INSTANCE = 2
START_DEADLINE = 20.0
REQUEST_TIMEOUT = 30.0
POOL_THREADS = 25
REPLAYS = 5  # per revoked token and check
GENEROUS = "1000 per minute"
SECRET = secrets.token_urlsafe(48)  # 64 characters, shared by both instances


@dataclass
class Instance:
    """One gunicorn master (two workers) on its own port."""

    name: str
    port: int
    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def log_text(self) -> str:
        return "".join(
            path.read_text(errors="replace")
            for path in (self.stdout, self.stderr)
            if path.exists()
        )

    def log_tail(self, size: int = 3000) -> str:
        parts = []
        for path in (self.stdout, self.stderr):
            if path.exists():
                parts.append(f"--- {path.name} ---\n")
                parts.append(path.read_text(errors="replace")[-size:])
        return "".join(parts)

    @property
    def base(self) -> str:
        return servers.base_url(self.port)

    def call(self, method: str, path: str, token=None, body=None) -> Reply:
        """One request on its own connection (Connection: close)."""
        return request(
            self.base, method, path, token=token, body=body, timeout=REQUEST_TIMEOUT
        )

    def expect(self, status: int, method: str, path: str, token=None, body=None):
        """The request, asserting its status (with this server's log on a miss)."""
        reply = self.call(method, path, token, body)
        assert reply.status == status, (
            f"{self.name} {method} {path}: {reply.status} {reply.body}\n"
            f"{self.log_tail()}"
        )
        return reply


@dataclass
class Cluster:
    """Two instances on one database and one Redis namespace."""

    a: Instance
    b: Instance
    database_url: str
    prefix: str
    redis: object
    instances: list[Instance] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.instances = [self.a, self.b]

    def scalar(self, sql: str):
        """One value straight from PostgreSQL (not through the API)."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql)).scalar_one()
        finally:
            engine.dispose()

    def rows(self, sql: str) -> list[tuple]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql))]
        finally:
            engine.dispose()


def server_env(database_url: str, redis_url: str, prefix: str, **overrides) -> dict:
    """Every setting explicit: a developer's .env cannot change what is tested."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "JWT_SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "BLOCKLIST_BACKEND": "redis",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "JWT_ACCESS_TOKEN_EXPIRES": "900",
        "JWT_REFRESH_TOKEN_EXPIRES": "2592000",
        "REFRESH_REUSE_GRACE_SECONDS": "10",
        "TRUSTED_PROXIES": "0",
        "TRUSTED_HOSTS": HOST,
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_LOGIN": GENEROUS,
        "RATELIMIT_LOGIN_USERNAME": GENEROUS,
        "RATELIMIT_REGISTER": GENEROUS,
        "RATELIMIT_REFRESH": GENEROUS,
        "LOG_LEVEL": "INFO",
        "WEB_CONCURRENCY": str(WORKERS_PER_INSTANCE),
        "GUNICORN_THREADS": "1",
        "HOST": HOST,
    }
    env.update(overrides)
    return env


def _two_free_ports() -> tuple[int, int]:
    for _ in range(20):
        first, second = free_port(), free_port()
        if first != second:
            return first, second
    raise AssertionError("no two distinct free ports on loopback")


def _launch(stack: ExitStack, env: dict, port: int, tmp_path: Path, name: str):
    stdout_path = tmp_path / f"{name}-stdout.log"
    stderr_path = tmp_path / f"{name}-stderr.log"
    # Stopped at the end of the stack (a no-op once the pair was stopped together).
    process = stack.enter_context(
        servers.gunicorn({**env, "PORT": str(port)}, stdout_path, stderr_path)
    )
    return Instance(name, port, process, stdout_path, stderr_path)


def _wait_until_ready(instances: list[Instance]) -> None:
    """Poll GET /readyz on every instance until each answers 200 (bounded)."""
    deadline = time.monotonic() + START_DEADLINE
    pending = list(instances)
    last: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for instance in list(pending):
            if instance.process.poll() is not None:
                pytest.fail(
                    f"gunicorn {instance.name} exited early:\n{instance.log_tail()}"
                )
            try:
                reply = instance.call("GET", "/readyz")
            except (OSError, http.client.HTTPException) as exc:
                last[instance.name] = repr(exc)
                continue
            last[instance.name] = f"{reply.status} {reply.body}"
            if reply.status == 200:
                pending.remove(instance)
        if pending:
            time.sleep(0.1)
    if pending:
        tails = "\n".join(i.log_tail() for i in pending)
        pytest.fail(f"not ready in {START_DEADLINE}s: {last}\n{tails}")


def _delete_stray_keys(client, prefix: str) -> None:
    """Keys that carry the prefix anywhere (redis_namespace drops prefix* only)."""
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def start_cluster(request, tmp_path) -> Iterator[Callable[..., Cluster]]:
    """start_cluster(**env overrides): two instances on a fresh database and Redis
    namespace; both are stopped (SIGTERM, then SIGKILL) at teardown."""
    failures_before = request.session.testsfailed
    started: list[Cluster] = []
    with ExitStack() as stack:

        def start(**overrides: str) -> Cluster:
            database_url = stack.enter_context(postgres_database())
            redis_url, prefix, client = stack.enter_context(redis_namespace())
            stack.callback(_delete_stray_keys, client, prefix)
            env = server_env(database_url, redis_url, prefix, **overrides)
            port_a, port_b = _two_free_ports()
            # The schema is migrated while gunicorn boots (nothing but /readyz is
            # asked before the migration is done).
            with ThreadPoolExecutor(max_workers=1) as pool:
                migrating = pool.submit(migrate, env)
                a = _launch(stack, env, port_a, tmp_path, "A")
                b = _launch(stack, env, port_b, tmp_path, "B")
                stack.callback(stop, a.process, b.process)
                migrating.result()
            _wait_until_ready([a, b])
            cluster = Cluster(a, b, database_url, prefix, client)
            started.append(cluster)
            return cluster

        yield start
    if request.session.testsfailed > failures_before:
        for cluster in started:
            for instance in cluster.instances:
                print(f"\n=== gunicorn {instance.name} ===\n{instance.log_tail()}")


def _replay(instance: Instance, tokens: dict, times: int = REPLAYS) -> list[Reply]:
    """Present a token pair `times` times each: GET /me and POST /refresh."""
    replies = []
    for _ in range(times):
        replies.append(instance.call("GET", "/me", tokens["access_token"]))
        replies.append(instance.call("POST", "/refresh", tokens["refresh_token"]))
    return replies


def _outcomes(replies: list[Reply]) -> Counter:
    return Counter((reply.status, reply.error) for reply in replies)


def _assert_revoked(replies: list[Reply], where: str) -> None:
    for reply in replies:
        assert reply.status == 401, f"{where}: {reply.status} {reply.body}"
        assert reply.body["error"] == "token_revoked", f"{where}: {reply.body}"
        assert reply.body["code"] == 401, reply.body
        assert "invalid_token" in reply.headers["www-authenticate"], reply.headers


def test_data_written_through_one_instance_is_read_through_the_other(start_cluster):
    """A store and an item created on A read identically on B; a user registered
    on A logs in on B (and A's token works on B: one secret)."""
    cluster = start_cluster()
    a, b = cluster.a, cluster.b

    user, tokens = servers.sign_up(a.base, "alice")
    store = a.expect(
        201, "POST", "/store", tokens["access_token"], {"name": "Corner shop"}
    ).body
    item = a.expect(
        201,
        "POST",
        "/item",
        tokens["access_token"],
        {"name": "Chair", "price": 15.99, "store_id": store["id"]},
    ).body
    assert item["store"] == store and item["tags"] == []

    item_on_b = b.expect(200, "GET", f"/item/{item['id']}", tokens["access_token"])
    item_on_a = a.expect(200, "GET", f"/item/{item['id']}", tokens["access_token"])
    assert item_on_b.body == item == item_on_a.body
    store_on_b = b.expect(200, "GET", f"/store/{store['id']}", tokens["access_token"])
    store_on_a = a.expect(200, "GET", f"/store/{store['id']}", tokens["access_token"])
    assert store_on_b.body == store_on_a.body
    assert store_on_b.body["name"] == "Corner shop"
    assert [i["id"] for i in store_on_b.body["items"]] == [item["id"]]
    listed = b.expect(200, "GET", "/store", tokens["access_token"]).body
    assert listed == [store]

    on_b = servers.login(b.base, "alice")
    me = b.expect(200, "GET", "/me", on_b["access_token"]).body
    assert me == {"id": user["id"], "username": "alice", "is_admin": False}
    me_on_a = a.expect(200, "GET", "/me", on_b["access_token"]).body
    assert me_on_a == me
    print(
        f"\n[scale-out] data: store {store['id']} and item {item['id']} written on A "
        "read identically on B; user registered on A logged in on B (200)"
    )


def test_revocations_on_one_instance_are_refused_by_the_other(start_cluster):
    """Logout on A -> A's tokens refused on B; logout-all on B -> the tokens of a
    session created on A are refused on A."""
    cluster = start_cluster()
    a, b = cluster.a, cluster.b
    _, first = servers.sign_up(a.base, "alice")
    b.expect(200, "GET", "/me", first["access_token"])  # valid on B before
    a.expect(200, "POST", "/logout", first["access_token"])
    after_logout = _replay(b, first)
    _assert_revoked(after_logout, "logged out on A, presented to B")

    on_a = servers.login(a.base, "alice")
    on_b = servers.login(b.base, "alice")
    a.expect(200, "GET", "/me", on_a["access_token"])  # valid on A before
    b.expect(200, "POST", "/logout/all", on_b["access_token"])
    after_logout_all = _replay(a, on_a) + _replay(a, on_b)
    _assert_revoked(after_logout_all, "logged out everywhere on B, presented to A")

    fresh = servers.login(a.base, "alice")  # a login right after the mark still works
    b.expect(200, "GET", "/me", fresh["access_token"])
    replies = after_logout + after_logout_all
    accepted = sum(reply.status < 400 for reply in replies)
    print(
        "\n[scale-out] revoked tokens accepted by the other instance: "
        f"{accepted}/{len(replies)} (logout on A -> B: {len(after_logout)}, "
        f"logout-all on B -> A: {len(after_logout_all)}); outcomes "
        f"{dict(_outcomes(replies))}"
    )


def test_refresh_reuse_detected_across_instances(start_cluster):
    """Grace 0: refresh on A, replay the old refresh token on B -> 401
    token_revoked, and the new tokens from A's refresh are refused on A too."""
    cluster = start_cluster(REFRESH_REUSE_GRACE_SECONDS="0")
    a, b = cluster.a, cluster.b
    _, login = servers.sign_up(a.base, "alice")
    rotated = a.expect(200, "POST", "/refresh", login["refresh_token"]).body
    b.expect(200, "GET", "/me", rotated["access_token"])  # the new pair works on B

    replay = b.call("POST", "/refresh", login["refresh_token"])
    _assert_revoked([replay], "old refresh token replayed on B")

    family = _replay(a, rotated) + _replay(b, rotated) + _replay(a, login)
    _assert_revoked(family, "the family's tokens after the replay")

    deadline = time.monotonic() + 5.0
    while "refresh_token_reuse" not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = b.log_text()
    assert "refresh_token_reuse" in log, b.log_tail()
    assert login["refresh_token"] not in log and rotated["refresh_token"] not in log

    other = servers.login(b.base, "alice")  # the user's other sessions are untouched
    a.expect(200, "GET", "/me", other["access_token"])
    accepted = sum(reply.status < 400 for reply in family)
    print(
        f"\n[scale-out] reuse: replay on B -> {replay.status} {replay.error}; "
        f"family tokens accepted afterwards: {accepted}/{len(family)}; "
        "security event logged by B"
    )


def _login_attempt(instance: Instance) -> Reply:
    credentials = {"username": "alice", "password": PASSWORD}
    return instance.call("POST", "/login", body=credentials)


def test_login_rate_limit_counts_across_instances(start_cluster):
    """6 logins per minute per address, alternating A and B: the 7th attempt
    overall is a 429 rate_limited with Retry-After, on either instance; the
    counters live in Redis, under REDIS_KEY_PREFIX."""
    cluster = start_cluster(
        RATELIMIT_LOGIN="6 per minute", RATELIMIT_LOGIN_USERNAME="100 per minute"
    )
    a, b = cluster.a, cluster.b
    servers.register(a.base, "alice")  # no login yet: it would count against the limit

    allowed = [_login_attempt(cluster.instances[i % 2]) for i in range(6)]
    assert [reply.status for reply in allowed] == [200] * 6, [
        (reply.status, reply.body) for reply in allowed
    ]
    remaining = [reply.headers.get("x-ratelimit-remaining") for reply in allowed]
    seventh = _login_attempt(a)
    eighth = _login_attempt(b)
    for name, reply in (("7th on A", seventh), ("8th on B", eighth)):
        assert reply.status == 429, f"{name}: {reply.status} {reply.body}"
        assert reply.body["error"] == "rate_limited", reply.body
        assert reply.body["code"] == 429, reply.body
        assert 1 <= int(reply.headers["retry-after"]) <= 60, reply.headers

    # The counter both instances share: one key for the per-address login limit.
    # (Every key the app writes carries the prefix *somewhere*; see the end.)
    anywhere = sorted(
        key.decode() for key in cluster.redis.scan_iter(match=f"*{cluster.prefix}*")
    )
    limit_keys = [key for key in anywhere if "ratelimit" in key and "/6/1/" in key]
    assert len(limit_keys) == 1, anywhere
    counted = cluster.redis.llen(limit_keys[0])
    assert counted == 6, (limit_keys, counted)
    print(
        f"\n[scale-out] login rate limit: attempts 1-6 alternating A/B -> 6x200 "
        f"(X-RateLimit-Remaining {remaining}); 7th on A -> {seventh.status} "
        f"{seventh.error} Retry-After {seventh.headers['retry-after']}; 8th on B -> "
        f"{eighth.status}; Redis counter {limit_keys[0]!r} = {counted}"
    )

    # README: REDIS_KEY_PREFIX is the "prefix of every Redis key the app writes".
    outside = [key for key in anywhere if not key.startswith(cluster.prefix)]
    assert not outside, (
        f"Redis keys written by the app outside REDIS_KEY_PREFIX "
        f"{cluster.prefix!r}: {outside}"
    )


CASINGS: list[Callable[[str], str]] = [
    str.lower,
    str.upper,
    str.capitalize,
    lambda name: name.capitalize().swapcase(),
    lambda name: "".join(c.upper() if i % 2 else c for i, c in enumerate(name)),
]


def test_parallel_registrations_with_duplicates(start_cluster):
    """Design: 10 names x 5 attempts each = 50 POST /register, every attempt of a
    name in a different letter case (uniqueness ignores case), sent by 25 threads
    in two waves of 25 started together (a barrier), one connection per request,
    alternately to A and B, interleaved so the 5 attempts of a name overlap.
    Exactly one attempt per name can win: 10 x 201, 40 x 409 username_taken,
    0 x 5xx, and the users table holds exactly the 10 names."""
    cluster = start_cluster()
    bases = [f"shopper{k:02d}" for k in range(10)]
    attempts = [casing(base) for casing in CASINGS for base in bases]
    assert len(attempts) == 50 and len(set(attempts)) == 50
    assert len({name.lower() for name in attempts}) == 10
    barrier = threading.Barrier(POOL_THREADS)

    def register(index: int) -> Reply:
        barrier.wait(timeout=REQUEST_TIMEOUT)
        instance = cluster.instances[index % 2]
        body = {"username": attempts[index], "password": PASSWORD}
        return instance.call("POST", "/register", body=body)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=POOL_THREADS) as pool:
        replies = list(pool.map(register, range(len(attempts))))
    elapsed = time.monotonic() - started

    statuses = Counter(reply.status for reply in replies)
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    summary = (
        f"registrations: {statuses[201]}x201, {statuses[409]}x409, "
        f"{server_errors}x5xx in {elapsed:.1f}s (all statuses {dict(statuses)})"
    )
    print(f"\n[scale-out] {summary}")
    assert server_errors == 0, [r.body for r in replies if r.status >= 500]
    assert statuses == {201: 10, 409: 40}, summary
    winners = Counter(r.body["username"].lower() for r in replies if r.status == 201)
    assert winners == dict.fromkeys(bases, 1), winners
    for reply in replies:
        if reply.status == 409:
            assert reply.body["error"] == "username_taken", reply.body

    assert cluster.scalar("SELECT COUNT(*) FROM users") == 10
    stored = cluster.rows("SELECT id, username FROM users ORDER BY id")
    created = sorted(
        (r.body["id"], r.body["username"]) for r in replies if r.status == 201
    )
    assert stored == created


def test_parallel_item_creations_lose_nothing(start_cluster):
    """200 POST /item from 25 threads, alternately to A and B, with fresh tokens
    from a login on each instance (each token used on both): 200 x 201, 200
    distinct ids, exactly 200 rows in the items table, each as answered."""
    cluster = start_cluster()
    a, b = cluster.a, cluster.b
    servers.register(a.base, "alice")
    tokens = [servers.login(x.base, "alice")["access_token"] for x in (a, b)]
    store = a.expect(201, "POST", "/store", tokens[0], {"name": "Warehouse"}).body
    count = 200

    def create(index: int) -> Reply:
        instance = cluster.instances[index % 2]
        body = {"name": f"item-{index:03d}", "price": index / 100}
        body["store_id"] = store["id"]
        return instance.call("POST", "/item", tokens[(index // 2) % 2], body)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=POOL_THREADS) as pool:
        replies = list(pool.map(create, range(count)))
    elapsed = time.monotonic() - started

    statuses = Counter(reply.status for reply in replies)
    ids = {reply.body["id"] for reply in replies if reply.status == 201}
    rows = cluster.scalar("SELECT COUNT(*) FROM items")
    print(
        f"\n[scale-out] items: {statuses[201]}x201 of {count} in {elapsed:.1f}s, "
        f"{len(ids)} distinct ids, rows={rows} (all statuses {dict(statuses)})"
    )
    assert statuses == {201: count}, [r.body for r in replies if r.status != 201][:5]
    assert len(ids) == count
    for index, reply in enumerate(replies):
        assert reply.body["name"] == f"item-{index:03d}", reply.body
        assert reply.body["price"] == index / 100, reply.body
        assert reply.body["store"] == store, reply.body
    assert rows == count
    stored = cluster.rows("SELECT id, name FROM items ORDER BY id")
    answered = sorted((reply.body["id"], reply.body["name"]) for reply in replies)
    assert stored == answered
