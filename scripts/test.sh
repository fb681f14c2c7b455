#!/usr/bin/env bash
# Set everything up, lint (ruff), type-check (mypy) and run the test suite.
#   scripts/test.sh            everything, with branch coverage and its floor (CI runs this)
#   scripts/test.sh --fast     the fast subset: no live servers, browser or fuzzing;
#                              in parallel (pytest-xdist, a worker per core)
#   scripts/test.sh ARGS...    pytest with ARGS (-k refresh -x): a selection, no floor
# PostgreSQL and Redis tests use TEST_POSTGRES_URL and TEST_REDIS_URL (default:
# 127.0.0.1); without them they skip locally, and fail when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
# The floor of the whole suite's branch coverage: a little under what it reaches
# (each run prints that figure), a margin for timing.
COVERAGE_FLOOR=97.5
scripts/setup.sh requirements-dev.txt

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
if [ "${1:-}" = "--fast" ]; then
  shift
  # In-process tests share nothing between them: one pytest worker per core. The
  # other folders hold no test of the subset: not even imported (nor schemathesis).
  # Races loop 5 rounds here, 20 in the whole suite (tests/helpers.py).
  export RACE_ROUNDS="${RACE_ROUNDS:-5}"
  exec .venv/bin/python -m pytest -n auto -m "not live and not browser and not fuzz" \
    -p no:schemathesis --ignore=tests/live --ignore=tests/browser --ignore=tests/fuzz "$@"
fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
coverage=(--cov --cov-report=term "--cov-fail-under=$COVERAGE_FLOOR")
if [ -z "${CI:-}" ] && ! .venv/bin/python -m tests.services; then
  echo "    Without them the coverage floor ($COVERAGE_FLOOR %) is not applied."
  coverage=(--cov --cov-report=term)
fi
exec .venv/bin/python -m pytest "${coverage[@]}"
