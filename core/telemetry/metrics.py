"""Prometheus metrics: what the server did, at `GET /metrics` (the text format).

Under gunicorn each worker is a process of its own, and a scrape reaches one of
them. prometheus-client's multiprocess mode makes every scrape show the whole
server: each process writes its values to files in `PROMETHEUS_MULTIPROC_DIR`,
and the worker that answers a scrape adds up the files of all of them, the dead
ones' counters included. gunicorn.conf.py sets that directory up (created and
wiped when the master starts, dead workers marked); without it (`flask run`, the
tests) the metrics are this process's own. The variable must be set before
prometheus-client is imported, which is why only gunicorn.conf.py sets it.

This module holds the metrics alone, for the code that counts to import;
endpoint.py serves them, counts the requests and says how their labels stay
bounded.
"""

import os
import time

from prometheus_client import Counter, Gauge, Histogram, ProcessCollector

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# From 1 ms (a cached token's GET) to 5 s (far past any sane request).
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# How often a worker refreshes its own CPU and memory figures (multiprocess mode).
PROCESS_REFRESH_SECONDS = 5.0

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, URL rule and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's start to its response, by method and URL rule.",
    ["method", "route"],
    buckets=DURATION_BUCKETS,
)
TOKEN_REJECTED = Counter(
    "auth_token_rejections",
    "Requests refused with a 401 for their token, by the answer's error code.",
    ["reason"],
)
LOGINS = Counter(
    "auth_logins", "Password logins (/login, /token), by outcome.", ["outcome"]
)
REAUTHENTICATIONS = Counter(
    "auth_reauthentications",
    "Re-authentications inside a session (POST /reauthenticate), by outcome.",
    ["outcome"],
)
MFA_VERIFICATIONS = Counter(
    "auth_mfa_verifications",
    "Second factors and passkeys checked (login, step-up, enrolment), by factor "
    "(totp, recovery_code, passkey) and outcome (success, failure; clone: a "
    "passkey's signature counter went backwards).",
    ["factor", "outcome"],
)
MFA_CHANGES = Counter(
    "auth_mfa_changes",
    "Changes to accounts' second factors and passkeys, by action (totp_started, "
    "totp_enabled, totp_disabled, recovery_codes_renewed, passkey_registered, "
    "passkey_deleted).",
    ["action"],
)
REFRESHES = Counter(
    "auth_refresh",
    "Refresh tokens traded: rotated, a retry within the grace window, or a "
    "reuse that revoked the session.",
    ["outcome"],
)
DPOP_PROOFS = Counter(
    "auth_dpop_proofs",
    "DPoP proofs checked (RFC 9449), by outcome: valid, invalid, replayed, "
    "key_mismatch (a bound token with another key's proof), nonce (the server's "
    "nonce was asked for).",
    ["outcome"],
)
RATE_LIMIT_HITS = Counter(
    "rate_limit_hits", "Requests refused with a 429, by the limit.", ["limit"]
)
LOGIN_BUDGET_REFUSALS = Counter(
    "auth_login_budget_refusals",
    "Logins refused with a 429 because a failed-login budget is spent, by budget: "
    "username_address, username (every address together) or device.",
    ["budget"],
)
REVOCATION_STORE_ERRORS = Counter(
    "revocation_store_errors",
    "Calls to the revocation store that failed (each answered 503).",
)


# The process collector's figures that each worker copies (under the same names).
WORKER_PROCESS_GAUGES = {
    "process_cpu_seconds_total": "CPU time of each worker, in seconds.",
    "process_resident_memory_bytes": "Resident memory of each worker, in bytes.",
    "process_start_time_seconds": "When each worker started, in seconds since "
    "the epoch.",
}


class WorkerProcess:
    """This worker's CPU and memory, as gauges with a `pid` label.

    prometheus-client's process collector reads the process it runs in, so in
    multiprocess mode it would show only whichever worker answers the scrape.
    Instead each worker copies its own figures into `liveall` gauges every few
    seconds while it serves requests (and when it answers a scrape); a dead
    worker's gauges go with it (`mark_process_dead` in gunicorn.conf.py).
    """

    def __init__(self) -> None:
        self._gauges = {
            # Not in the default registry, whose process collector has these
            # names: a scrape reads them from the workers' files.
            name: Gauge(name, documentation, multiprocess_mode="liveall", registry=None)
            for name, documentation in WORKER_PROCESS_GAUGES.items()
        }
        self._collector = ProcessCollector(registry=None)
        self._next = 0.0

    def refresh(self, force: bool = False) -> None:
        """Copy this process's figures into the gauges, at most every few seconds."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + PROCESS_REFRESH_SECONDS
        for family in self._collector.collect():
            for sample in family.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is not None:
                    gauge.set(sample.value)


# Only in multiprocess mode: otherwise the default registry's own process
# collector already shows the one process there is.
worker_process = WorkerProcess() if MULTIPROCESS else None
