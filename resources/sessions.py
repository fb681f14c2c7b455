"""The caller's sessions: list them, end one, end all the others."""

from flask.views import MethodView
from flask_jwt_extended import get_jwt

from auth import (
    clear_token_cookies,
    end_other_sessions,
    end_session_by_id,
    list_sessions,
    token_required,
    token_subject,
)
from core import Blueprint, audit
from schemas import MessageSchema, SessionSchema

blp = Blueprint("sessions", __name__, description="The caller's sessions (logins)")


@blp.route("/me/sessions")
class SessionList(MethodView):
    @token_required()
    @blp.response(200, SessionSchema(many=True))
    def get(self):
        """List your sessions that have not ended, newest first."""
        return list_sessions(token_subject().id, get_jwt().get("fam"))

    @token_required()
    @blp.response(200, MessageSchema)
    def delete(self):
        """End every session of yours but this one."""
        ended = end_other_sessions(token_subject().id, get_jwt().get("fam"))
        audit("sessions_revoked_others", "Other sessions ended", count=ended)
        return {"message": f"Ended {ended} other session(s)."}


@blp.route("/me/sessions/<session_id>")
class Session(MethodView):
    @token_required()
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such session of yours")
    def delete(self, session_id):
        """End one of your sessions: its tokens answer 401 token_revoked from now."""
        end_session_by_id(token_subject().id, session_id)
        audit("session_revoked", "Session ended", family=session_id)
        if session_id == get_jwt().get("fam"):
            clear_token_cookies()
        return {"message": "Session ended."}
