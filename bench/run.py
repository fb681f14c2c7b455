"""Benchmark: the project against a bare Flask app, in one run, on loopback.

    .venv/bin/python -m bench.run            # about 12 minutes on 2 cores
    .venv/bin/python -m bench.run --quick    # one short round, to try it out

Run from the repository's root. Every server runs under the same gunicorn settings
(gunicorn.conf.py with the same WEB_CONCURRENCY and GUNICORN_THREADS, and no worker
recycling). Data is seeded through the API, the large item tables directly. Load
comes from wrk (`apt-get install wrk`) or, without it, from a bounded Python load
generator. Cases 1 and 3 run with a DPoP-bound session too (item-dpop,
refresh-dpop: bench/dpop.py), a proof of its own on every request. Every case
runs next to a run of the bare app (before it, or after it in every other round,
whose order is reversed) and its ratio is taken to that neighbour; the medians
over the rounds are printed. The machine is noisy: compare ratios within one run,
never absolute numbers across runs.
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import baseline, dpop
from bench.baseline import mint_refresh_tokens
from devtools import servers
from devtools.dpop import ProofKey

HERE = Path(__file__).resolve().parent
SECRET = secrets.token_urlsafe(48)
USERNAME, PASSWORD = "bench", "benchmark password"
BIG_LIMIT = "1000000 per minute"  # the limits stay on, but never bite
START_DEADLINE = 30.0


@dataclass
class Server:
    """A gunicorn process serving one app on a free loopback port."""

    name: str
    base: str
    process: subprocess.Popen


# --- load generators ----------------------------------------------------------------


def run_wrk(url: str, args, options: list[str], script_args: list[str]) -> dict:
    """wrk for args.duration seconds: requests/s, p50/p99 (ms), non-2xx answers."""
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}"]
    command += [f"-d{args.duration}s", "--latency", *options, url]
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=args.duration + 60, check=True
    ).stdout

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def run_python_load(
    url: str,
    args,
    method: str,
    body,
    slices: list[list[str]],
    form: bool = False,
    dpop: bool = False,
):
    """Without wrk: one thread per connection, bounded by time and count. With
    `dpop`, each entry is a "token proof" line (bench/dpop.py)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = json.dumps(body).encode() if body is not None else None
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + args.duration

    def worker(tokens: list[str]) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        failed = sent = 0
        while time.monotonic() < stop_at and sent < 200_000:
            token = tokens[min(sent, len(tokens) - 1)] if len(tokens) > 1 else tokens[0]
            if len(tokens) > 1 and sent >= len(tokens):
                token = "exhausted"
            headers = {"Content-Type": "application/json"}
            data = payload
            if form:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                data = f"grant_type=refresh_token&refresh_token={token}".encode()
            elif dpop:
                token, _, proof = token.partition(" ")
                headers["Authorization"] = f"DPoP {token}"
                headers["DPoP"] = proof or "exhausted"
            elif token:
                headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            failed += response.status >= 300
            sent += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker, args=(s,)) for s in slices]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "rps": len(latencies) / (time.monotonic() - started),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "errors": errors[0],
        "socket_errors": "",
    }


# --- the benchmark --------------------------------------------------------------------


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="bench-"))
        self.use_wrk = shutil.which("wrk") is not None and not args.python_load
        self.samples: dict[str, dict[str, list]] = {}
        # Per case: its requests/s over those of the bare run next to it, per round.
        self.ratios: dict[str, list[float]] = {}
        self.running = contextlib.ExitStack()

    def env(self, **extra) -> dict:
        return {
            "PATH": os.environ["PATH"],
            "WEB_CONCURRENCY": str(self.args.workers),
            "GUNICORN_THREADS": str(self.args.gunicorn_threads),
            # No worker recycling while measuring: a recycle landing in one 5 s run
            # and not the next is noise (it costs the project ~2 s of CPU per
            # 10,000 requests, about 0.2 ms a request; see GUNICORN_PRELOAD).
            "GUNICORN_MAX_REQUESTS": "0",
            **extra,
        }

    def project_env(
        self, backend: str, database: Path, algorithm: str = "HS256"
    ) -> dict:
        keys = {"JWT_SECRET_KEY": SECRET}
        if algorithm != "HS256":
            keys = {
                "JWT_ALGORITHM": algorithm,
                "JWT_PRIVATE_KEY_FILE": str(self.key_file(algorithm)),
            }
        return self.env(
            APP_ENV="production",
            MFA_ENCRYPTION_KEY=servers.MFA_KEY,
            TRUSTED_HOSTS="127.0.0.1",  # where the bench talks to it
            **keys,
            DATABASE_URL=f"sqlite:///{database}",
            BLOCKLIST_BACKEND=backend,
            REDIS_URL=self.args.redis_url if backend == "redis" else "",
            REDIS_KEY_PREFIX=f"bench-{secrets.token_hex(4)}:",
            RATELIMIT_LOGIN=BIG_LIMIT,
            RATELIMIT_LOGIN_USERNAME=BIG_LIMIT,
            RATELIMIT_REFRESH=BIG_LIMIT,
            RATELIMIT_REGISTER=BIG_LIMIT,
        )

    def key_file(self, algorithm: str) -> Path:
        """The bench's private key for `algorithm`, made on first use."""
        from auth.keys import generate_private_key, write_private_key

        path = self.folder / f"jwt-{algorithm}.pem"
        if not path.exists():
            write_private_key(generate_private_key(algorithm), str(path))
        return path

    @contextlib.contextmanager
    def serve(
        self, name: str, app: str, env: dict, ready_path: str, tree=servers.REPO
    ) -> Iterator[Server]:
        """`app` under gunicorn on a free port until the block ends; its log (and
        gunicorn's) in the bench's folder. The per-request log lines are still
        formatted and written, as in production, but to /dev/null."""
        port = servers.free_port()
        with servers.serving(
            {**env, "HOST": servers.HOST, "PORT": str(port)},
            self.folder / f"{name}.log",
            stdout=Path(os.devnull),
            app=app,
            ready_path=ready_path,
            deadline=START_DEADLINE,
            tree=tree,
        ) as process:
            yield Server(name, servers.base_url(port), process)

    def start(
        self, name: str, app: str, env: dict, ready_path: str, tree=servers.REPO
    ) -> Server:
        """A server that runs until stop_all()."""
        return self.running.enter_context(self.serve(name, app, env, ready_path, tree))

    def stop_all(self) -> None:
        self.running.close()

    def measure(
        self,
        key: str,
        url: str,
        *,
        token="",
        tokens=None,
        method="GET",
        body=None,
        form=False,
        proofs=None,
    ):
        """One load run; its numbers join the key's samples. `tokens` are single-use
        tokens, one a request: in the Authorization header, or with `form` in a
        refresh grant's form body (POST /token). `proofs` are "token proof" lines,
        one a request, of a DPoP-bound session (bench/dpop.py)."""
        args = self.args
        if proofs is not None:
            tokens = proofs
        if self.use_wrk:
            options, script_args = [], []
            if tokens is not None:
                prefix = (
                    self.folder
                    / f"tokens-{len(self.samples.get(key, {}).get('rps', []))}-{key}"
                )
                share = len(tokens) // args.threads
                for slot in range(args.threads):
                    chunk = tokens[slot * share : (slot + 1) * share]
                    Path(f"{prefix}.{slot + 1}").write_text("\n".join(chunk) + "\n")
                if proofs is not None:
                    options = ["-s", str(HERE / "wrk_dpop.lua")]
                    script_args = [str(prefix), method]
                else:
                    options = ["-s", str(HERE / "wrk_tokens.lua")]
                    script_args = [str(prefix), method, "form" if form else "header"]
            elif body is not None:
                options = ["-s", str(HERE / "wrk_post.lua")]
                script_args = [json.dumps(body)]
            elif token:
                options = ["-H", f"Authorization: Bearer {token}"]
            result = run_wrk(url, args, options, script_args)
        else:
            if tokens is not None:
                share = len(tokens) // args.connections
                slices = [
                    tokens[i * share : (i + 1) * share] for i in range(args.connections)
                ]
            else:
                slices = [[token]] * args.connections
            result = run_python_load(
                url, args, method, body, slices, form, dpop=proofs is not None
            )
        entry = self.samples.setdefault(
            key, {"rps": [], "p50": [], "p99": [], "errors": []}
        )
        for name in ("rps", "p50", "p99", "errors"):
            entry[name].append(result[name])
        if result["socket_errors"]:
            print(f"    ({key}: socket errors {result['socket_errors']})")
        print(
            f"    {key:<24} {result['rps']:9.0f} req/s  p50 {result['p50']:7.2f} ms"
            f"  p99 {result['p99']:7.2f} ms"
            + (f"  non-2xx {result['errors']}" if result["errors"] else "")
        )
        return result["rps"]

    def median(self, key: str, name: str) -> float:
        return statistics.median(self.samples[key][name])

    def ratio(self, key: str) -> float:
        """The median, over the rounds, of the case's ratio to its bare neighbour."""
        return 1.0 if key == "bare" else statistics.median(self.ratios[key])


def seed_through_api(base: str, items: int) -> tuple[str, dict, dict]:
    """Register and log in the bench user, create a store and `items` items in it:
    (the user's access token, the store, the user)."""
    _, tokens = servers.sign_up(base, USERNAME, PASSWORD)
    access = tokens["access_token"]
    store = servers.request(
        base, "POST", "/store", token=access, body={"name": "Bench shop"}
    )
    assert store.status == 201, store.body
    for i in range(items):
        item = {"name": f"seeded {i}", "price": 9.99, "store_id": store.body["id"]}
        reply = servers.request(base, "POST", "/item", token=access, body=item)
        assert reply.status == 201, reply.body
    me = servers.request(base, "GET", "/me", token=access)
    assert me.status == 200, me.body
    return access, store.body, me.body


def seed_items(database: Path, store_id: int, total: int) -> None:
    """Bulk-insert items until the table holds `total` (100,000 via HTTP is slow)."""
    from sqlalchemy import create_engine, func, insert, select

    from models import ItemModel

    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        have = connection.scalar(select(func.count()).select_from(ItemModel.__table__))
        rows = [
            {"name": f"item {i}", "price": 1.0 + i % 100, "store_id": store_id}
            for i in range(have, total)
        ]
        for start in range(0, len(rows), 10_000):
            connection.execute(
                insert(ItemModel.__table__), rows[start : start + 10_000]
            )
    engine.dispose()


def in_batches(tokens: list[str], size: int) -> Iterator[list[str]]:
    """Single-use tokens, `size` at a time (one batch a round)."""
    return (tokens[start : start + size] for start in range(0, len(tokens), size))


def hashing_cost(rounds: int = 15) -> float:
    """Median ms of one argon2id verification at the production parameters."""
    from passlib.hash import argon2

    hasher = argon2.using(type="ID", memory_cost=19 * 1024, time_cost=2, parallelism=1)
    stored = hasher.hash(PASSWORD)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify(PASSWORD, stored)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options (bench.profile starts its servers with them too)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="load-generator threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--gunicorn-threads", type=int, default=1)
    parser.add_argument("--backends", default="memory,database,redis")
    parser.add_argument(
        "--algorithms",
        default="EdDSA",
        help="asymmetric signing algorithms measured beside HS256 (cases 1 and 3; "
        "empty: none)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--python-load", action="store_true", help="never use wrk")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 seconds")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also serve git revision REV and measure its cases 1 and 3 "
        "(item-baseline, refresh-baseline) beside this tree's (bench/baseline.py)",
    )
    parser.add_argument(
        "--tokens-per-run",
        type=int,
        help="single-use refresh tokens minted per load run (default: enough for "
        "4,000 refreshes a second)",
    )
    parser.add_argument(
        "--cases",
        help="comma-separated case keys to measure (e.g. item-memory,refresh,"
        "item-baseline,refresh-baseline,item-dpop,refresh-dpop); default: every case",
    )
    dpop.add_options(parser)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]

    bench = Bench(args)
    generator = "wrk" if bench.use_wrk else "python (wrk not installed)"
    print(
        f"Load: {generator}, {args.connections} connections, "
        f"{args.duration} s per run, {args.rounds} rounds; gunicorn: {args.workers} "
        f"workers x {args.gunicorn_threads} threads; {os.cpu_count()} cores; "
        f"data in {bench.folder}"
    )
    try:
        return run(bench, args, backends)
    finally:
        bench.stop_all()


def run(bench: Bench, args, backends: list[str]) -> int:
    small, big = bench.folder / "items-10k.db", bench.folder / "items-100k.db"
    env = bench.project_env("memory", small)
    servers.migrate(env)

    print("Seeding through the API ...")
    with bench.serve("seed", servers.APP, env, "/readyz") as seeder:
        _, store, me = seed_through_api(seeder.base, items=20)
    seed_items(small, store["id"], 10_000)
    shutil.copy(small, big)
    seed_items(big, store["id"], 100_000)
    print("  10,000 and 100,000 items; one user, one store")

    bare = bench.start("bare", "bench.bare_app:app", bench.env(), "/health")
    # The minimal correct stack on the same database, accepting the same tokens.
    minimal = bench.start(
        "minimal",
        "bench.minimal_app:app",
        bench.env(JWT_SECRET_KEY=SECRET, DATABASE_URL=f"sqlite:///{small}"),
        "/health",
    )
    projects = {
        backend: bench.start(
            f"project-{backend}",
            servers.APP,
            bench.project_env(backend, small),
            "/readyz",
        )
        for backend in backends
    }
    # The same app signing with an asymmetric key (case 1 on the first store, and
    # case 3): what verifying and signing with it costs beside HS256.
    signed = {
        algorithm: bench.start(
            f"project-{algorithm}",
            servers.APP,
            bench.project_env(backends[0], small, algorithm),
            "/readyz",
        )
        for algorithm in args.algorithms
    }
    # The same app without the metrics middleware: what counting every request
    # costs case 1 (issue 15: at most 5 %).
    unmetered = bench.start(
        "project-no-metrics",
        servers.APP,
        {**bench.project_env(backends[0], small), "METRICS_ENABLED": "false"},
        "/readyz",
    )
    big_server = bench.start(
        "project-100k", servers.APP, bench.project_env("memory", big), "/readyz"
    )
    # Case 1 with a DPoP-bound session (bench/dpop.py): its proofs fill that
    # server's replay cache, not the bearer case's.
    bound = bench.start(
        "project-dpop", servers.APP, bench.project_env(backends[0], small), "/readyz"
    )
    access = {
        backend: servers.login(server.base, USERNAME, PASSWORD)["access_token"]
        for backend, server in projects.items()
    }
    big_access = servers.login(big_server.base, USERNAME, PASSWORD)["access_token"]
    unmetered_access = servers.login(unmetered.base, USERNAME, PASSWORD)["access_token"]
    signed_access = {
        algorithm: servers.login(server.base, USERNAME, PASSWORD)["access_token"]
        for algorithm, server in signed.items()
    }
    # Cases 2 to 4 on a server of their own: the sessions and rotations that /refresh
    # and /login pile up in a worker must not weigh on case 1's servers.
    first = bench.start(
        "project-flows",
        servers.APP,
        bench.project_env(backends[0], small),
        "/readyz",
    )
    flows_access = servers.login(first.base, USERNAME, PASSWORD)["access_token"]
    plain = projects[backends[0]]
    made = servers.request(
        plain.base,
        "POST",
        "/me/api-tokens",
        token=access[backends[0]],
        body={"name": "bench"},
    )
    assert made.status == 201, made.body
    api_token = made.body["token"]
    page = "/item?page=1&page_size=20"
    bare_url = bare.base + "/item/1"
    # Enough single-use refresh tokens for the fastest plausible run.
    per_run = args.tokens_per_run or max(20_000, args.duration * 4_000)

    wanted = set(args.cases.split(",")) if args.cases else None

    def minted(
        key: str, algorithm: str = "HS256", jkt: str | None = None
    ) -> Iterator[list[str]]:
        """Single-use refresh tokens for every round of `key` (of sessions bound to
        the DPoP key `jkt` names, if given), minted before any load runs (none for
        a case left out by --cases)."""
        if wanted is not None and key not in wanted:
            return iter(())
        env = bench.project_env(backends[0], small, algorithm)
        tokens = mint_refresh_tokens(env, me["id"], per_run * args.rounds, jkt=jkt)
        return in_batches(tokens, per_run)

    refresh_batches, grant_batches = minted("refresh"), minted("token-refresh")
    proof_key = ProofKey(args.proof_algorithm)
    bound_batches = minted("refresh-dpop", jkt=proof_key.jkt)
    signed_batches = {a: minted(f"refresh-{a}", a) for a in args.algorithms}
    login = {"username": USERNAME, "password": PASSWORD}
    cases = [
        (
            f"item-{backend}",
            lambda s=server, b=backend: bench.measure(
                f"item-{b}", s.base + "/item/5", token=access[b]
            ),
        )
        for backend, server in projects.items()
    ]
    cases += [
        (
            "item-minimal",
            lambda: bench.measure(
                "item-minimal", minimal.base + "/item/5", token=access[backends[0]]
            ),
        ),
        (
            "item-api-token",
            lambda: bench.measure(
                "item-api-token", plain.base + "/item/5", token=api_token
            ),
        ),
        (
            "item-no-metrics",
            lambda: bench.measure(
                "item-no-metrics", unmetered.base + "/item/5", token=unmetered_access
            ),
        ),
        (
            "page-10k",
            lambda: bench.measure("page-10k", first.base + page, token=flows_access),
        ),
        (
            "page-100k",
            lambda: bench.measure(
                "page-100k", big_server.base + page, token=big_access
            ),
        ),
        (
            "refresh",
            lambda: bench.measure(
                "refresh",
                first.base + "/refresh",
                method="POST",
                tokens=next(refresh_batches),
            ),
        ),
        (
            "token-refresh",
            lambda: bench.measure(
                "token-refresh",
                first.base + "/token",
                method="POST",
                tokens=next(grant_batches),
                form=True,
            ),
        ),
        (
            "login",
            lambda: bench.measure(
                "login", first.base + "/login", method="POST", body=login
            ),
        ),
    ]
    for algorithm, server in signed.items():
        cases += [
            (
                f"item-{algorithm}",
                lambda s=server, a=algorithm: bench.measure(
                    f"item-{a}", s.base + "/item/5", token=signed_access[a]
                ),
            ),
            (
                f"refresh-{algorithm}",
                lambda s=server, a=algorithm: bench.measure(
                    f"refresh-{a}",
                    s.base + "/refresh",
                    method="POST",
                    tokens=next(signed_batches[a]),
                ),
            ),
        ]
    # Each bound case, then each baseline case, right after its counterpart in this
    # tree: the two run seconds apart.
    beside = dpop.bound_cases(
        bench, proof_key, bound.base, first.base, bound_batches, (USERNAME, PASSWORD)
    )
    if args.baseline:
        beside += baseline_cases(bench, args, backends[0], per_run)
    for key, measure in beside:
        counterpart = key.rsplit("-", 1)[0]
        position = next(
            (i for i, case in enumerate(cases) if case[0].startswith(counterpart)),
            len(cases) - 1,
        )
        cases.insert(position + 1, (key, measure))
    if wanted is not None:
        cases = [case for case in cases if case[0] in wanted]
    for round_number in range(args.rounds):
        print(f"Round {round_number + 1}/{args.rounds}")
        order = cases if round_number % 2 == 0 else list(reversed(cases))
        for key, measure in order:
            # Every case runs next to a run of the bare app (before it in even
            # rounds, after it in odd ones) and its ratio is taken to that run:
            # the machine's speed drifts over minutes, far less over seconds.
            if round_number % 2 == 0:
                bare_rps, case_rps = bench.measure("bare", bare_url), measure()
            else:
                case_rps, bare_rps = measure(), bench.measure("bare", bare_url)
            bench.ratios.setdefault(key, []).append(case_rps / bare_rps)

    report(bench, backends, args)
    return 0


def baseline_cases(bench: Bench, args, backend: str, per_run: int) -> list[tuple]:
    """Cases 1 and 3 on the revision `args.baseline` (bench/baseline.py): its own
    checkout, database, seed, servers and refresh tokens, the same settings."""
    tree = bench.running.enter_context(baseline.checkout(args.baseline, bench.folder))
    database = bench.folder / "baseline.db"
    env = bench.project_env(backend, database)
    servers.migrate(env, tree)
    with bench.serve("baseline-seed", servers.APP, env, "/readyz", tree) as seeder:
        _, store, me = seed_through_api(seeder.base, items=20)
    seed_items(database, store["id"], 10_000)
    item = bench.start("baseline-item", servers.APP, env, "/readyz", tree)
    flows = bench.start("baseline-flows", servers.APP, env, "/readyz", tree)
    access = servers.login(item.base, USERNAME, PASSWORD)["access_token"]
    tokens = mint_refresh_tokens(env, me["id"], per_run * args.rounds, tree)
    batches = in_batches(tokens, per_run)
    return [
        (
            "item-baseline",
            lambda: bench.measure("item-baseline", item.base + "/item/5", token=access),
        ),
        (
            "refresh-baseline",
            lambda: bench.measure(
                "refresh-baseline",
                flows.base + "/refresh",
                method="POST",
                tokens=next(batches),
            ),
        ),
        (
            "login-baseline",
            lambda: bench.measure(
                "login-baseline",
                flows.base + "/login",
                method="POST",
                body={"username": USERNAME, "password": PASSWORD},
            ),
        ),
    ]


def compare(bench: Bench, pairs: list[tuple[str, str, str]], beside: str) -> None:
    """Each (case, key, other key) pair measured: key's requests/s over other's, two
    ways: the median of each round's quotient (the two ran one after the other,
    with only a bare run between them), and of their ratios to bare; then each
    round's quotient."""
    for case, key, other in pairs:
        if key not in bench.samples or other not in bench.samples:
            continue
        rounds = [
            a / b
            for a, b in zip(
                bench.samples[key]["rps"], bench.samples[other]["rps"], strict=True
            )
        ]
        to_bare = statistics.median(
            a / b for a, b in zip(bench.ratios[key], bench.ratios[other], strict=True)
        )
        print(
            f"Case {case}, {beside}: {statistics.median(rounds):.3f}x "
            f"(per round, req/s), {to_bare:.3f}x (ratios to bare); each round: "
            + " ".join(f"{quotient:.3f}" for quotient in rounds)
        )


def compare_baseline(bench: Bench, backend: str, revision: str | None) -> None:
    """This tree's cases 1, 3 and 4 beside the baseline's."""
    if revision:
        pairs = [
            ("1", f"item-{backend}", "item-baseline"),
            ("3", "refresh", "refresh-baseline"),
            ("4", "login", "login-baseline"),
        ]
        compare(bench, pairs, f"this tree beside {revision}")


def report(bench: Bench, backends: list[str], args) -> None:
    algorithms, proof = args.algorithms, args.proof_algorithm
    rows = [
        ("bare Flask, constant JSON item", "bare"),
        ("minimal correct stack, GET /item/<id>", "item-minimal"),
    ]
    rows += [(f"1. GET /item/<id>, {b} blocklist", f"item-{b}") for b in backends]
    rows += [
        (f"1. GET /item/<id>, {backends[0]} blocklist, API token", "item-api-token")
    ]
    rows += [
        (f"1. GET /item/<id>, {backends[0]} blocklist, {a}", f"item-{a}")
        for a in algorithms
    ]
    rows += [
        (f"1. GET /item/<id>, {backends[0]} blocklist, DPoP {proof}", "item-dpop"),
        (f"1. GET /item/<id>, {backends[0]} blocklist, no metrics", "item-no-metrics"),
        ("2. GET /item?page=1&page_size=20, 10k items", "page-10k"),
        ("2. GET /item?page=1&page_size=20, 100k items", "page-100k"),
        ("3. POST /refresh (rotation)", "refresh"),
        ("3. POST /token grant_type=refresh_token", "token-refresh"),
        *[(f"3. POST /refresh (rotation), {a}", f"refresh-{a}") for a in algorithms],
        (f"3. POST /refresh (rotation), DPoP {proof}", "refresh-dpop"),
        ("4. POST /login (argon2id)", "login"),
        (
            f"1. GET /item/<id>, {backends[0]} blocklist, at {args.baseline}",
            "item-baseline",
        ),
        (f"3. POST /refresh (rotation), at {args.baseline}", "refresh-baseline"),
        (f"4. POST /login (argon2id), at {args.baseline}", "login-baseline"),
    ]
    rows = [(label, key) for label, key in rows if key in bench.samples]
    print()
    print("Medians over the rounds; each ratio is to the bare run next to the case.")
    print()
    print("| case | req/s | p50 ms | p99 ms | ratio to bare |")
    print("|---|---:|---:|---:|---:|")
    for label, key in rows:
        errors = sum(bench.samples[key]["errors"])
        note = f" ({errors} non-2xx!)" if errors else ""
        print(
            f"| {label}{note} | {bench.median(key, 'rps'):.0f} "
            f"| {bench.median(key, 'p50'):.2f} | {bench.median(key, 'p99'):.2f} "
            f"| {bench.ratio(key):.2f} |"
        )
    compare_baseline(bench, backends[0], args.baseline)
    bound_pairs = [
        ("1", "item-dpop", f"item-{backends[0]}"),
        ("3", "refresh-dpop", "refresh"),
    ]
    compare(bench, bound_pairs, f"DPoP {proof} beside bearer")
    if args.cases:
        return  # the targets below need every case
    growth = bench.ratio("page-10k") / bench.ratio("page-100k")
    cost = hashing_cost()
    print()
    print(f"Page cost, 100k items / 10k items: {growth:.2f}x (target <= 1.3x)")
    cores = os.cpu_count() or 1
    print(
        f"Login: one argon2id verification (19 MiB, t=2) takes {cost:.1f} ms here, "
        f"so {cores} cores cap logins near {1000 * cores / cost:.0f}/s by design."
    )
    plain = bench.ratio(f"item-{backends[0]}")
    minimal = bench.ratio("item-minimal")
    print(f"Case 1 beside the minimal correct stack: {plain / minimal:.2f}x")
    targets = [
        ("case 1 >= the minimal correct stack", plain >= minimal),
        ("case 2 100k within 1.3x of 10k", growth <= 1.3),
        ("case 3 >= 0.25x bare", bench.ratio("refresh") >= 0.25),
        (
            "/token refresh grant within 5 % of /refresh",
            bench.ratio("token-refresh") >= 0.95 * bench.ratio("refresh"),
        ),
        (
            "case 1 with an API token within 5 %",
            bench.ratio("item-api-token") >= 0.95 * plain,
        ),
    ]
    floors = {"database": 0.95, "redis": 0.85}
    for backend in backends[1:]:
        share = bench.ratio(f"item-{backend}") / plain
        print(f"Case 1, {backend} store beside {backends[0]}: {share:.2f}x")
        floor = floors.get(backend)
        if floor is not None:
            targets.append(
                (f"case 1 {backend} >= {floor}x {backends[0]}", share >= floor)
            )
    metered = plain / bench.ratio("item-no-metrics")
    print(f"Metrics on beside off: case 1 {metered:.2f}x")
    targets.append(("metrics cost case 1 at most 5 %", metered >= 0.95))
    for algorithm in algorithms:
        item = bench.ratio(f"item-{algorithm}") / plain
        refresh = bench.ratio(f"refresh-{algorithm}") / bench.ratio("refresh")
        print(
            f"{algorithm} beside HS256: case 1 {item:.2f}x, case 3 (/refresh) "
            f"{refresh:.2f}x"
        )
        targets.append((f"{algorithm} case 1 within 5 % of HS256", item >= 0.95))
    for name, met in targets:
        print(f"  {'met' if met else 'NOT met'}: {name}")


if __name__ == "__main__":
    raise SystemExit(main())
