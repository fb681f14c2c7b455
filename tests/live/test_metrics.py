"""GET /metrics on a real gunicorn with three workers: every scrape, whichever
worker answers it, shows the whole server's totals, exactly.

A known sequence of requests is sent from several threads (one connection per
request, so they spread over the workers); then the server is scraped on new
connections until its access log shows that each worker has answered a scrape,
and every scrape must show the same totals: the baseline plus the sequence. With
and without METRICS_TOKEN, on SQLite, and on PostgreSQL with Redis (where a
stopped Redis is counted as revocation store errors).
"""

import http.client
import os
import secrets
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.live.test_deploy import private_redis  # noqa: F401 - a fixture
from tests.live.test_multiprocess import Server, gunicorn, server_env
from tests.servers import (
    HOST,
    REQUEST_TIMEOUT,
    booted_workers,
    migrate,
    request,
    sign_up,
)
from tests.services import postgres_database, redis_namespace

WORKERS = 3
THREADS = 6
# How long scrapes may take to reach every worker: a worker that replaces a killed
# one takes a second or more to build the app on a busy machine.
SCRAPE_SECONDS = 30.0
METRICS_TOKEN = "scraper-" + secrets.token_urlsafe(24)
# What the totals are compared on: the counters (not their _created times).
COUNTERS = (
    "http_requests_total",
    "auth_token_rejections_total",
    "auth_logins_total",
    "auth_refresh_total",
    "rate_limit_hits_total",
    "revocation_store_errors_total",
    "http_request_duration_seconds_count",
)


def scrape(server: Server, token: str | None = None) -> tuple[dict, dict]:
    """(the counters, every sample) of one GET /metrics on a new connection."""
    headers = {"Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(HOST, server.port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        status, text = response.status, response.read().decode()
    finally:
        connection.close()
    assert status == 200, text[:300]
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    counters = {key: value for key, value in samples.items() if key[0] in COUNTERS}
    return counters, samples


def scrape_every_worker(server: Server, token: str | None = None) -> list[dict]:
    """Scrape, a few at once (a sync worker takes one connection at a time, so
    the others take the rest), until each worker has answered one (the access
    log says which); return every scrape's counters."""
    offset = server.access_offset()
    scrapes: list[dict] = []
    answered: set[str] = set()
    deadline = time.monotonic() + SCRAPE_SECONDS
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        while time.monotonic() < deadline:
            batch = pool.map(lambda _: scrape(server, token)[0], range(WORKERS))
            scrapes.extend(batch)
            answered = _metrics_pids(server, offset, len(scrapes))
            if answered >= server.workers:
                return scrapes
            time.sleep(0.05)
    pytest.fail(f"{len(scrapes)} scrapes reached only workers {sorted(answered)}")


def _metrics_pids(server: Server, offset: int, count: int) -> set[str]:
    """The workers that answered the last `count` scrapes (waits for the log)."""
    deadline = time.monotonic() + 5.0
    while True:
        lines = [
            pid
            for pid, status, method, path in server.access_lines(offset)
            if (method, path, status) == ("GET", "/metrics", "200")
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return set(lines)
        time.sleep(0.05)


def total(method: str, route: str, status: int) -> tuple:
    labels = {"method": method, "route": route, "status": str(status)}
    return ("http_requests_total", tuple(sorted(labels.items())))


def counter(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items())))


def plus(baseline: dict, expected: Counter) -> dict:
    """The baseline with the expected increments added."""
    result = dict(baseline)
    for key, increment in expected.items():
        result[key] = result.get(key, 0.0) + increment
    return result


def run_sequence(server: Server, tokens: dict) -> Counter:
    """A known mix of requests, from THREADS at once; what it must add."""
    calls = (
        [("GET", "/me", tokens["access_token"])] * 24
        + [("GET", "/me", None)] * 9
        + [("GET", "/me", "not.a.token")] * 6
        + [("GET", "/no/such/path", None)] * 6
        + [("GET", "/healthz", None)] * 9
    )

    def one(call: tuple) -> int:
        method, path, token = call
        return request(server.base, method, path, token=token).status

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        statuses = Counter(pool.map(one, calls))
    assert statuses == {200: 33, 401: 15, 404: 6}
    expected = Counter(
        {
            total("GET", "/me", 200): 24,
            total("GET", "/me", 401): 15,
            total("GET", "unmatched", 404): 6,
            total("GET", "/healthz", 200): 9,
            counter("auth_token_rejections_total", reason="authorization_required"): 9,
            counter("auth_token_rejections_total", reason="invalid_token"): 6,
        }
    )
    for method, route, count in (
        ("GET", "/me", 39),
        ("GET", "unmatched", 6),
        ("GET", "/healthz", 9),
    ):
        labels = {"method": method, "route": route}
        expected[counter("http_request_duration_seconds_count", **labels)] = count
    return expected


def assert_identical_totals(scrapes: list[dict], expected: dict) -> None:
    for number, counters in enumerate(scrapes):
        assert counters == expected, f"scrape {number} of {len(scrapes)} differs"


def worker_gauges(samples: dict) -> set[str]:
    """The pids that the per-worker memory gauge shows."""
    return {
        dict(labels)["pid"]
        for name, labels in samples
        if name == "process_resident_memory_bytes"
    }


@pytest.mark.parametrize("token", [None, METRICS_TOKEN], ids=["public", "token"])
def test_every_scrape_shows_the_whole_servers_exact_totals(tmp_path, token):
    env = server_env(f"sqlite:///{tmp_path / 'app.db'}", "database")
    if token:
        env["METRICS_TOKEN"] = token
    migrate(env)
    with gunicorn(env, tmp_path, "metrics", workers=WORKERS) as server:
        if token:
            refused = request(server.base, "GET", "/metrics")
            assert refused.status == 401
            assert refused.error == "authorization_required"
            assert set(refused.body) == {"code", "status", "message", "error"}
            wrong = request(server.base, "GET", "/metrics", token="guess")
            assert (wrong.status, wrong.error) == (401, "authorization_required")
        _, tokens = sign_up(server.base, "metrics-user")
        baseline = scrape(server, token)[0]

        expected = plus(baseline, run_sequence(server, tokens))

        scrapes = scrape_every_worker(server, token)
        assert_identical_totals(scrapes, expected)
        # Each worker's own CPU and memory, and only the workers'.
        samples = scrape(server, token)[1]
        assert worker_gauges(samples) == server.workers
        # The sequence itself was served by more than one worker.
        assert len({pid for pid, *_ in server.access_lines(0)}) == WORKERS


def test_a_dead_workers_counts_stay_and_its_gauges_go(tmp_path):
    env = server_env(f"sqlite:///{tmp_path / 'app.db'}", "database")
    migrate(env)
    with gunicorn(env, tmp_path, "metrics", workers=WORKERS) as server:
        _, tokens = sign_up(server.base, "metrics-user")
        expected = plus(scrape(server)[0], run_sequence(server, tokens))
        assert_identical_totals(scrape_every_worker(server), expected)
        victim = sorted(server.workers)[0]

        os.kill(int(victim), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            booted = booted_workers(server.error_log)
            if len(booted) > WORKERS:
                break
            time.sleep(0.1)
        server.workers = booted_workers(server.error_log) - {victim}
        assert len(server.workers) == WORKERS

        # The killed worker's requests are still in every scrape's totals...
        assert_identical_totals(scrape_every_worker(server), expected)
        # ...but its CPU and memory are not: only the live workers' are shown.
        assert worker_gauges(scrape(server)[1]) == server.workers


def test_on_postgresql_and_redis_the_totals_hold_and_store_errors_count(
    tmp_path,
    private_redis,  # noqa: F811 - the fixture imported above
):
    with postgres_database() as database_url, redis_namespace() as (url, prefix, _):
        env = server_env(database_url, "redis", (url, prefix))
        env["REFRESH_REUSE_GRACE_SECONDS"] = "0"
        migrate(env)
        with gunicorn(env, tmp_path, "shared", workers=WORKERS) as server:
            _, tokens = sign_up(server.base, "metrics-user")
            baseline = scrape(server)[0]
            expected = run_sequence(server, tokens)
            first = request(
                server.base, "POST", "/refresh", token=tokens["refresh_token"]
            )
            reused = request(
                server.base, "POST", "/refresh", token=tokens["refresh_token"]
            )
            assert first.status == 200
            assert (reused.status, reused.error) == (401, "token_revoked")
            expected.update(
                {
                    total("POST", "/refresh", 200): 1,
                    total("POST", "/refresh", 401): 1,
                    counter(
                        "http_request_duration_seconds_count",
                        method="POST",
                        route="/refresh",
                    ): 2,
                    counter("auth_refresh_total", outcome="rotated"): 1,
                    counter("auth_refresh_total", outcome="reuse_detected"): 1,
                    counter("auth_token_rejections_total", reason="token_revoked"): 1,
                }
            )

            assert_identical_totals(
                scrape_every_worker(server), plus(baseline, expected)
            )

    # A revocation store that stops answering: each refused request is counted,
    # whichever worker it reached.
    env = server_env(
        f"sqlite:///{tmp_path / 'outage.db'}", "redis", (private_redis.url, "m:")
    )
    migrate(env)
    with gunicorn(env, tmp_path, "outage", workers=WORKERS) as server:
        _, tokens = sign_up(server.base, "metrics-user")
        baseline = scrape(server)[0]
        private_redis.stop()

        def me(_: int) -> tuple[int, str | None]:
            reply = request(server.base, "GET", "/me", token=tokens["access_token"])
            return reply.status, reply.error

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            replies = Counter(pool.map(me, range(12)))
        assert replies == {(503, "service_unavailable"): 12}

        scrapes = scrape_every_worker(server)
        for counters in scrapes:
            assert counters[counter("revocation_store_errors_total")] == (
                baseline.get(counter("revocation_store_errors_total"), 0) + 12
            )
            assert counters[total("GET", "/me", 503)] == 12
