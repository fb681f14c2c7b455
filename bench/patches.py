"""What each library patch of core/patches.py buys, in microseconds per request.

    .venv/bin/python bench/patches.py                  # about a minute on 2 cores
    .venv/bin/python bench/patches.py --case refresh   # POST /refresh

GET /item/<id> with one access token (or POST /refresh, each request with a
refresh token of its own), through Flask's test client (no server: the app's own
cost only), on production settings with the memory blocklist and a SQLite file.
Every variant leaves one patch out and runs in a process of its own (some of the
patches are process-wide); variants take turns over the rounds, so the machine's
drift spreads over all of them. Compare the differences within one run, never
absolute numbers across runs.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ALL = "all patches"


def measure(skip: list[str], requests: int, batches: int, case: str) -> float:
    """Median microseconds per request over `batches` batches (in this process)."""
    import core.patches

    known = {patch.name for patch in core.patches.PATCHES}
    assert set(skip) <= known, f"unknown patch: {set(skip) - known}"
    core.patches.PATCHES = tuple(
        patch for patch in core.patches.PATCHES if patch.name not in skip
    )
    from app import create_app
    from auth import register_user, start_session
    from core import db
    from models import ItemModel, StoreModel

    folder = tempfile.mkdtemp(prefix="bench-patches-")
    app = create_app(
        {
            "APP_ENV": "production",
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
        if case == "item":
            path, method = f"/item/{item.id}", "GET"
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
    timings = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(requests):
            send()
        timings.append((time.perf_counter() - started) / requests * 1e6)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per batch")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--case", choices=["item", "refresh"], default="item")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        skip = json.loads(args.child)
        print(json.dumps(measure(skip, args.requests, args.batches, args.case)))
        return 0

    import core.patches

    variants = {ALL: []} | {
        f"without: {patch.name}": [patch.name] for patch in core.patches.PATCHES
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(args.rounds):
        order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
        for name in order:
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    json.dumps(variants[name]),
                    "--requests",
                    str(args.requests),
                    "--batches",
                    str(args.batches),
                    "--case",
                    args.case,
                ],
                cwd=ROOT,
                env={**os.environ, "LOG_LEVEL": "INFO"},
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # the access log of every request
                text=True,
                timeout=600,
                check=True,
            )
            results[name].append(float(child.stdout.strip().splitlines()[-1]))

    base = statistics.median(results[ALL])
    title = "GET /item/<id>" if args.case == "item" else "POST /refresh"
    print(f"{title}, in-process; medians over the rounds.")
    print("| variant | us per request | patch buys |")
    print("|---|---:|---:|")
    for name, values in results.items():
        cost = statistics.median(values)
        gain = (
            "" if name == ALL else f"{cost - base:.0f} us ({(cost - base) / cost:.0%})"
        )
        print(f"| {name} | {cost:.0f} | {gain} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
