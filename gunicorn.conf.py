"""gunicorn settings from the environment (`gunicorn "app:create_app()"` reads them).

WEB_CONCURRENCY  worker processes       default: 2 x CPU cores + 1, at most 8
GUNICORN_THREADS threads per worker      default: 1 (sync workers)
PORT / HOST      where to listen         default: 0.0.0.0:8000
GUNICORN_TIMEOUT seconds a request may take before its worker is replaced (30)
GUNICORN_PRELOAD 1: build the app once in the master and fork the workers (default: 0)
PROMETHEUS_MULTIPROC_DIR  where the workers keep their metrics (default: a new
                 temporary directory per server, removed when it stops)
GUNICORN_ACCESS_LOG  "-" for gunicorn's own access log, in JSON (default: off,
                 because the app already writes one JSON line per request with
                 its request id and user id; two lines per request help no one)
"""

import glob
import multiprocessing
import os
import shutil
import tempfile

# Metrics of the whole server, whichever worker answers a scrape (core/telemetry/):
# prometheus-client's multiprocess mode keeps each worker's values in files in
# this directory. It must be set before anything imports prometheus-client (the
# imports below do), and the workers inherit it. Set it to choose the directory;
# by default each server gets a new one, removed when the server stops.
OWN_METRICS_DIR = "STORES_API_OWN_METRICS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ[OWN_METRICS_DIR] = os.environ["PROMETHEUS_MULTIPROC_DIR"] = (
        tempfile.mkdtemp(prefix="stores-api-metrics-")
    )

from gunicorn.glogging import Logger  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402

from core.environment import checked, environment  # noqa: E402
from core.telemetry.logs import JSONFormatter  # noqa: E402

_env = environment()
_host = _env.str("HOST", "0.0.0.0")
_port = _env.whole_number("PORT", 8000)
workers = _env.whole_number(
    "WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)
)
threads = _env.whole_number("GUNICORN_THREADS", 1)
timeout = _env.whole_number("GUNICORN_TIMEOUT", 30)
# On SIGTERM, finish what is in flight for up to this long, then stop.
graceful_timeout = _env.whole_number("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Recycle workers now and then, so a slow leak can never take a worker down.
max_requests = _env.whole_number("GUNICORN_MAX_REQUESTS", 10000)
# GUNICORN_PRELOAD=1 builds the app once, in the master, and forks the workers from
# it: a recycled worker restarts in milliseconds instead of ~2 s of imports, and the
# workers share the master's memory. Off by default: a code change then needs a full
# restart (SIGHUP re-forks the same code), and a stop signal sent in the first
# moments after start can reach a worker before its handlers are set and be lost
# (gunicorn issue #1910), so the stop waits for graceful_timeout.
preload_app = _env.switch("GUNICORN_PRELOAD", False)
accesslog = _env.str("GUNICORN_ACCESS_LOG", "") or None
loglevel = _env.str("LOG_LEVEL", "info").lower()
checked(_env)  # a value that does not parse stops the server here, named

bind = f"{_host}:{_port}"
# Our workers answer gunicorn's own errors (431, 414, 400) in the JSON envelope;
# named explicitly, since gunicorn picks gthread by itself only for "sync".
worker_class = "core.workers.ThreadWorker" if threads > 1 else "core.workers.SyncWorker"
keepalive = 5
max_requests_jitter = max_requests // 10

# gunicorn believes no forwarded header: the app reads them (its ProxyFix), from
# the last TRUSTED_PROXIES hops only, and only values that are what their header
# means (core/urls.py). gunicorn's own defaults would let any process on the host
# (forwarded_allow_ips = 127.0.0.1,::1; every peer on a Unix socket) make a
# request https with X-Forwarded-Proto, -Ssl or -Protocol whatever TRUSTED_PROXIES
# says, and set SCRIPT_NAME and PATH_INFO from headers of those names.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""

access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
errorlog = "-"


class JSONLogger(Logger):
    """gunicorn's own logger, writing JSON lines wherever its logs are sent."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JSONFormatter())


logger_class = JSONLogger


def on_starting(server) -> None:
    """Start the metrics from zero: values a previous server left are not ours."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def when_ready(server) -> None:
    """Warn, in gunicorn's JSON log, when the workers count the rate limits each in
    its own memory: every budget is then the number of workers times its number."""
    from dotenv import load_dotenv

    from core.settings import ConfigError, load_settings, per_worker_limits_warning

    load_dotenv()  # as each worker's create_app() does
    try:
        settings = load_settings()
    except ConfigError:
        return  # each worker refuses to start, and says why
    warning = per_worker_limits_warning(settings.values, server.cfg.workers)
    if warning:
        server.log.warning(warning)


def child_exit(server, worker) -> None:
    """A dead worker's counters stay in the totals; its gauges (CPU, memory) go."""
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory this server made (never one it was given)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if os.environ.get(OWN_METRICS_DIR) == directory:
        shutil.rmtree(directory, ignore_errors=True)


def post_fork(server, worker) -> None:
    """A worker never shares its parent's database connections (SQLAlchemy pools
    are not fork-safe; the app opens none while it is built, this makes it sure)."""
    if not server.cfg.preload_app:
        return  # the worker builds the app itself: there is nothing to inherit
    app = server.app.wsgi()
    database = getattr(app, "extensions", {}).get("sqlalchemy")
    if database is not None:
        with app.app_context():
            for engine in database.engines.values():
                engine.dispose(close=False)


# No runtime control socket: it lives at one fixed path per user, so two servers
# on one host would fight over it, and nothing here needs it.
control_socket_disable = True
