#!/bin/sh
# Bring the schema up to date, then become gunicorn (PID 1 gets the signals, so
# SIGTERM drains in-flight requests: see graceful_timeout in gunicorn.conf.py).
# MIGRATE_ON_START=0 skips the migration (run it once as a job when scaling out).
# Extra arguments are passed to gunicorn.
set -eu
cd "$(dirname "$0")"
if [ "${MIGRATE_ON_START:-1}" != "0" ]; then
  flask --app app db upgrade
fi
exec gunicorn --config gunicorn.conf.py "app:create_app()" "$@"
