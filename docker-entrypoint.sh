#!/bin/sh
# Bring the schema up to date, then hand the process over to gunicorn (PID 1).
set -eu
flask --app app db upgrade
exec gunicorn --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_CONCURRENCY:-2}" \
  --access-logfile - "app:create_app()" "$@"
