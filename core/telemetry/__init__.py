"""Telemetry: what the service tells its operators.

- `metrics`: the Prometheus metrics, for the code that counts to import;
- `endpoint`: GET /metrics and the count of every request (the factory wires it);
- `logs`: the log format (JSON lines or text), request ids, the access log;
- `audit`: security events, with who, from where and in which request.

The rest of the app imports what it counts with and `audit` from here.
"""

from core.telemetry.audit import audit
from core.telemetry.metrics import (
    DPOP_PROOFS,
    LOGIN_BUDGET_REFUSALS,
    LOGINS,
    MFA_CHANGES,
    MFA_VERIFICATIONS,
    RATE_LIMIT_HITS,
    REAUTHENTICATIONS,
    REFRESHES,
    REVOCATION_STORE_ERRORS,
)

__all__ = [
    "DPOP_PROOFS",
    "LOGINS",
    "LOGIN_BUDGET_REFUSALS",
    "MFA_CHANGES",
    "MFA_VERIFICATIONS",
    "RATE_LIMIT_HITS",
    "REAUTHENTICATIONS",
    "REFRESHES",
    "REVOCATION_STORE_ERRORS",
    "audit",
]
