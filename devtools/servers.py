"""Live servers: free ports, one HTTP helper (and signing a user up with it),
migrations, and gunicorn started, awaited and stopped.

For whatever runs the production entry point (`gunicorn "app:create_app()"`, or
another WSGI app) as a subprocess on loopback and talks to it with the standard
library: the live tests (through tests/servers.py) and the benchmark (bench/).
"""

import http.client
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
# The key that seals TOTP secrets in production servers this process starts (one
# for all of them: servers that share a database share it).
MFA_KEY = Fernet.generate_key().decode()
BIN = Path(sys.executable).parent  # the venv running this (not resolved)
APP = "app:create_app()"
HOST = "127.0.0.1"
START_DEADLINE = 20.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
# gunicorn >= 25 opens a control socket at one fixed path in $HOME by default:
# concurrent servers would share it (the app does not use it).
NO_CONTROL_SOCKET = ("--no-control-socket",)
BOOTED = re.compile(r"Booting worker with pid: (\d+)")


class NotReady(RuntimeError):
    """A server exited early, or did not come up in time (the message says which,
    with its log's tail)."""


def free_port() -> int:
    """A port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def base_url(port: int) -> str:
    """The base URL of a server on loopback at `port`."""
    return f"http://{HOST}:{port}"


@dataclass
class Reply:
    """What a server answered: the status, the parsed body and the headers."""

    status: int
    body: object
    headers: dict[str, str]

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


def request(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body=None,
    headers: dict[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> Reply:
    """One request to `base` (http://host:port, and any path prefix) + `path` on
    its own connection (Connection: close, no keep-alive), with `token` as the
    bearer token, `body` sent as JSON and `headers` besides; the answer read by
    reply_of."""
    headers = {"Connection": "close", "Accept": "application/json", **(headers or {})}
    data = None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(
            method, url.path.rstrip("/") + path, body=data, headers=headers
        )
        return reply_of(connection.getresponse())
    finally:
        connection.close()


def reply_of(response: http.client.HTTPResponse) -> Reply:
    """A response read whole: the body parsed as JSON (None when empty,
    {"unparsed": ...} when not JSON), the headers keyed in lower case."""
    raw = response.read()
    reply_headers = {k.lower(): v for k, v in response.getheaders()}
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = {"unparsed": raw[:200].decode(errors="replace")}
    return Reply(response.status, parsed, reply_headers)


def register(base: str, username: str, password: str) -> dict:
    """POST /register, asserting 201; the user as answered."""
    body = {"username": username, "password": password}
    reply = request(base, "POST", "/register", body=body)
    assert reply.status == 201, f"POST /register: {reply.status} {reply.body}"
    return reply.body


def login(
    base: str, username: str, password: str, headers: dict[str, str] | None = None
) -> dict:
    """POST /login (with `headers` besides: a DPoP proof), asserting 200; the
    token pair."""
    body = {"username": username, "password": password}
    reply = request(base, "POST", "/login", body=body, headers=headers)
    assert reply.status == 200, f"POST /login: {reply.status} {reply.body}"
    return reply.body


def sign_up(base: str, username: str, password: str) -> tuple[dict, dict]:
    """Register and log in: (the user, the token pair)."""
    return register(base, username, password), login(base, username, password)


def booted_workers(log: Path) -> set[str]:
    """The pids of the workers gunicorn logged as booted."""
    return set(BOOTED.findall(log.read_text(errors="replace")))


def migrate(env: dict, tree: Path = REPO) -> None:
    """`flask --app app db upgrade` in a subprocess, as deployments do (in `tree`,
    the repository or a checkout of another revision of it)."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "db", "upgrade"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def stop(*processes: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to all first (they shut down side by side), then wait, then kill."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@contextmanager
def gunicorn(
    env: dict,
    stdout: Path,
    stderr: Path | None = None,
    args: Sequence[str] = NO_CONTROL_SOCKET,
    app: str = APP,
    tree: Path = REPO,
) -> Iterator[subprocess.Popen]:
    """`gunicorn ARGS APP` in `tree`, the repository by default (so under its
    gunicorn.conf.py), with `env`; output to `stdout` (and `stderr`, or the same
    file). Always stopped (SIGTERM, then kill).
    """
    with stdout.open("wb") as out:
        err_file = stderr.open("wb") if stderr is not None else None
        try:
            process = subprocess.Popen(
                [str(BIN / "gunicorn"), *args, app],
                cwd=tree,
                env=env,
                stdout=out,
                stderr=err_file if err_file is not None else subprocess.STDOUT,
            )
            try:
                yield process
            finally:
                stop(process)
        finally:
            if err_file is not None:
                err_file.close()


def wait_until_ready(
    process: subprocess.Popen,
    ready: Callable[[], bool],
    describe: Callable[[], str],
    deadline: float = START_DEADLINE,
    interval: float = 0.1,
) -> None:
    """Poll `ready()` until it is true (connection errors count as not yet); raise
    NotReady with `describe()` (e.g. the log's tail) if the server exits or time
    runs out."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise NotReady(f"gunicorn exited early:\n{describe()}")
        try:
            if ready():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise NotReady(f"gunicorn not ready in {deadline}s:\n{describe()}")


@contextmanager
def serving(
    env: dict,
    log: Path,
    *,
    stdout: Path | None = None,
    app: str = APP,
    ready_path: str = "/healthz",
    workers: int = 0,
    args: Sequence[str] = NO_CONTROL_SOCKET,
    deadline: float = START_DEADLINE,
    tree: Path = REPO,
) -> Iterator[subprocess.Popen]:
    """gunicorn serving `app` on env["PORT"] (its stderr to `log`, and its stdout
    too unless `stdout` is given), once `ready_path` answers 200 and `workers`
    workers have booted; the server is always stopped."""
    base = base_url(int(env["PORT"]))

    def ready() -> bool:
        if request(base, "GET", ready_path, timeout=2).status != 200:
            return False
        return len(booted_workers(log)) >= workers

    outputs = (log, None) if stdout is None else (stdout, log)
    with gunicorn(env, *outputs, args=args, app=app, tree=tree) as process:
        wait_until_ready(
            process, ready, lambda: log.read_text(errors="replace")[-3000:], deadline
        )
        yield process
