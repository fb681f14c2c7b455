"""Start-up warnings are written in the configured log format: JSON lines in
production (LOG_FORMAT=json), like every other line a log shipper reads.

Each test starts the app in a fresh process, as a gunicorn worker does (in
pytest, Flask leaves its own handler out: pytest's capture handler is there)."""

import json
import os

from tests.helpers import MFA_KEY, run_python

# Production warns of these two (a public /metrics, an issuer that is not https).
WARNINGS = ("METRICS_TOKEN is not set", "JWT_ISSUER is not an https URL")


def start_up_stderr(tmp_path, log_format: str) -> list[str]:
    """The stderr lines of a production app built in a fresh process."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "MFA_ENCRYPTION_KEY": MFA_KEY,
        "LOG_FORMAT": log_format,
        "JWT_SECRET_KEY": "k" * 48,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'warnings.db'}",
        "PUBLIC_URL": "https://api.example.com",
        "TRUSTED_HOSTS": "api.example.com",
        "METRICS_ENABLED": "true",
        "JWT_ISSUER": "stores-api",
    }
    # cwd: no .env file of a developer's
    result = run_python("from app import create_app; create_app()", env, tmp_path)
    return result.stderr.splitlines()


def test_start_up_warnings_are_json_lines_with_json_logs(tmp_path):
    lines = start_up_stderr(tmp_path, "json")

    entries = [json.loads(line) for line in lines]  # every line is JSON
    warnings = [e for e in entries if e["level"] == "WARNING"]
    for expected in WARNINGS:
        (entry,) = [e for e in warnings if e["message"].startswith(expected)]
        assert entry["logger"] == "app"
        assert entry["time"].endswith("Z")


def test_start_up_warnings_are_plain_lines_with_text_logs(tmp_path):
    lines = start_up_stderr(tmp_path, "text")

    for expected in WARNINGS:
        (line,) = [line for line in lines if expected in line]
        assert not line.startswith("{")
        assert f" WARNING app: {expected}" in line
