"""bench/ stands alone: it runs as modules from the repository's root and imports
nothing of tests/ (its live servers come from devtools/, as the live tests' do).
Its DPoP-bound cases make requests the app serves, each proof once."""

import ast
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.dpop import PROOF_MAX_AGE, proof_lines
from bench.run import Bench, build_parser, run_python_load
from tests.dpop import BASE, ProofKey, bound_login
from tests.helpers import REPO, assert_error, create_item
from tests.servers import BIN


def test_no_benchmark_module_imports_the_tests():
    imported = {
        f"{path.name}: {name}"
        for path in sorted((REPO / "bench").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
        if name == "tests" or name.startswith("tests.")
    }
    assert imported == set()


@pytest.mark.parametrize(
    ("module", "option"),
    [
        ("bench.run", "--quick"),
        ("bench.run", "--proof-algorithm"),
        ("bench.profile", "--case"),
        ("bench.proof_cost", "--algorithms"),
    ],
)
def test_the_benchmark_runs_as_a_module_from_the_root(module, option):
    result = subprocess.run(
        [str(BIN / "python"), "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout
    assert option in result.stdout


# --- the DPoP-bound cases (bench/dpop.py), in process: no server, no load ---------


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_item_dpop_lines_are_requests_the_app_serves_once(
    client, headers, store, algorithm
):
    item = create_item(client, headers, store["id"])
    key = ProofKey(algorithm)
    access = bound_login(client, key).get_json()["access_token"]
    path = f"/item/{item['id']}"
    lines = proof_lines(key, "GET", BASE + path, [access] * 3, duration=1)

    assert len({line.split(" ")[1] for line in lines}) == 3  # a proof each
    for line in lines:
        response = client.get(path, headers=as_wrk_sends(line))
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == item
    assert_error(
        client.get(path, headers=as_wrk_sends(lines[0])),
        401,
        "invalid_dpop_proof",
        "This DPoP proof was used before: make a new one for every request.",
    )


def test_refresh_dpop_lines_each_rotate_a_bound_session_of_their_own(auth, client):
    auth.register()
    key = ProofKey("ES256")
    refresh_tokens = [
        bound_login(client, key).get_json()["refresh_token"] for _ in range(2)
    ]
    lines = proof_lines(key, "POST", BASE + "/refresh", refresh_tokens, duration=1)

    for line, token in zip(lines, refresh_tokens, strict=True):
        assert line.split(" ")[0] == token
        response = client.post("/refresh", headers=as_wrk_sends(line))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["token_type"] == "DPoP"


def as_wrk_sends(line: str) -> dict[str, str]:
    """The headers bench/wrk_dpop.lua (and the Python load) make of a line."""
    token, proof = line.split(" ")
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def test_proofs_that_would_go_stale_during_the_run_are_refused():
    key = ProofKey("ES256")
    with pytest.raises(SystemExit, match="lower --proofs-per-run"):
        proof_lines(key, "GET", BASE + "/item/1", ["token"], duration=PROOF_MAX_AGE)


def test_a_bound_run_hands_wrk_one_file_of_lines_per_thread(tmp_path, monkeypatch):
    args = build_parser().parse_args(["--threads", "2", "--proof-algorithm", "EdDSA"])
    assert args.proof_algorithm == "EdDSA"
    bench = Bench(args)
    bench.use_wrk, bench.folder = True, tmp_path
    runs = []

    def fake_wrk(url, _args, options, script_args):
        runs.append((url, options, script_args))
        return {"rps": 100.0, "p50": 1.0, "p99": 2.0, "errors": 0, "socket_errors": ""}

    monkeypatch.setattr("bench.run.run_wrk", fake_wrk)
    lines = [f"token{i} proof{i}" for i in range(4)]
    assert bench.measure(
        "refresh-dpop", "http://h/refresh", method="POST", proofs=lines
    )

    [(url, options, (prefix, method))] = runs
    assert (url, options[0], method) == ("http://h/refresh", "-s", "POST")
    assert options[1].endswith("bench/wrk_dpop.lua")
    files = [Path(f"{prefix}.{slot}").read_text().splitlines() for slot in (1, 2)]
    assert files == [lines[:2], lines[2:]]
    assert bench.samples["refresh-dpop"]["rps"] == [100.0]


def test_the_python_load_sends_each_line_as_a_dpop_request():
    sent: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            sent.append((self.headers["Authorization"], self.headers["DPoP"]))
            status = 401 if self.headers["DPoP"] == "exhausted" else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args = build_parser().parse_args(["--connections", "1"])
        args.duration = 0.2  # then lines run out: "exhausted", refused
        url = f"http://127.0.0.1:{server.server_port}/item/1"
        result = run_python_load(
            url, args, "GET", None, [["t1 p1", "t2 p2"]], dpop=True
        )
    finally:
        server.shutdown()
        server.server_close()
    assert sent[:2] == [("DPoP t1", "p1"), ("DPoP t2", "p2")]
    assert set(sent[2:]) == {("DPoP exhausted", "exhausted")}
    assert result["errors"] == len(sent) - 2
