"""Deployment, in process: the probes, gunicorn's settings (gunicorn.conf.py), the
Dockerfile and the compose file. The outages and the entrypoint are in
tests/live/test_deploy.py.
"""

import json
import os
import re
import socket
from types import SimpleNamespace
from unittest.mock import MagicMock

import gunicorn.util
import pytest
import yaml
from gunicorn.config import Config
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.util import load_class

from core import ConfigError, db, workers
from tests.helpers import REPO

# --- probes ---------------------------------------------------------------------


def test_healthz_is_public_and_checks_nothing(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Request-ID"]


def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "blocklist": "ok"},
    }


# --- gunicorn -------------------------------------------------------------------


def _gunicorn_settings(monkeypatch, **env) -> dict:
    for name in (
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "PORT",
        "HOST",
        "GUNICORN_PRELOAD",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings: dict = {}
    exec((REPO / "gunicorn.conf.py").read_text(), settings)
    return settings


def test_gunicorn_settings_come_from_the_environment(monkeypatch):
    settings = _gunicorn_settings(
        monkeypatch, WEB_CONCURRENCY="3", GUNICORN_THREADS="4", PORT="9000"
    )
    assert settings["workers"] == 3
    assert settings["threads"] == 4
    assert settings["bind"] == "0.0.0.0:9000"
    assert settings["graceful_timeout"] == 30
    assert settings["timeout"] == 30


def test_gunicorn_defaults_follow_the_cpu_count(monkeypatch):
    settings = _gunicorn_settings(monkeypatch)
    assert settings["workers"] == min(2 * os.cpu_count() + 1, 8)
    assert settings["threads"] == 1
    assert settings["bind"] == "0.0.0.0:8000"


def test_a_gunicorn_setting_that_does_not_parse_stops_the_server(monkeypatch):
    with pytest.raises(ConfigError) as refused:
        _gunicorn_settings(monkeypatch, WEB_CONCURRENCY="many", GUNICORN_PRELOAD="2")
    assert str(refused.value) == (
        "WEB_CONCURRENCY must be a whole number, got 'many'. "
        "GUNICORN_PRELOAD must be true or false, got '2'."
    )


@pytest.mark.parametrize(
    ("threads", "worker_class"),
    [("1", "core.workers.SyncWorker"), ("2", "core.workers.ThreadWorker")],
)
def test_the_workers_are_ours_sync_or_threaded(monkeypatch, threads, worker_class):
    settings = _gunicorn_settings(monkeypatch, GUNICORN_THREADS=threads)
    assert settings["worker_class"] == worker_class
    assert issubclass(load_class(worker_class), workers.EnvelopeErrors)


def _refused(monkeypatch, exc: Exception, written: bytes | None = None) -> bytes:
    """What a sync worker sends the client for `exc` (gunicorn's page replaced by
    `written`, if given), read from the other end of a socket pair."""
    if written is not None:
        monkeypatch.setattr(
            gunicorn.util, "write_error", lambda sock, *_: sock.sendall(written)
        )
    worker = workers.SyncWorker.__new__(workers.SyncWorker)
    worker.cfg, worker.log = Config(), MagicMock()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        worker.handle_error(None, ours, ("127.0.0.1", 5000), exc)
        ours.shutdown(socket.SHUT_WR)
        return theirs.makefile("rb").read()


def test_a_worker_answers_what_gunicorn_refuses_in_the_envelope(monkeypatch):
    answer = _refused(monkeypatch, LimitRequestHeaders("limit request headers fields"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"Connection: close",
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
    ]
    assert json.loads(body) == {
        "code": 431,
        "status": "Request Header Fields Too Large",
        "message": "The request's headers are over the server's limits: at most "
        "100 headers of at most 8190 bytes each.",
        "error": "request_header_fields_too_large",
    }


def test_a_worker_answers_an_unexpected_error_as_a_500_envelope(monkeypatch):
    answer = _refused(monkeypatch, RuntimeError("secret internals"))
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["error"] == "internal_error"
    assert b"secret" not in answer


@pytest.mark.parametrize("written", [b"", b"not an HTTP response"])
def test_a_worker_passes_on_what_it_cannot_read_as_a_response(monkeypatch, written):
    assert _refused(monkeypatch, LimitRequestLine(5000, 4094), written) == written


def test_the_app_is_built_in_every_worker_unless_preloading_is_asked_for(monkeypatch):
    assert _gunicorn_settings(monkeypatch)["preload_app"] is False
    assert _gunicorn_settings(monkeypatch, GUNICORN_PRELOAD="1")["preload_app"] is True


def test_a_forked_worker_opens_its_own_database_connections(monkeypatch, app):
    """post_fork drops the connections the worker inherited (without closing them:
    they belong to the parent) so the worker opens its own."""
    post_fork = _gunicorn_settings(monkeypatch)["post_fork"]
    with app.app_context():
        with db.engine.connect() as connection:
            inherited = connection.connection.dbapi_connection
        server = SimpleNamespace(
            app=SimpleNamespace(wsgi=lambda: app), cfg=SimpleNamespace(preload_app=True)
        )

        post_fork(server, worker=None)

        with db.engine.connect() as connection:
            assert connection.connection.dbapi_connection is not inherited
        inherited.execute("SELECT 1")  # the parent's connection is still open


def test_post_fork_leaves_other_apps_alone(monkeypatch):
    """The bench's bare app runs under the same settings, with no database."""
    from flask import Flask

    post_fork = _gunicorn_settings(monkeypatch)["post_fork"]
    server = SimpleNamespace(
        app=SimpleNamespace(wsgi=lambda: Flask("bare")),
        cfg=SimpleNamespace(preload_app=True),
    )

    post_fork(server, worker=None)


# --- Dockerfile and compose -----------------------------------------------------


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"(?m)^FROM ", dockerfile)[1:]


def test_the_dockerfile_is_multi_stage_slim_and_non_root():
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert len(stages) == 2
    assert all(stage.startswith("python:3.12-slim") for stage in stages)
    final = stages[-1]
    assert re.search(r"(?m)^USER app$", final)
    assert "useradd" in final
    assert re.search(r"(?m)^HEALTHCHECK .*", final)
    assert "/healthz" in final
    assert 'ENTRYPOINT ["./docker-entrypoint.sh"]' in final
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in final, tool
    assert "COPY --from=build /opt/venv /opt/venv" in final


def test_the_compose_file_runs_the_app_on_postgres_and_redis():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"app", "db", "redis", "prometheus"}
    app = services["app"]
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert app["environment"]["APP_ENV"] == "production"
    assert "JWT_SECRET_KEY" in app["environment"]
    assert "MFA_ENCRYPTION_KEY" in app["environment"]
    for dependency in ("db", "redis"):
        assert app["depends_on"][dependency] == {"condition": "service_healthy"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["db"]["volumes"] and services["redis"]["volumes"]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "prometheus-data"}


def test_the_compose_files_monitoring_profile_scrapes_the_app():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    prometheus = compose["services"]["prometheus"]
    # Only with --profile monitoring; the app's own services always start.
    assert prometheus["profiles"] == ["monitoring"]
    assert [p for s in compose["services"].values() for p in s.get("profiles", [])] == [
        "monitoring"
    ]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    config = yaml.safe_load(compose["configs"]["prometheus"]["content"])
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["app:8000"]}]
    # The scraper sends the token the app is given.
    assert job["authorization"]["credentials"] == "${METRICS_TOKEN:-unset}"
    assert compose["services"]["app"]["environment"]["METRICS_TOKEN"] == (
        "${METRICS_TOKEN:-}"
    )
