"""The README runs as written: its curl walkthrough (the bash blocks between
`<!-- walkthrough -->` and `<!-- /walkthrough -->`) runs with bash against a live
server started with the settings the README tells the reader to serve with, and
every answer it documents (a `# 200 {...}` comment after a curl command) is what
the server answered: the status, and the body as far as it is shown.

In a documented body, `...` in an object stands for keys left out, and a string
"eyJ...(claim: value)" for any token of ours (with that claim, when one is named).
"""

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import REPO, demo_server
from tests.services import program

README = REPO / "README.md"
START, END = "<!-- walkthrough -->", "<!-- /walkthrough -->"
BASE = "http://127.0.0.1:5000"  # where the README's server listens
SERVE = re.compile(r"`((?:[A-Z_]+=\S+ )+)\./scripts/serve\.sh`")
BLOCK = re.compile(r"^ *```bash\n(.*?)^ *```$", re.MULTILINE | re.DOTALL)
ANSWER = re.compile(r"^# (\d{3}) (.+)$")
CURL = re.compile(r"(?<![\w/-])curl ")
RUN_TIMEOUT = 60.0
# Every curl of the walkthrough goes through this function: it answers as curl
# does, and appends the status and the body (base64, one line) to $CURL_LOG.
RECORDING_CURL = r"""
curl() {
  local body status
  body=$(mktemp)
  status=$(command curl -o "$body" -w '%{http_code}' "$@")
  cat "$body"
  printf '%s %s\n' "$status" "$(base64 -w0 <"$body")" >>"$CURL_LOG"
  rm -f "$body"
}
"""


@dataclass
class Call:
    """A curl command of the walkthrough and what the README says it answers."""

    command: str
    status: int | None = None  # None: not documented (it must answer 2xx)
    body: str = ""


def walkthrough() -> str:
    """The walkthrough's bash blocks, in order, as one script."""
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "walkthrough markers"
    section = text.split(START, 1)[1].split(END, 1)[0]
    blocks = [
        "\n".join(line.strip() for line in block.splitlines())
        for block in BLOCK.findall(section)
    ]
    assert blocks, "no bash block between the walkthrough markers"
    return "\n".join(blocks) + "\n"


def documented_calls(script: str) -> list[Call]:
    """Each curl command (a line may continue with a backslash), with the answer
    documented after it, if any."""
    calls: list[Call] = []
    command: list[str] = []
    for line in script.splitlines():
        answer = ANSWER.match(line)
        if answer:
            calls[-1].status, calls[-1].body = int(answer[1]), answer[2]
            continue
        if command or not line.startswith("#"):
            command.append(line)
        if command and not line.endswith("\\"):
            joined = " ".join(command)
            calls += [Call(joined) for _ in CURL.findall(joined.split(" # ")[0])]
            command = []
    return calls


def serve_settings() -> dict[str, str]:
    """The settings the README tells the reader to start the server with."""
    match = SERVE.search(README.read_text().split(START, 1)[0])
    assert match, "the README says how to serve the walkthrough"
    return dict(pair.split("=", 1) for pair in match[1].split())


def expected(documented: str):
    """A documented body as JSON, each `...` of an object as a key '...'."""
    text = re.sub(r",\s*\.\.\.\s*}", ', "...": true}', documented)
    text = re.sub(r"{\s*\.\.\.\s*,", '{"...": true,', text)
    return json.loads(text)


def claims(token: str) -> dict:
    """A JWT's payload, not verified (the server checked it)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def mismatch(want, got, where: str = "body") -> str | None:
    """Where `got` differs from the documented `want`, or None."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where}: {got!r} is not an object"
        keys = set(want) - {"..."}
        if not keys <= set(got) or ("..." not in want and set(got) != keys):
            return f"{where}: keys {sorted(got)}, documented {sorted(keys)}"
        found = (mismatch(want[key], got[key], f"{where}.{key}") for key in keys)
        return next((problem for problem in found if problem), None)
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{where}: {got!r}, documented {want!r}"
        found = (
            mismatch(w, g, f"{where}[{i}]")
            for i, (w, g) in enumerate(zip(want, got, strict=True))
        )
        return next((problem for problem in found if problem), None)
    if isinstance(want, str) and want.startswith("eyJ..."):
        if not (isinstance(got, str) and got.startswith("eyJ")):
            return f"{where}: {got!r} is not a token"
        claim = re.fullmatch(r"\((\w+): (\w+)\)", want.removeprefix("eyJ..."))
        if claim and claims(got).get(claim[1]) != json.loads(claim[2]):
            return f"{where}: its {claim[1]} is {claims(got).get(claim[1])!r}"
        return None
    return None if want == got else f"{where}: {got!r}, documented {want!r}"


@pytest.fixture(autouse=True)
def tools() -> None:
    """bash, curl and jq (the README's walkthrough uses them)."""
    for tool in ("bash", "curl", "jq"):
        program(tool, package=tool, tests="the README's walkthrough")


def run(script: str, folder: Path) -> list[tuple[int, object]]:
    """The script in bash; what each curl answered, in order."""
    log = folder / "curl.log"
    log.touch()
    result = subprocess.run(
        ["bash", "-c", RECORDING_CURL + script],
        cwd=folder,
        env={"PATH": os.environ["PATH"], "CURL_LOG": str(log), "TMPDIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = []
    for line in log.read_text().splitlines():
        status, _, body = line.partition(" ")
        raw = base64.b64decode(body)
        answers.append((int(status), json.loads(raw) if raw else None))
    return answers


def test_the_readmes_walkthrough_answers_as_documented(tmp_path):
    script = walkthrough()
    calls = documented_calls(script)
    assert BASE in script
    # What the walkthrough must show: a store made before it is used, both kinds
    # of 401 a client meets.
    shown = [f"{call.status} {call.body}" for call in calls if call.status]
    assert any(c.status == 201 and "/store" in c.command for c in calls), shown
    assert any("token_expired" in answer for answer in shown), shown
    assert any("fresh_token_required" in answer for answer in shown), shown

    with demo_server(tmp_path, **serve_settings()) as port:
        answers = run(script.replace(BASE, f"http://127.0.0.1:{port}"), tmp_path)

    assert len(answers) == len(calls), (answers, calls)
    problems = []
    for call, (status, body) in zip(calls, answers, strict=True):
        if call.status is None:
            problem = None if 200 <= status < 300 else f"status {status}"
        elif status != call.status:
            problem = f"status {status}, documented {call.status}"
        else:
            problem = mismatch(expected(call.body), body)
        if problem:
            problems.append(f"{call.command}\n  -> {problem}\n  answered {body}")
    assert problems == [], "\n".join(problems)


def test_documented_bodies_are_read_as_the_readme_means_them():
    assert expected('{"id": 1, "name": "Chair", ...}') == {
        "id": 1,
        "name": "Chair",
        "...": True,
    }
    assert mismatch(expected('{"a": 1, ...}'), {"a": 1, "b": 2}) is None
    assert mismatch(expected('{"a": 1}'), {"a": 1, "b": 2}) is not None
    assert mismatch(expected('[{"a": 1}]'), [{"a": 2}]) == "body[0].a: 2, documented 1"
    assert mismatch("eyJ...", "eyJabc") is None
    assert mismatch("eyJ...", "abc") is not None


def test_every_curl_command_of_the_walkthrough_is_counted():
    calls = documented_calls(
        "X=$(curl -s a | jq .b)  # a comment\n"
        "# 200 {}\n"
        "curl -s -X POST c \\\n"
        "     -d '{}'\n"
        "# 201 []\n"
        "# not an answer\n"
    )
    assert [(call.status, call.body) for call in calls] == [(200, "{}"), (201, "[]")]
    assert calls[1].command == "curl -s -X POST c \\      -d '{}'"
