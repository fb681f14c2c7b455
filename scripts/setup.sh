#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install a requirements file into it, only
# when that file changed since the last install. Usage: scripts/setup.sh FILE
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"

recent_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
python=""
for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
  if recent_enough "$candidate"; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> Creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi

stamp=".venv/.installed-$(basename "$requirements")"
digest="$(cat "$requirements" requirements.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$digest" ]; then
  echo "==> Installing $requirements"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$digest" > "$stamp"
fi
