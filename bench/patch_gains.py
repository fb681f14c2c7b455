"""What each library patch of core/patches.py buys, in microseconds per request.

    .venv/bin/python -m bench.patch_gains                  # GET /item/<id>
    .venv/bin/python -m bench.patch_gains --case refresh   # POST /refresh
    .venv/bin/python -m bench.patch_gains --without "HMAC secrets checked once"

GET /item/<id> with one access token (or POST /refresh, each request with a
refresh token of its own), through Flask's test client (no server: the app's own
cost only), on production settings with the memory blocklist and a SQLite file.
Every variant leaves out one patch (or, with --without, the patches named in one
comma-separated list) and runs in a process of its own (some of the patches are
process-wide), between two runs with all patches: what the variant's patches buy is
its cost less the mean of those two, a median over the rounds (the machine's drift
moves both sides of each difference alike). Compare the differences within one run,
never absolute numbers across runs. The figure is the process's CPU time (a busy
machine takes the CPU away from a process for a while, which wall-clock time would
count; CPU time does not); --clock wall measures wall-clock time. Run it from the
repository's root, as a module.
"""

import argparse
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def production_app(prefix: str):
    """The app on production settings with the memory blocklist and a SQLite
    file in a new folder (named with `prefix`), a user and an item: (app, user
    id, item id). The app is imported here, after a caller's changes to
    core.patches."""
    from app import create_app
    from auth import register_user
    from core import db
    from models import ItemModel, StoreModel

    folder = tempfile.mkdtemp(prefix=prefix)
    app = create_app(
        {
            "APP_ENV": "production",
            "MFA_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "TRUSTED_HOSTS": ["localhost"],  # the test client's Host
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.db",
            "BLOCKLIST_BACKEND": "memory",
            # The limit stays on, but never bites (as in bench/run.py).
            "RATELIMIT_REFRESH": "1000000 per minute",
        }
    )
    with app.app_context():
        db.create_all()
        user = register_user("bench", "benchmark password")
        store = StoreModel(name="Corner shop")
        db.session.add(store)
        db.session.flush()
        item = ItemModel(name="Chair", price=15.99, store_id=store.id)
        db.session.add(item)
        db.session.commit()
        return app, user.id, item.id


def measure(
    skip: list[str], requests: int, batches: int, case: str, clock: str = "cpu"
) -> float:
    """Median microseconds per request over `batches` batches (in this process)."""
    import core.patches

    known = {patch.name for patch in core.patches.PATCHES}
    if not set(skip) <= known:
        raise SystemExit(f"unknown patch: {sorted(set(skip) - known)}")
    core.patches.PATCHES = tuple(
        patch for patch in core.patches.PATCHES if patch.name not in skip
    )
    from auth import start_session
    from core import db
    from models import UserModel

    app, user_id, item_id = production_app("bench-patch-gains-")
    with app.app_context():
        user = db.session.get(UserModel, user_id)
        if case == "item":
            path, method = f"/item/{item_id}", "GET"
            access = start_session(user)["access_token"]
            tokens = itertools.repeat(access)  # the same one, every time
        else:
            path, method = "/refresh", "POST"
            minted = [start_session(user) for _ in range(200 + requests * batches)]
            tokens = iter([pair["refresh_token"] for pair in minted])
    client = app.test_client()

    def send() -> int:
        headers = {"Authorization": "Bearer " + next(tokens)}
        return client.open(path, method=method, headers=headers).status_code

    for _ in range(200):  # warm up: caches, statement compilation, the pool
        assert send() == 200
    now = CLOCKS[clock]
    timings = []
    for _ in range(batches):
        started = now()
        for _ in range(requests):
            send()
        timings.append((now() - started) / requests * 1e6)
    return statistics.median(timings)


def _variants(groups: list[str]) -> dict[str, list[str]]:
    """Each variant's name and the patches it leaves out."""
    if groups:
        left_out = [[name.strip() for name in group.split(",")] for group in groups]
    else:
        import core.patches

        left_out = [[patch.name] for patch in core.patches.PATCHES]
    return {f"without: {', '.join(names)}": names for names in left_out}


def _run_child(skip: list[str], args: argparse.Namespace) -> float:
    """One variant's figure, measured in a fresh process."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.patch_gains", "--child", json.dumps(skip)]
        + ["--requests", str(args.requests), "--batches", str(args.batches)]
        + ["--case", args.case, "--clock", args.clock],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the access log of every request
        text=True,
        timeout=900,
        check=True,
    )
    return float(child.stdout.strip().splitlines()[-1])


def _measure_rounds(
    variants: dict[str, list[str]], args: argparse.Namespace
) -> tuple[list[float], dict[str, list[float]], dict[str, list[float]]]:
    """All patches between every two variants (A V1 A V2 A ...), so each variant's
    gain is taken to the mean of the two runs of all patches beside it."""
    bases: list[float] = []
    costs: dict[str, list[float]] = {name: [] for name in variants}
    gains: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(args.rounds):
        order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
        before = _run_child([], args)
        bases.append(before)
        for name in order:
            cost = _run_child(variants[name], args)
            after = _run_child([], args)
            bases.append(after)
            costs[name].append(cost)
            gains[name].append(cost - (before + after) / 2)
            before = after
    return bases, costs, gains


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per batch")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--case", choices=["item", "refresh"], default="item")
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="NAME[,NAME...]",
        help="a variant without these patches (repeat for more; default: each alone)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        skip = json.loads(args.child)
        figure = measure(skip, args.requests, args.batches, args.case, args.clock)
        print(json.dumps(figure))
        return 0

    bases, costs, gains = _measure_rounds(_variants(args.without), args)
    title = "GET /item/<id>" if args.case == "item" else "POST /refresh"
    print(f"{title}, in-process, {args.clock} time; medians over {args.rounds} rounds.")
    print(f"All patches: {statistics.median(bases):.0f} µs per request.")
    print("| variant | µs per request | the patches buy | of it, each round |")
    print("|---|---:|---:|---|")
    for name, values in costs.items():
        gain = statistics.median(gains[name])
        cost = statistics.median(values)
        rounds = " ".join(f"{value:.0f}" for value in gains[name])
        print(f"| {name} | {cost:.0f} | {gain:.0f} µs ({gain / cost:.1%}) | {rounds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
