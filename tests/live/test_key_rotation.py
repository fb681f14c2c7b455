"""Signing keys against live gunicorn servers: a key rotated across restarts on one
database logs nobody out; another process verifies access tokens through the
JWKS that the server metadata names (PyJWT's PyJWKClient); Authlib works from the
metadata alone; and two instances on PostgreSQL and Redis switch keys in a rolling
restart without refusing one valid token."""

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session

from auth.keys import UNKNOWN_KID, generate_private_key, write_private_key
from tests import servers
from tests.helpers import MFA_KEY, PASSWORD
from tests.servers import HOST, free_port, request
from tests.services import postgres_database, redis_namespace

ALGORITHMS = ["HS256", "EdDSA", "ES256", "RS256"]
ISSUER = "https://api.example.com"


def key_settings(folder: Path, algorithm: str, name: str) -> dict:
    """The settings that sign with a new key of `algorithm` (and the key's file)."""
    if algorithm == "HS256":
        return {"JWT_ALGORITHM": "HS256", "JWT_SECRET_KEY": secrets.token_urlsafe(48)}
    path = folder / f"{name}.pem"
    write_private_key(generate_private_key(algorithm), str(path))
    return {"JWT_ALGORITHM": algorithm, "JWT_PRIVATE_KEY_FILE": str(path)}


def as_fallback(settings: dict) -> dict:
    """The same key, verifying only."""
    if settings["JWT_ALGORITHM"] == "HS256":
        return {"JWT_SECRET_KEY_FALLBACKS": settings["JWT_SECRET_KEY"]}
    return {"JWT_PUBLIC_KEY_FALLBACK_FILES": settings["JWT_PRIVATE_KEY_FILE"]}


def base_env(database_url: str, **settings: str) -> dict:
    """Every setting explicit: a developer's .env cannot change what is tested."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "TRUSTED_HOSTS": HOST,
        "DATABASE_URL": database_url,
        "BLOCKLIST_BACKEND": "database",
        "JWT_ISSUER": ISSUER,
        "JWT_ACCESS_TOKEN_EXPIRES": "900",
        "RATELIMIT_ENABLED": "false",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "HOST": HOST,
        **settings,
    }


@contextmanager
def server(folder: Path, env: dict, name: str):
    """One live server with `env` on a free port: its base URL."""
    port = free_port()
    with servers.live_server(
        {**env, "PORT": str(port)}, folder / f"{name}.log"
    ) as base:
        yield base


def me(base: str, token: str):
    return request(base, "GET", "/me", token=token)


def kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_key_rotated_across_restarts_logs_nobody_out(tmp_path, algorithm):
    database = f"sqlite:///{tmp_path / 'rotation.db'}"
    old_key = key_settings(tmp_path, algorithm, "old")
    new_key = key_settings(tmp_path, algorithm, "new")
    username = f"rot_{uuid.uuid4().hex[:8]}"

    with server(tmp_path, base_env(database, **old_key), "before") as base:
        _, old = servers.sign_up(base, username)
        assert me(base, old["access_token"]).status == 200

    # The new key signs; the old one still verifies.
    during_env = base_env(database, **new_key, **as_fallback(old_key))
    with server(tmp_path, during_env, "during") as base:
        reply = me(base, old["access_token"])
        assert (reply.status, reply.body["username"]) == (200, username)
        refreshed = request(base, "POST", "/refresh", token=old["refresh_token"])
        assert refreshed.status == 200, refreshed.body
        new = refreshed.body
        assert kid(new["access_token"]) != kid(old["access_token"])
        assert kid(new["refresh_token"]) == kid(new["access_token"])
        assert me(base, new["access_token"]).status == 200

    # The old key dropped: its tokens are refused, the new ones work.
    with server(tmp_path, base_env(database, **new_key), "after") as base:
        reply = me(base, old["access_token"])
        assert (reply.status, reply.body["error"]) == (401, "invalid_token")
        assert reply.body["message"] == UNKNOWN_KID
        assert me(base, new["access_token"]).status == 200
        again = request(base, "POST", "/refresh", token=new["refresh_token"])
        assert again.status == 200, again.body


VERIFIER = """
import json, sys
import jwt, requests
from tests.helpers import MFA_KEY

api, token = sys.argv[1], sys.argv[2]
where = api + "/.well-known/oauth-authorization-server"
metadata = requests.get(where, timeout=5).json()
keys = jwt.PyJWKClient(metadata["jwks_uri"])
key = keys.get_signing_key_from_jwt(token)
try:
    claims = jwt.decode(
        token, key.key, algorithms=[key.algorithm_name],
        issuer=metadata["issuer"], audience="stores-api",
        options={"require": ["exp", "iat", "sub", "jti", "type"]},
    )
except jwt.InvalidTokenError as exc:
    print(json.dumps({"refused": type(exc).__name__}))
    sys.exit(1)
if claims["type"] != "access":
    print(json.dumps({"refused": "not an access token"}))
    sys.exit(1)
print(json.dumps({"sub": claims["sub"], "alg": key.algorithm_name}))
"""


def verify_elsewhere(base: str, token: str) -> tuple[int, dict]:
    """Another process (no secret, no key file) verifies `token` through the JWKS."""
    result = subprocess.run(
        [sys.executable, "-c", VERIFIER, base, token],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_another_process_verifies_tokens_through_the_jwks(tmp_path, algorithm):
    database = f"sqlite:///{tmp_path / 'jwks.db'}"
    signing = key_settings(tmp_path, algorithm, "current")
    with server(tmp_path, base_env(database, **signing), "jwks") as base:
        user, tokens = servers.sign_up(base, f"jwks_{uuid.uuid4().hex[:8]}")

        status, verdict = verify_elsewhere(base, tokens["access_token"])
        assert (status, verdict) == (0, {"sub": str(user["id"]), "alg": algorithm})

        # A token of the same kid with another key's signature is refused there too.
        stranger = generate_private_key(algorithm)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        forged = jwt.encode(
            claims,
            stranger,
            algorithm=algorithm,
            headers={"kid": kid(tokens["access_token"])},
        )
        status, verdict = verify_elsewhere(base, forged)
        assert (status, verdict) == (1, {"refused": "InvalidSignatureError"})
        assert me(base, forged).status == 401
        # A refresh token is not an access token.
        status, verdict = verify_elsewhere(base, tokens["refresh_token"])
        assert (status, verdict) == (1, {"refused": "not an access token"})


def test_authlib_works_from_the_server_metadata_alone(tmp_path):
    database = f"sqlite:///{tmp_path / 'authlib.db'}"
    signing = key_settings(tmp_path, "EdDSA", "current")
    with server(tmp_path, base_env(database, **signing), "authlib") as base:
        username = f"meta_{uuid.uuid4().hex[:8]}"
        servers.register(base, username)
        metadata = request(base, "GET", "/.well-known/oauth-authorization-server").body
        assert metadata["token_endpoint"] == f"{base}/token"
        assert metadata["issuer"] == ISSUER

        # Everything the client knows of the server comes from the metadata.
        client = OAuth2Session(
            client_id="swagger",
            token_endpoint=metadata["token_endpoint"],
            token_endpoint_auth_method="none",
        )
        assert "password" in metadata["grant_types_supported"]
        token = client.fetch_token(username=username, password=PASSWORD)
        assert client.get(f"{base}/me").json()["username"] == username
        refreshed = client.refresh_token(metadata["token_endpoint"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        revoked = client.revoke_token(
            metadata["revocation_endpoint"], refreshed["refresh_token"]
        )
        assert revoked.status_code == 200
        assert me(base, refreshed["access_token"]).status == 401


# --- two instances, one rolling key switch ----------------------------------------


class Node:
    """One gunicorn instance on a fixed port that can be restarted with new env."""

    def __init__(self, name: str, folder: Path, port: int) -> None:
        self.name, self.folder, self.port = name, folder, port
        self.base = servers.base_url(port)
        self.starts = 0
        self._stack: ExitStack | None = None

    def start(self, env: dict) -> None:
        self.starts += 1
        log = self.folder / f"{self.name}-{self.starts}.log"
        self._stack = ExitStack()
        process = self._stack.enter_context(
            servers.gunicorn({**env, "PORT": str(self.port)}, log)
        )

        def ready() -> bool:
            return request(self.base, "GET", "/readyz", timeout=2).status == 200

        servers.wait_until_ready(
            process, ready, lambda: log.read_text(errors="replace")[-3000:]
        )

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


class Traffic:
    """Users logging in, calling and refreshing through whichever instance
    answers (as a load balancer would send them), until stopped."""

    def __init__(self, nodes: list[Node], usernames: list[str]) -> None:
        self.nodes, self.usernames = nodes, usernames
        self.outcomes: Counter = Counter()
        self.refused: list[str] = []
        self.kids: set[str] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._user, args=(name, index), daemon=True)
            for index, name in enumerate(usernames)
        ]

    def _send(self, index: int, method: str, path: str, **kwargs):
        """To one instance, else the other: connection errors are not answers."""
        for attempt in range(40):
            node = self.nodes[(index + attempt) % len(self.nodes)]
            try:
                return request(node.base, method, path, timeout=10, **kwargs)
            except OSError:
                self.outcomes["unreachable"] += 1
                time.sleep(0.05)
        raise AssertionError("no instance answered for 2 s")

    def _user(self, username: str, index: int) -> None:
        tokens = None
        step = 0
        while not self._stop.is_set():
            step += 1
            if tokens is None or step % 15 == 0:
                reply = self._send(
                    step,
                    "POST",
                    "/login",
                    body={"username": username, "password": PASSWORD},
                )
                self._count("login", reply)
                tokens = reply.body if reply.status == 200 else tokens
            elif step % 5 == 0:
                reply = self._send(
                    step, "POST", "/refresh", token=tokens["refresh_token"]
                )
                self._count("refresh", reply)
                if reply.status == 200:
                    tokens = reply.body
            else:
                self._count(
                    "me", self._send(step, "GET", "/me", token=tokens["access_token"])
                )
            if tokens is not None:
                self.kids.add(kid(tokens["access_token"]))
            time.sleep(0.01)

    def _count(self, what: str, reply) -> None:
        self.outcomes[(what, reply.status)] += 1
        if reply.status != 200:
            self.refused.append(f"{what}: {reply.status} {reply.body}")

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_two_instances_switch_keys_in_a_rolling_restart_refusing_nothing(tmp_path):
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        redis_url, prefix, _client = stack.enter_context(redis_namespace())
        old_key = key_settings(tmp_path, "EdDSA", "old")
        new_key = key_settings(tmp_path, "EdDSA", "new")

        def env(**keys: str) -> dict:
            return base_env(
                database,
                BLOCKLIST_BACKEND="redis",
                REDIS_URL=redis_url,
                REDIS_KEY_PREFIX=prefix,
                **keys,
            )

        phases = [
            env(**old_key),  # both sign with the old key
            env(**old_key, **as_fallback(new_key)),  # both also verify the new one
            env(**new_key, **as_fallback(old_key)),  # the new key signs
        ]
        servers.migrate({**phases[0], "PORT": "0"})
        first, second = free_port(), free_port()
        assert first != second
        nodes = [Node("A", tmp_path, first), Node("B", tmp_path, second)]
        for node in nodes:
            stack.callback(node.stop)
            node.start(phases[0])
        usernames = [f"roll_{uuid.uuid4().hex[:8]}" for _ in range(4)]
        for username in usernames:
            servers.register(nodes[0].base, username)

        with Traffic(nodes, usernames) as traffic:
            time.sleep(1)
            for phase in phases[1:]:
                for node in nodes:  # one at a time: the other one serves
                    node.stop()
                    node.start(phase)
                    time.sleep(1)

    assert traffic.refused == [], traffic.refused[:10]
    answered = [key for key in traffic.outcomes if key != "unreachable"]
    assert all(status == 200 for _, status in answered), traffic.outcomes
    for what in ("login", "refresh", "me"):
        assert traffic.outcomes[(what, 200)] > 0, traffic.outcomes
    assert len(traffic.kids) == 2  # tokens of both keys were in use
