"""A real nginx in front of a live server, mounting the API under /api.

Debian's nginx (`apt-get install nginx`: /usr/sbin/nginx), started by the test in
the foreground with everything it writes (pid, logs, temp files) in the test's
folder, on a free loopback port. The configuration is docs/deployment.md's. On a
machine without nginx the tests that need it skip, saying why; with CI set they
fail instead, as for PostgreSQL and Redis (tests/services.py).
"""

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from textwrap import indent
from urllib.parse import urlsplit

import pytest

from tests.servers import HOST, START_DEADLINE, STOP_TIMEOUT, base_url, free_port
from tests.services import program

PREFIX = "/api"
# docs/deployment.md shows this server block (with the app at 127.0.0.1:8000).
LOCATION = """\
    location /api/ {
        # The trailing slash strips /api: the app sees /me, not /api/me.
        proxy_pass http://UPSTREAM/;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # $http_host keeps the port: the API's absolute URLs are this address.
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Prefix /api;
    }
"""


def nginx_binary() -> str:
    """Debian's nginx; skips locally without it, fails in CI."""
    return program("nginx", package="nginx", tests="the tests behind nginx")


def nginx_config(folder: Path, port: int, upstream: str) -> str:
    """A whole nginx.conf: one server on loopback `port`, the API under /api/."""
    temp = "\n".join(
        f"    {name}_temp_path {folder / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as nobody, who cannot enter the test's
    # private folder (its temp files); elsewhere the directive is ignored.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} info;\n"
        "events { worker_connections 128; }\n"
        "http {\n"
        f"    access_log {folder / 'access.log'};\n"
        f"{temp}\n"
        "    server {\n"
        f"        listen {HOST}:{port};\n"
        + indent(LOCATION.replace("UPSTREAM", upstream), "    ")
        + "    }\n}\n"
    )


@contextmanager
def nginx(folder: Path, upstream: str) -> Iterator[str]:
    """nginx on a free loopback port in front of `upstream` (http://host:port);
    yields its base URL, the API being at base + PREFIX. Always stopped."""
    binary = nginx_binary()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(nginx_config(folder, port, urlsplit(upstream).netloc))
    log = folder / "error.log"
    command = [binary, "-p", str(folder), "-c", str(conf), "-e", str(log)]
    checked = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=10, check=False
    )
    assert checked.returncode == 0, checked.stderr
    with (folder / "nginx.out").open("wb") as out:
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_listening(process, port, log)
            yield base_url(port)
        finally:
            process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)


def _wait_until_listening(process: subprocess.Popen, port: int, log: Path) -> None:
    end = time.monotonic() + START_DEADLINE
    while time.monotonic() < end:
        if process.poll() is not None:
            pytest.fail(f"nginx exited early:\n{_tail(log)}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx not listening in {START_DEADLINE}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
