"""GET /metrics in one process: what is counted, with which labels, and who may
read it. The metrics are the process's own, shared by every app a test builds, so
each test compares a scrape before and after what it does."""

import logging
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.helpers import (
    MFA_KEY,
    PASSWORD,
    AuthActions,
    assert_error,
    bearer,
    run_python,
)

METRICS_TOKEN = "a-scraper-secret-0123456789"


def scrape(client, **headers) -> dict[tuple, float]:
    """Every sample of GET /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


class Delta:
    """What changed in the metrics between the scrape it starts with and `now()`."""

    def __init__(self, client, **headers) -> None:
        self._client = client
        self._headers = headers
        self._before = scrape(client, **headers)

    def now(self) -> dict[tuple, float]:
        after = scrape(self._client, **self._headers)
        return {
            key: value - self._before.get(key, 0.0)
            for key, value in after.items()
            if value != self._before.get(key, 0.0) and not key[0].endswith("_created")
        }


def requests(method: str, route: str, status: int) -> tuple:
    return (
        "http_requests_total",
        (("method", method), ("route", route), ("status", str(status))),
    )


def counted(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items())))


def only(samples: dict[tuple, float], name: str) -> dict[tuple, float]:
    return {key: value for key, value in samples.items() if key[0] == name}


# --- the format -------------------------------------------------------------------


def test_metrics_are_the_prometheus_text_format(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    # One process here (no PROMETHEUS_MULTIPROC_DIR): its own collector.
    assert "process_cpu_seconds_total" in text
    assert "process_resident_memory_bytes" in text


def test_a_scraper_that_asks_for_openmetrics_gets_it(client):
    response = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.status_code == 200
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


# --- requests ---------------------------------------------------------------------


def test_requests_are_counted_by_method_url_rule_and_status(client, headers, store):
    delta = Delta(client)
    item = client.post(
        "/item",
        json={"name": "Lamp", "price": 9.5, "store_id": store["id"]},
        headers=headers,
    ).get_json()
    client.get(f"/item/{item['id']}", headers=headers)
    client.get(f"/item/{item['id']}", headers=headers)
    client.get("/item/999999", headers=headers)
    client.get("/healthz")

    changed = delta.now()
    assert only(changed, "http_requests_total") == {
        requests("POST", "/item", 201): 1,
        requests("GET", "/item/<id:item_id>", 200): 2,
        requests("GET", "/item/<id:item_id>", 404): 1,
        requests("GET", "/healthz", 200): 1,
    }
    assert only(changed, "http_request_duration_seconds_count") == {
        counted("http_request_duration_seconds_count", method="POST", route="/item"): 1,
        counted(
            "http_request_duration_seconds_count",
            method="GET",
            route="/item/<id:item_id>",
        ): 3,
        counted(
            "http_request_duration_seconds_count", method="GET", route="/healthz"
        ): 1,
    }


def test_unknown_paths_are_one_route_whatever_the_path(client):
    delta = Delta(client)
    client.get("/no/such/path")
    client.get("/another-path-an-attacker-chose-12345")
    client.post("/healthz")  # a known path with a wrong method (405)

    changed = delta.now()

    assert changed[requests("GET", "unmatched", 404)] == 2
    assert changed[requests("POST", "unmatched", 405)] == 1
    assert not [key for key in changed if "no/such" in str(key) or "12345" in str(key)]


def test_a_method_outside_http_counts_as_other(client):
    delta = Delta(client)
    response = client.open("/healthz", method="BREW")

    assert response.status_code == 405
    assert delta.now()[requests("other", "unmatched", 405)] == 1


def test_the_scrapes_themselves_are_not_counted(client):
    before = scrape(client)
    scrape(client)
    after = scrape(client)

    assert not [key for key in after if "/metrics" in str(key)]
    assert {
        key: value for key, value in after.items() if key[0] == "http_requests_total"
    } == {
        key: value for key, value in before.items() if key[0] == "http_requests_total"
    }


def test_durations_fall_in_the_buckets_they_belong_to(client):
    delta = Delta(client)
    client.get("/healthz")

    changed = delta.now()
    labels = {"method": "GET", "route": "/healthz"}
    assert changed[counted("http_request_duration_seconds_count", **labels)] == 1
    assert 0 < changed[counted("http_request_duration_seconds_sum", **labels)] < 5
    assert (
        changed[counted("http_request_duration_seconds_bucket", le="5.0", **labels)]
        == 1
    )


# --- tokens, logins, refreshes ----------------------------------------------------


def test_each_token_rejection_is_counted_by_its_error_code(app, client, auth, store):
    user_id, tokens = auth.user("bob")
    other = auth.login("bob")
    client.post("/logout", headers=bearer(other["access_token"]))
    non_fresh = auth.access_token(str(user_id), fresh=False)
    delta = Delta(client)

    assert client.get("/me").status_code == 401
    assert (
        client.get(
            "/me", headers=bearer(auth.expired_access_token(str(user_id)))
        ).status_code
        == 401
    )
    assert client.get("/me", headers=bearer(other["access_token"])).status_code == 401
    assert client.get("/me", headers=bearer("not.a.token")).status_code == 401
    item = {"name": "Lamp", "price": 9.5, "store_id": store["id"]}
    response = client.post("/item", json=item, headers=bearer(non_fresh))
    assert response.status_code == 401
    # A failed login is a 401 too, but not a token's: auth_logins_total counts it.
    assert (
        client.post(
            "/login", json={"username": "bob", "password": "wrong password"}
        ).status_code
        == 401
    )

    changed = delta.now()
    rejections = {
        dict(key[1])["reason"]: value
        for key, value in changed.items()
        if key[0] == "auth_token_rejections_total"
    }
    assert rejections == {
        "authorization_required": 1,
        "token_expired": 1,
        "token_revoked": 1,
        "invalid_token": 1,
        "fresh_token_required": 1,
    }
    assert changed[counted("auth_logins_total", outcome="failure")] == 1


def test_logins_are_counted_by_outcome_at_login_and_at_the_token_endpoint(client, auth):
    auth.register("carol")
    delta = Delta(client)
    auth.login("carol")
    client.post("/login", json={"username": "carol", "password": "not it at all"})
    client.post("/login", json={"username": "nobody", "password": PASSWORD})
    response = client.post(
        "/token",
        data={"grant_type": "password", "username": "carol", "password": PASSWORD},
    )
    assert response.status_code == 200

    changed = delta.now()
    assert changed[counted("auth_logins_total", outcome="success")] == 2
    assert changed[counted("auth_logins_total", outcome="failure")] == 2


def test_refreshes_are_counted_as_rotated_retried_or_reused(client, auth):
    _, tokens = auth.user("dave")
    delta = Delta(client)

    first = auth.refresh(tokens["refresh_token"])
    # Within the grace window the same token again is a retry: one chain goes on.
    retry = auth.refresh(tokens["refresh_token"])
    assert (first.status_code, retry.status_code) == (200, 200)
    # The winner's successor rotates; then the spent one again is a reuse.
    assert auth.refresh(first.get_json()["refresh_token"]).status_code == 200
    assert auth.refresh(tokens["refresh_token"]).status_code == 401

    changed = delta.now()
    outcomes = {
        dict(key[1])["outcome"]: value
        for key, value in changed.items()
        if key[0] == "auth_refresh_total"
    }
    assert outcomes == {"rotated": 2, "retry": 1, "reuse_detected": 1}
    assert changed[counted("auth_token_rejections_total", reason="token_revoked")] == 1


def test_the_token_endpoints_refresh_grant_is_counted_too(client, auth):
    _, tokens = auth.user("erin")
    delta = Delta(client)
    response = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )

    assert response.status_code == 200
    assert delta.now()[counted("auth_refresh_total", outcome="rotated")] == 1


# --- rate limits and the revocation store -----------------------------------------


@pytest.fixture
def limited_config(app_config):
    # Flask-Limiter's one Limiter keeps the default limits of the first app that
    # set any, for the whole process: every test with RATELIMIT_DEFAULT uses the
    # same one (test_rate_limits.py's), or the order of the tests would matter.
    app_config.update(
        RATELIMIT_ENABLED=True,
        RATELIMIT_LOGIN="2 per minute",
        RATELIMIT_DEFAULT="3 per minute",
    )
    return app_config


def test_rate_limit_hits_are_counted_by_limit_and_metrics_are_never_limited(
    limited_config,
):
    app = create_app(limited_config)
    client = app.test_client()
    delta = Delta(client)
    for _ in range(3):
        client.post("/login", json={"username": "frank", "password": PASSWORD})
    for _ in range(5):
        # RATELIMIT_DEFAULT applies to every route without a limit of its own...
        client.get("/healthz")

    changed = delta.now()

    assert changed[counted("rate_limit_hits_total", limit="2 per 1 minute")] == 1
    assert changed[counted("rate_limit_hits_total", limit="3 per 1 minute")] == 2
    # ...but not to /metrics: Delta scraped twice, and scrape() asserted a 200.
    assert client.get("/metrics").status_code == 200


def test_revocation_store_errors_are_counted(app_config):
    app_config.update(
        BLOCKLIST_BACKEND="redis",
        REDIS_URL="redis://127.0.0.1:1/0",
        REDIS_SOCKET_TIMEOUT=0.5,
    )
    app = create_app(app_config)
    client = app.test_client()
    token = AuthActions(app, client).access_token("1")
    delta = Delta(client)

    response = client.get("/me", headers=bearer(token))

    assert_error(
        response, 503, "service_unavailable", "The revocation store is unavailable."
    )
    changed = delta.now()
    assert changed[counted("revocation_store_errors_total")] == 1
    assert changed[requests("GET", "/me", 503)] == 1


# --- who may read them ------------------------------------------------------------


@pytest.fixture
def token_config(app_config):
    app_config["METRICS_TOKEN"] = METRICS_TOKEN
    return app_config


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-secret",
        f"Basic {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
        "Bearer",
    ],
)
def test_with_a_metrics_token_anything_else_gets_a_401(token_config, authorization):
    client = create_app(token_config).test_client()
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.get("/metrics", headers=headers)

    body = assert_error(
        response,
        401,
        "authorization_required",
        "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.",
    )
    assert set(body) == {"code", "status", "message", "error"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "http_requests_total" not in response.get_data(as_text=True)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_with_a_metrics_token_the_token_reads_them(token_config, scheme):
    client = create_app(token_config).test_client()

    response = client.get(
        "/metrics", headers={"Authorization": f"{scheme} {METRICS_TOKEN}"}
    )

    assert response.status_code == 200
    assert "# TYPE http_requests_total counter" in response.get_data(as_text=True)


def test_metrics_enabled_false_removes_the_endpoint_and_the_counting(app_config):
    app_config["METRICS_ENABLED"] = False
    client = create_app(app_config).test_client()
    counting = create_app({**app_config, "METRICS_ENABLED": True}).test_client()
    delta = Delta(counting)

    client.get("/healthz")

    assert_error(client.get("/metrics"), 404, "not_found")
    assert [key for key in delta.now() if key[0].startswith("http_")] == []


def test_metrics_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]

    assert "/metrics" not in paths
    assert paths  # the document itself is there


# --- start-up ---------------------------------------------------------------------


@pytest.fixture
def production_config(app_config):
    app_config["APP_ENV"] = "production"
    app_config["MFA_ENCRYPTION_KEY"] = MFA_KEY
    app_config["TRUSTED_HOSTS"] = ["localhost"]  # the test client's Host
    return app_config


def test_production_without_a_metrics_token_warns_that_they_are_public(
    production_config, caplog
):
    with caplog.at_level(logging.WARNING):
        create_app(production_config)

    assert any("METRICS_TOKEN is not set" in r.getMessage() for r in caplog.records)


def test_production_with_a_metrics_token_or_without_metrics_does_not_warn(
    production_config, caplog
):
    with caplog.at_level(logging.WARNING):
        create_app({**production_config, "METRICS_TOKEN": METRICS_TOKEN})
        create_app({**production_config, "METRICS_ENABLED": False})

    assert not any("METRICS_TOKEN" in r.getMessage() for r in caplog.records)


# --- under gunicorn: each worker's own CPU and memory ---------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_copies_its_process_figures_at_most_every_few_seconds(monkeypatch):
    from core.telemetry import metrics

    clock = FakeClock()
    monkeypatch.setattr(metrics.time, "monotonic", clock)
    worker = metrics.WorkerProcess()
    gauges = worker._gauges
    cpu = gauges["process_cpu_seconds_total"]

    worker.refresh()
    first = cpu._value.get()
    assert first > 0
    assert gauges["process_resident_memory_bytes"]._value.get() > 1024 * 1024
    assert gauges["process_start_time_seconds"]._value.get() > 1_600_000_000
    cpu.set(-1)  # so a copy shows
    clock.now += metrics.PROCESS_REFRESH_SECONDS - 0.1
    worker.refresh()
    assert cpu._value.get() == -1  # too soon
    worker.refresh(force=True)
    assert cpu._value.get() >= first
    cpu.set(-1)
    clock.now += metrics.PROCESS_REFRESH_SECONDS
    worker.refresh()
    assert cpu._value.get() >= first


def test_in_multiprocess_mode_a_scrape_adds_up_the_workers_files(
    app, client, monkeypatch, tmp_path
):
    """What a gunicorn worker does (the live tests run it for real): the scrape
    reads the directory's files, after refreshing its own figures."""
    from core.telemetry import endpoint, metrics

    refreshed: list[bool] = []

    class Worker:
        def refresh(self, force: bool = False) -> None:
            refreshed.append(force)

    directory = tmp_path / "metrics"  # tmp_path holds the app's own test.db
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setattr(endpoint, "worker_process", Worker())
    assert metrics.MULTIPROCESS is False  # this process keeps its own values

    assert client.get("/healthz").status_code == 200
    response = client.get("/metrics")

    assert response.status_code == 200
    # An empty directory: no worker has written anything there.
    assert "http_requests_total{" not in response.get_data(as_text=True)
    assert refreshed == [False, True]


GUNICORN_CONF_FIRST = """
import os, runpy, sys
assert "prometheus_client" not in sys.modules
conf = runpy.run_path("gunicorn.conf.py")
from core.telemetry import metrics
directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
print(metrics.MULTIPROCESS, os.path.isdir(directory))
conf["on_exit"](None)
print(os.path.exists(directory))
"""


def test_gunicorn_conf_sets_the_metrics_directory_before_the_metrics_load():
    """gunicorn.conf.py makes a directory and names it before anything imports
    prometheus-client, so the metrics are the whole server's; the server removes
    it when it stops."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = run_python(GUNICORN_CONF_FIRST, env)
    assert result.stdout.split() == ["True", "True", "False"]
