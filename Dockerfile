# syntax=docker/dockerfile:1

# Build stage: the dependencies, in a virtualenv (wheels only: nothing compiles).
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# Final stage: the virtualenv and the code, no build tools, an unprivileged user.
# APP_ENV=production leaves the browser demo at /demo off: to serve it, run the
# image with -e DEMO_ENABLED=true.
# Production needs PUBLIC_URL (https://api.example.com) or TRUSTED_HOSTS: -e
# PUBLIC_URL=... The HEALTHCHECK calls /healthz at 127.0.0.1, which answers any Host.
FROM python:3.12-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production \
    PORT=8000
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=app:app . .
# instance/ holds the SQLite database when DATABASE_URL is not set.
RUN mkdir -p instance && chown app:app instance
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=2)"]
ENTRYPOINT ["./docker-entrypoint.sh"]
