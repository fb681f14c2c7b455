#!/usr/bin/env bash
# Set everything up, lint, and run the test suite. Extra arguments go to pytest;
# a first argument --fast runs only the fast subset (no live, browser or fuzz tests).
# PostgreSQL tests use TEST_POSTGRES_URL (default: postgres@127.0.0.1:5432);
# without it they skip locally, and fail when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest"
if [ "${1:-}" = "--fast" ]; then
  shift
  set -- -m "not live and not browser and not fuzz" "$@"
fi
exec .venv/bin/python -m pytest "$@"
