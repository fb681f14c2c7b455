"""Where a worker's time goes under load: py-spy on the gunicorn workers while wrk runs.

    .venv/bin/python -m bench.profile                  # case 1, GET /item/<id>
    .venv/bin/python -m bench.profile --case refresh   # case 3, POST /refresh
    .venv/bin/python -m bench.profile --case token     # POST /token, refresh grant

Run from the repository's root. Starts the project like bench.run does (same
gunicorn settings, a fresh SQLite database, data seeded through the API), samples
every worker with py-spy (in requirements-dev.txt; it needs ptrace rights, which
root has) while wrk drives the case, and prints the share of the workers' samples
spent in each part of a request, then the functions with the largest inclusive
share. Shares are of all samples, so the gunicorn part is what the bare app pays
too.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Bench, build_parser, mint_refresh_tokens, seed_through_api
from devtools.servers import APP, BIN, migrate

# The parts of a request, each named by a frame that every sample inside it carries.
PARTS = [
    ("gunicorn: read and parse the request", "gunicorn/http/message.py"),
    ("gunicorn: write the response", "Response.write (gunicorn/http/wsgi.py"),
    ("the Flask app, all of it", "Flask.wsgi_app (flask/app.py"),
    ("  request context push and pop", "flask/ctx.py"),
    ("  before_request hooks", "Flask.preprocess_request"),
    ("  token check (Flask-JWT-Extended)", "verify_jwt_in_request"),
    ("    signature and claims (decode_token)", "decode_token (flask_jwt_extended"),
    ("    token header parsed again", "get_unverified_jwt_headers"),
    ("    revocation check", "check_revocation (auth/callbacks.py"),
    ("    user check (primary-key read)", "user_exists (auth/callbacks.py"),
    ("  rate limit (route decorator)", "RouteLimit.__call__"),
    ("  GET /item/<id>: Core read", "ItemModel.read"),
    ("  /refresh: rotation and two new tokens", "rotate_refresh_token"),
    ("  /token: the grant's own checks", "grant_tokens (auth/oauth.py"),
    ("  response: schema dump and JSON", "ResponseMixin.response"),
    ("  after_request hooks", "Flask.process_response"),
    ("    access log line", "_finish_request (core/telemetry/logs.py"),
    ("    metrics (count the request)", "_count_request (core/telemetry/endpoint.py"),
    ("  all SQLAlchemy work", "sqlalchemy/"),
    ("    session close at teardown", "scoped_session.remove"),
    ("  all logging", "logging/__init__.py"),
    ("Flask-Limiter's expiry thread (memory storage)", "expire_events"),
]


def frame_name(frame: str) -> str:
    """`func (path:line)` without the line, so a function's lines add up."""
    return frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame


def read_samples(files: list[Path]) -> tuple[int, list[tuple[set[str], int]]]:
    """py-spy's raw format: one `frame;frame;... count` line per distinct stack."""
    stacks, total = [], 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = {frame_name(frame) for frame in stack.split(";")}
            stacks.append((frames, int(count)))
            total += int(count)
    return total, stacks


def report(total: int, stacks: list[tuple[set[str], int]], top: int) -> None:
    print(f"\n{total} samples of the workers\n")
    print("| part of a request | share of samples |")
    print("|---|---:|")
    for label, pattern in PARTS:
        count = sum(n for frames, n in stacks if any(pattern in f for f in frames))
        if count:
            print(f"| {label} | {100 * count / total:.1f}% |")
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        for frame in frames:
            inclusive[frame] += count
    print(f"\nThe {top} functions with the largest inclusive share, below the app:")
    shown = 0
    for frame, count in inclusive.most_common():
        if "site-packages" in frame or "(gunicorn" in frame or "threading" in frame:
            if not any(key in frame for key in ("flask", "sqlalchemy", "jwt", "limit")):
                continue
        if frame.startswith(("Flask.", "View.", "MethodView.", "<module>")):
            continue
        print(f"  {100 * count / total:5.1f}%  {frame}")
        shown += 1
        if shown == top:
            break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["item", "refresh", "token"], default="item")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None and not (BIN / tool).exists():
            sys.exit(f"{tool} is needed: apt-get install wrk; pip install py-spy")
    # The benchmark's own settings, with this run's workers and duration.
    load = build_parser().parse_args(
        ["--workers", str(args.workers), "--duration", str(args.seconds)]
    )
    bench = Bench(load)
    try:
        return profile(bench, args)
    finally:
        bench.stop_all()


def profile(bench: Bench, args) -> int:
    env = bench.project_env(args.backend, bench.folder / "profile.db")
    migrate(env)
    server = bench.start("project", APP, env, "/readyz")
    access, _store, me = seed_through_api(server.base, items=20)
    tokens = None
    if args.case in ("refresh", "token"):
        tokens = mint_refresh_tokens(env, me["id"], args.seconds * 4_000)

    workers = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    out = Path(tempfile.mkdtemp(prefix="profile-", dir=bench.folder))
    files = [out / f"worker-{pid}.txt" for pid in workers]
    samplers = [
        subprocess.Popen(
            [py_spy, "record", "--pid", pid, "--duration", str(args.seconds - 1)]
            + ["--rate", "200", "--format", "raw", "--output", str(file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, file in zip(workers, files, strict=True)
    ]
    time.sleep(0.5)
    if args.case == "item":
        bench.measure("item", server.base + "/item/5", token=access)
    elif args.case == "refresh":
        bench.measure("refresh", server.base + "/refresh", method="POST", tokens=tokens)
    else:
        bench.measure(
            "token", server.base + "/token", method="POST", tokens=tokens, form=True
        )
    for sampler in samplers:
        sampler.wait(timeout=args.seconds + 30)
    report(*read_samples([f for f in files if f.exists()]), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
