"""Another revision of the project beside this one, in the same run (`--baseline REV`).

A change is measured best A/B, interleaved, in one run: the machine's speed drifts
over minutes, so two runs of `bench.run` (one before, one after) compare the
machine as much as the code. With `--baseline REV` the bench checks REV out into a
git worktree in its folder and serves it too, on a database of its own migrated
and seeded by REV's own code, with refresh tokens minted by REV's own code, and
measures case 1 (`item-baseline`) and case 3 (`refresh-baseline`) beside this
tree's `item-<store>` and `refresh`, each next to a bare run like every case.
"""

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from devtools import servers

# Runs inside the other tree (`python -c` puts its folder first on sys.path); the
# imports are the ones every revision since the token layer moved to auth/ has.
MINT = """
import json, sys
from sqlalchemy import event
from app import create_app
from auth import start_session
from core import db
from models import UserModel

user_id, count, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# A DPoP key's thumbprint binds the sessions (RFC 9449 §6.1); an older revision,
# which has no binding, is never asked for one.
bound = {"jkt": sys.argv[4]} if len(sys.argv) > 4 else {}
app = create_app({"BLOCKLIST_BACKEND": "memory"})
with app.app_context():
    # One commit a login: without a sync to disk each, minutes instead of an hour.
    event.listen(
        db.engine, "connect", lambda c, _: c.execute("PRAGMA synchronous=OFF")
    )
    user = db.session.get(UserModel, user_id)
    tokens = [start_session(user, **bound)["refresh_token"] for _ in range(count)]
    db.engine.dispose()
with open(output, "w") as file:
    json.dump(tokens, file)
"""


@contextlib.contextmanager
def checkout(revision: str, folder: Path) -> Iterator[Path]:
    """REV checked out (detached) in `folder`/baseline until the block ends."""
    tree = folder / "baseline"
    git = ["git", "-C", str(servers.REPO)]
    subprocess.run(
        [*git, "worktree", "add", "--detach", "--quiet", str(tree), revision],
        check=True,
        timeout=120,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            [*git, "worktree", "remove", "--force", str(tree)], check=False, timeout=120
        )


def mint_refresh_tokens(
    env: dict,
    user_id: int,
    count: int,
    tree: Path = servers.REPO,
    jkt: str | None = None,
) -> list[str]:
    """`count` refresh tokens, each of a login of its own, minted by `tree`'s code
    with `env`'s key (in a subprocess: one tree's modules never meet another's);
    with `jkt`, of sessions bound to the DPoP key it names."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "minted.json"
        bound = [] if jkt is None else [jkt]
        subprocess.run(
            [sys.executable, "-c", MINT, str(user_id), str(count), str(output)] + bound,
            cwd=tree,
            env=env,
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(output.read_text())
