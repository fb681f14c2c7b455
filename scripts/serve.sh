#!/usr/bin/env bash
# Set everything up and run the API on the embedded default:
# SQLite under instance/, in-memory blocklist. PORT and HOST may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt

export APP_ENV="${APP_ENV:-development}"
host="${HOST:-127.0.0.1}"
port="${PORT:-5000}"
if [ "$APP_ENV" = "development" ]; then
  # Passkeys run on a domain only (never an IP address): the page at localhost.
  export WEBAUTHN_ORIGINS="${WEBAUTHN_ORIGINS:-http://localhost:$port}"
fi

echo "==> Migrating the database"
.venv/bin/flask --app app db upgrade
echo
echo "  API:        http://$host:$port/"
echo "  Swagger UI: http://$host:$port/swagger-ui"
echo "  OpenAPI:    http://$host:$port/openapi.json"
echo "  Demo:       http://localhost:$port/demo (passkeys need localhost)"
echo
exec .venv/bin/flask --app app run --host "$host" --port "$port"
