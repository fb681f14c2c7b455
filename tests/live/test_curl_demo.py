"""clients/curl/demo.sh: the README's three-step client flow, with curl, its
step-up variant (the RFC 9470 challenge, POST /reauthenticate, the request
repeated, still one session), a second factor (TOTP turned on, a login
completed with a code at /login/mfa, a step-up with a code) and a session bound
to a key (DPoP, RFC 9449: proofs from clients/curl/dpop-proof.py, the token
refused as Bearer and with a used proof, a refresh with a proof); and
clients/curl/api-token.sh, a script calling the API with an API token.

The script runs against a live server (gunicorn, two workers, the database
revocation store, two-second access tokens, so it waits about 8 s for a token to
expire) and against a stub server (tests/live/curl_stub.py) that breaks the
contract in one place at a time (a /revoke that ends nothing, for one): it must
then stop at that step, print FAIL with expected and actual, and exit 1.
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.live.curl_stub import STEP_UP_CHALLENGE, stub_server
from tests.servers import BIN, HOST, REPO, free_port

SCRIPT = REPO / "clients" / "curl" / "demo.sh"
API_TOKEN_SCRIPT = REPO / "clients" / "curl" / "api-token.sh"
DEMO_TIMEOUT = 30.0  # the live run takes about 12 s, 8 of them waiting
STEP_COUNT = 36

# The live run, step by step: (request, status, what the line must show).
LIVE_STEPS = [
    ("POST /register", 201, "username=demo_"),
    ("POST /login", 200, "token_type=Bearer expires_in=2"),
    ("GET /me", 200, "the access token works"),
    ("GET /me", 401, 'error=token_expired "The token has expired."'),
    ("POST /refresh", 200, "(fresh: false, same session)"),
    ("GET /me", 200, "the repeated request works"),
    ("POST /store", 201, "name=demo-store-"),
    ("POST /item", 401, "error=fresh_token_required"),
    ("POST /reauthenticate", 200, "(fresh: true, same session)"),
    ("POST /item", 201, "price=1.5"),
    ("GET /me/sessions", 200, "1 session, id="),
    ("POST /login", 200, "(a new session)"),
    ("POST /logout", 200, "Successfully logged out."),
    ("GET /me", 401, "error=token_revoked"),
    ("POST /refresh", 401, "error=token_revoked"),
    ("POST /login", 200, "(a new session)"),
    ("POST /revoke token=", 200, 'message="The token is revoked." (what a client'),
    ("GET /me", 401, "error=token_revoked"),
    ("POST /refresh", 401, "error=token_revoked"),
    ("POST /revoke token=", 200, "(an expired access token)"),
    ("POST /refresh", 401, "the expired token ended its session"),
    ("POST /login", 200, "(fresh: turning TOTP on needs a fresh login)"),
    ("POST /me/mfa/totp", 201, "otpauth_uri=otpauth://totp/... qr_svg=<svg...>"),
    ("POST /me/mfa/totp/confirm", 200, "10 recovery codes, shown this once"),
    ("GET /me/mfa", 200, "totp=true recovery_codes_left=10"),
    ("POST /login", 401, "error=mfa_required mfa_token="),
    ("POST /login/mfa", 200, 'amr=["pwd", "otp"] (a new session)'),
    ("POST /reauthenticate", 401, "error=mfa_required: the password alone"),
    ("POST /reauthenticate", 200, "(fresh, same session; a recovery code, once)"),
    ("DELETE /me/mfa/totp", 200, "totp=false recovery_codes_left=0"),
    ("POST /login + proof", 200, "token_type=DPoP cnf.jkt="),
    ("GET /me DPoP", 200, "the token with a proof of its key"),
    ("GET /me Bearer", 401, 'error=invalid_token "This token is DPoP-bound: '),
    ("GET /me DPoP", 401, 'error=invalid_dpop_proof "This DPoP proof was used before'),
    ("POST /refresh DPoP", 200, "(fresh: false) cnf.jkt="),
    ("GET /me DPoP", 200, "the refreshed token, with a new proof"),
]
# The lines of the DPoP steps that show a proof, and which one.
PROOFS = {31: "+ proof", 32: "+ proof", 34: "+ the same proof", 35: "+ proof"}


@pytest.fixture(autouse=True)
def tools() -> None:
    """bash and curl on PATH: skip without them, but fail in CI."""
    missing = [tool for tool in ("bash", "curl") if shutil.which(tool) is None]
    if missing:
        reason = f"clients/curl/demo.sh needs {' and '.join(missing)} on PATH"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is not skipped)")
        pytest.skip(reason)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_demo(tmp_path: Path, *args: str, script: Path = SCRIPT, **env: str) -> Run:
    """`bash demo.sh ARGS` (or another `script`) with a bounded run time; its
    whole group is killed."""
    script_env = {
        # python3 of the venv first: the script needs a python3, any will do.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
        "DEMO_MAX_WAIT": "30",
        "DEMO_LEEWAY": "5",
        **env,
    }
    process = subprocess.Popen(
        ["bash", str(script), *args],
        cwd=REPO,
        env=script_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: a timeout kills `sleep` too
    )
    try:
        stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"demo.sh ran over {DEMO_TIMEOUT}s:\n{stdout}\n{stderr}")
    leftovers = list(tmp_path.glob("stores-*"))
    assert not leftovers, f"temporary files left behind: {leftovers}"
    return Run(process.returncode, stdout, stderr)


def step_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"^ ?\d+\. ", line)]


# -- Against the live server ---------------------------------------------------------


def test_demo_walks_the_flow_against_a_live_server(tmp_path):
    with servers.demo_server(tmp_path) as port:
        started = time.monotonic()
        run = run_demo(tmp_path, f"http://{HOST}:{port}/")  # trailing slash dropped
        took = time.monotonic() - started

    output = run.stdout
    assert run.returncode == 0, f"{output}\n{run.stderr}"
    assert f"against http://{HOST}:{port} (" in output
    lines = step_lines(output)
    assert len(lines) == STEP_COUNT, output
    for number, (line, (request, status, shows)) in enumerate(
        zip(lines, LIVE_STEPS, strict=True), start=1
    ):
        assert re.match(rf"^ ?{number}\. {re.escape(request)}\b", line), line
        if number in PROOFS:
            assert PROOFS[number] in line, line
        assert f"-> {status} " in line, line
        assert shows in line, line
        assert line.endswith("  OK"), line
    for marker in ("token_expired", "fresh_token_required", "token_revoked"):
        assert marker in output
    # DPoP: the session's key is the one both tokens name, before and after the
    # refresh (the thumbprint, shortened, is shown on both lines).
    [jkt] = set(re.findall(r"cnf\.jkt=(\S+)", output))
    assert f"cnf.jkt={jkt} (this key's thumbprint: both tokens)" in lines[30]
    assert f"cnf.jkt={jkt} (the same key)" in lines[34]
    # The step-up: the challenge shown whole, under its step's line.
    assert (
        'error=fresh_token_required "The token is not fresh." max_age=900 -> step up'
        in output
    )
    assert f"\n    WWW-Authenticate: {STEP_UP_CHALLENGE}\n" in output
    assert "waiting 8 s for the access token to expire" in output
    assert re.search(rf"^All {STEP_COUNT} steps passed\.$", output, re.MULTILINE)
    assert "FAIL" not in output
    # Tokens are shortened: no JWT segment longer than a few characters is shown;
    # nor the TOTP secret (32 base32 characters).
    assert not re.search(r"eyJ[\w-]{12,}", output), output
    assert not re.search(r"[A-Z2-7]{32}", output), output
    assert took < DEMO_TIMEOUT
    print(f"\ndemo.sh against gunicorn: {STEP_COUNT} steps OK in {took:.1f}s")


def test_the_api_token_script_works_until_the_token_is_revoked(tmp_path):
    with servers.demo_server(tmp_path) as port:
        base = f"http://{HOST}:{port}"
        username = f"script_{secrets.token_hex(4)}"
        _, tokens = servers.sign_up(base, username)
        made = servers.request(
            base,
            "POST",
            "/me/api-tokens",
            token=tokens["access_token"],
            body={"name": "nightly", "expires_in_days": 1},
        )
        assert made.status == 201, made.body
        token = made.body["token"]
        time.sleep(2.1)  # past the session's access token: the API token goes on

        first = run_demo(
            tmp_path,
            base + "/",
            "Night shop",
            script=API_TOKEN_SCRIPT,
            STORES_API_TOKEN=token,
        )
        assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
        lines = first.stdout.splitlines()
        assert lines[0] == f"Acting as {username} (with an API token)"
        assert re.fullmatch(r"Created store Night shop \(id \d+\)", lines[1])
        assert lines[2] == "1 stores:"
        assert re.fullmatch(r"  Night shop \(id \d+\)", lines[3])
        assert token not in first.stdout + first.stderr

        revoked = servers.request(
            base, "DELETE", f"/me/api-tokens/{made.body['id']}", token=token
        )
        assert revoked.status == 200, revoked.body
        after = run_demo(
            tmp_path, base, script=API_TOKEN_SCRIPT, STORES_API_TOKEN=token
        )

    assert after.returncode == 1, after.stdout
    assert after.stdout == ""
    assert after.stderr.splitlines() == [
        "Reading the token's user failed: HTTP 401 token_revoked: "
        "The token has been revoked.",
        "The API token was revoked: make a new one.",
    ]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {"STORES_API_TOKEN": "x"}, "Usage:"),
        (("not-a-url",), {"STORES_API_TOKEN": "x"}, "Usage:"),
        (("http://127.0.0.1:9",), {}, "STORES_API_TOKEN is not set"),
    ],
)
def test_the_api_token_script_needs_a_url_and_a_token(tmp_path, args, env, says):
    run = run_demo(tmp_path, *args, script=API_TOKEN_SCRIPT, **env)
    assert run.returncode == 2
    assert says in run.stderr


def test_the_api_token_script_fails_when_nothing_answers(tmp_path):
    base = f"http://{HOST}:{free_port()}"
    run = run_demo(tmp_path, base, script=API_TOKEN_SCRIPT, STORES_API_TOKEN="x")
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == f"GET /me: no answer from {base}"


# -- Against a stub that breaks the contract -----------------------------------------


@pytest.mark.parametrize(
    ("broken", "step", "expected", "actual"),
    [
        ("register_500", 1, "expected status: 201", "actual   status: 500"),
        (
            "no_challenge",
            4,
            'expected WWW-Authenticate: Bearer realm="api", error="invalid_token"',
            "actual   WWW-Authenticate: (missing)",
        ),
        (
            "refresh_fresh",
            5,
            "expected access_token:fresh: false",
            "actual   access_token:fresh: true",
        ),
        (
            "refresh_not_rotated",
            5,
            "expected refresh_token: a new refresh token (rotation)",
            "actual   refresh_token: the one that was sent",
        ),
        (
            "old_challenge",
            8,
            'expected WWW-Authenticate: Bearer realm="api", '
            'error="insufficient_user_authentication", ..., max_age="N"',
            'actual   WWW-Authenticate: Bearer realm="api", error="invalid_token"',
        ),
        (
            "reauthenticate_forks",
            9,
            "expected access_token:fam: stub-family-1",
            "actual   access_token:fam: stub-family-forked",
        ),
        (
            "orphan_session",
            11,
            "expected sessions: one (the step-up starts none)",
            "actual   sessions: more than one",
        ),
        # /revoke says 200 for any token, so only the tokens afterwards tell.
        ("revoke_ignored", 18, "expected status: 401", "actual   status: 200"),
        (
            "revoke_ignores_access_tokens",
            21,
            "expected status: 401",
            "actual   status: 200",
        ),
        # A second factor the server forgets: at a login, in amr, at a step-up.
        ("mfa_ignored", 26, "expected status: 401", "actual   status: 200"),
        (
            "mfa_amr_password_only",
            27,
            'expected access_token:amr: ["pwd", "otp"]',
            'actual   access_token:amr: ["pwd"]',
        ),
        ("step_up_without_code", 28, "expected status: 401", "actual   status: 200"),
        # DPoP: a login that binds nothing, a bound token taken as a bearer
        # token, a proof taken twice.
        (
            "dpop_ignored",
            31,
            "expected token_type: DPoP",
            "actual   token_type: Bearer",
        ),
        ("dpop_bearer_accepted", 33, "expected status: 401", "actual   status: 200"),
        ("dpop_replay_accepted", 34, "expected status: 401", "actual   status: 200"),
    ],
)
def test_demo_fails_where_the_contract_is_broken(
    tmp_path, broken, step, expected, actual
):
    with stub_server(broken) as port:
        # The stub's tokens "expire" at once: no leeway to wait for (about 1 s).
        run = run_demo(tmp_path, f"http://{HOST}:{port}", DEMO_LEEWAY="0")

    output = run.stdout
    assert run.returncode == 1, f"{output}\n{run.stderr}"
    lines = step_lines(output)
    assert len(lines) == step, output
    assert all(line.endswith("  OK") for line in lines[:-1]), output
    assert lines[-1].endswith("  FAIL"), output
    assert expected in output
    assert actual in output
    assert f"FAILED at step {step} ({step - 1} passed before it)." in output
    assert "steps passed" not in output


def test_demo_passes_against_the_stub_when_nothing_is_broken(tmp_path):
    """The stub keeps the contract unless told otherwise: the failures above are
    the breaks', not the stub's."""
    with stub_server("") as port:
        run = run_demo(tmp_path, f"http://{HOST}:{port}", DEMO_LEEWAY="0")

    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert len(step_lines(run.stdout)) == STEP_COUNT
    assert f"All {STEP_COUNT} steps passed." in run.stdout


def test_demo_stops_when_the_access_lifetime_is_too_long_to_wait_for(tmp_path):
    with stub_server("long_lifetime") as port:
        run = run_demo(tmp_path, f"http://{HOST}:{port}")

    assert run.returncode == 3, f"{run.stdout}\n{run.stderr}"
    assert "access tokens for 900 s" in run.stdout
    assert "DEMO_MAX_WAIT=30" in run.stdout
    assert "JWT_ACCESS_TOKEN_EXPIRES=3" in run.stdout
    assert "FAIL" not in run.stdout


def test_demo_fails_when_nothing_answers(tmp_path):
    run = run_demo(tmp_path, f"http://{HOST}:{free_port()}")

    assert run.returncode == 1, f"{run.stdout}\n{run.stderr}"
    assert " 1. POST /register" in run.stdout
    assert "-> 000" in run.stdout
    assert "none (curl failed" in run.stdout
    assert "curl: (7)" in run.stderr


@pytest.mark.parametrize("args", [(), ("",), ("not-a-url",), ("a", "b")])
def test_demo_needs_a_base_url(tmp_path, args):
    run = run_demo(tmp_path, *args)

    assert run.returncode == 2, f"{run.stdout}\n{run.stderr}"
    assert run.stderr.startswith("Usage: demo.sh BASE_URL") or (
        "BASE_URL must start with http:// or https://" in run.stderr
    )
    assert "Usage: demo.sh BASE_URL" in run.stderr
    assert run.stdout == ""
