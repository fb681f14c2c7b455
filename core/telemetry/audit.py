"""Audit events: security events, each with who, from where and in which request.

Audit records never carry a password or a token: only ids, the client address
and the request id, so they can be shipped anywhere.
"""

import logging
from typing import Any

from flask import g, request

from core.telemetry.logs import current_user_id

audit_log = logging.getLogger("api.audit")


def audit(
    event: str, message: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log a security event with who, from where and in which request."""
    fields.setdefault("user_id", current_user_id())
    audit_log.log(
        level,
        message,
        extra={
            "event": event,
            # The client's address as the trusted proxies give it (ProxyFix).
            "client": request.remote_addr,
            "request_id": g.get("request_id"),
            **fields,
        },
    )
