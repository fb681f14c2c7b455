"""Real PostgreSQL and Redis for the tests that need them, and the programs the
tests run (chromium, nginx, redis-server).

On a developer's machine without them those tests skip, saying why; with CI set
they fail instead, so CI can never go green without having run them.
"""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unavailable(service: str, reason: str) -> None:
    """Skip locally, fail in CI."""
    message = f"{service} is not reachable ({reason})."
    if os.environ.get("CI"):
        pytest.fail(message + " CI must run these tests: start the service.")
    pytest.skip(message + " Start it to run these tests.")


def program(*names: str, package: str, tests: str) -> str:
    """The path of the first of `names` on PATH or in /usr/sbin; skips `tests`
    locally without it, fails in CI."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin")
        if path is not None:
            return path
    message = f"{names[0]} is not installed (apt-get install {package})."
    if os.environ.get("CI"):
        pytest.fail(f"{message} CI must run {tests}.")
    pytest.skip(message)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a throw-away PostgreSQL database and yield its URL."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        admin.dispose()
        unavailable(f"PostgreSQL at {make_url(POSTGRES_URL).host}", str(exc)[:200])
    try:
        url = make_url(POSTGRES_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_namespace() -> Iterator[tuple[str, str, redis.Redis]]:
    """Yield (url, key prefix, client) for a throw-away key namespace in Redis."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        unavailable(f"Redis at {REDIS_URL}", str(exc)[:200])
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    try:
        yield REDIS_URL, prefix, client
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


# Where Debian's postgresql-NN packages put initdb, pg_ctl and postgres.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
CLUSTER_TIMEOUT = 30  # seconds, for initdb and for each start and stop


@dataclass
class PostgresCluster:
    """A PostgreSQL server of the test's own on a loopback port, which the test
    may crash (`kill`) and start again (`start`)."""

    bin: Path
    directory: Path  # holds the data and the log
    port: int
    run_as: list[str] = field(default_factory=list)  # runuser, when root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=CLUSTER_TIMEOUT + 5,
            check=False,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            # TCP only: a Unix socket's lock file would name the killed postmaster too.
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            "-c unix_socket_directories='' "
            # A crash of the server process, never of the machine: fsync adds
            # nothing to what the test sees, only time.
            "-c fsync=off -c max_connections=60 -c shared_buffers=16MB"
        )
        result = self.pg_ctl(
            "start",
            "-w",
            "-t",
            str(CLUSTER_TIMEOUT),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
        )
        assert result.returncode == 0, f"{result.stderr}\n{self.log_tail()}"

    def kill(self) -> None:
        """SIGKILL the postmaster (its pid from postmaster.pid), as a crash does,
        and wait until its children (which notice and exit) are gone: they hold
        the shared memory a restart needs."""
        lock = self.data / "postmaster.pid"
        pid = int(lock.read_text().split()[0])
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        for child in [pid, *children]:
            while _alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert not any(map(_alive, [pid, *children])), "PostgreSQL did not die"
        # The stale lock file names the dead postmaster; until init reaps it, the
        # zombie would pass for a running server and refuse the restart.
        lock.unlink()

    def stop(self) -> None:
        """Stop the server if it runs (immediate: nothing to keep)."""
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "immediate", "-t", str(CLUSTER_TIMEOUT))

    def log_tail(self, size: int = 3000) -> str:
        log = self.directory / "server.log"
        return log.read_text(errors="replace")[-size:] if log.exists() else ""


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after it.
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has exited: only its parent has to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextmanager
def postgres_cluster(port: int) -> Iterator[PostgresCluster]:
    """initdb a throw-away cluster, start it on `port`; always stop and remove it.

    initdb refuses to run as root: then every program runs as the `postgres`
    user (runuser), in a directory that user owns.
    """
    binaries = sorted(glob.glob(POSTGRES_BIN_GLOB), key=_version)
    run_as: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin")
        run_as = [runuser, "-u", "postgres", "--"] if runuser else []
    if not binaries or (os.geteuid() == 0 and not run_as):
        message = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        unavailable("A PostgreSQL cluster of the test's own", message)
    directory = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    if run_as:
        shutil.chown(directory, "postgres", "postgres")
    cluster = PostgresCluster(Path(binaries[-1]), directory, port, run_as)
    try:
        result = subprocess.run(
            [*run_as, str(cluster.bin / "initdb"), "-D", str(cluster.data)]
            + ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            capture_output=True,
            text=True,
            timeout=CLUSTER_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _version(path: str) -> int:
    """The major version in /usr/lib/postgresql/NN/bin."""
    return int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0


def problems() -> dict[str, str | None]:
    """Each service and why it cannot be used (None when it answers)."""
    found: dict[str, str | None] = {}
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        found[f"PostgreSQL at {make_url(POSTGRES_URL).host}"] = None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        found[f"PostgreSQL at {make_url(POSTGRES_URL).host}"] = str(exc)[:200]
    finally:
        engine.dispose()
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        found[f"Redis at {REDIS_URL}"] = None
    except redis.RedisError as exc:
        found[f"Redis at {REDIS_URL}"] = str(exc)[:200]
    finally:
        client.close()
    return found


if __name__ == "__main__":
    # scripts/test.sh asks before a full run: exit 1 when a service is missing.
    missing = {name: why for name, why in problems().items() if why}
    for name, why in missing.items():
        print(f"    {name} is not reachable ({why}): its tests will skip.")
    raise SystemExit(1 if missing else 0)
