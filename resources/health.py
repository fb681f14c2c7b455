"""Liveness and readiness, for load balancers and orchestrators."""

from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from auth import public
from blocklist import RevocationStoreUnavailable, get_blocklist
from core import Blueprint, db, error_response
from schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz")
class Health(MethodView):
    @public
    @blp.response(200, HealthSchema)
    def get(self):
        """Liveness: the process answers (no dependency is checked)."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @public
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    def get(self):
        """Readiness: the database and the revocation store answer."""
        checks = {"database": _check_database(), "blocklist": _check_blocklist()}
        failed = sorted(name for name, state in checks.items() if state != "ok")
        if failed:
            return error_response(
                503,
                f"Not ready: {' and '.join(failed)} unavailable.",
                "service_unavailable",
                errors=checks,
            )
        return {"status": "ready", "checks": checks}


def _check_database() -> str:
    try:
        db.session.execute(db.text("SELECT 1"))
        return "ok"
    except SQLAlchemyError:
        db.session.rollback()
        return "unavailable"


def _check_blocklist() -> str:
    try:
        get_blocklist().ping()
        return "ok"
    except RevocationStoreUnavailable:
        return "unavailable"
