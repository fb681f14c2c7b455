"""Tokens: log in, refresh, log out (one session, or every session), revoke."""

from flask import request
from flask.views import MethodView
from flask_jwt_extended import get_jwt
from marshmallow import Schema

from auth import (
    FORM,
    PASSWORD_AMR,
    authenticate,
    check_password,
    clear_token_cookies,
    end_all_sessions,
    end_session,
    failed_grant,
    failed_login,
    form_body_doc,
    form_parameters,
    grant_is_not,
    grant_tokens,
    login_budgets,
    public,
    rate_limited,
    reauthenticate,
    require_session,
    revoke_token,
    rotate_refresh_token,
    sent_in_cookies,
    start_session,
    token_answer,
    token_required,
    token_subject,
    token_user,
    token_username,
    wrong_password,
)
from core import Blueprint, ErrorSchema, audit
from resources import DATABASE_UNAVAILABLE
from schemas import (
    MessageSchema,
    ReauthenticationSchema,
    RevocationSchema,
    TokenRequestSchema,
    TokenSchema,
    UserLoginSchema,
)

blp = Blueprint("tokens", __name__, description="Log in, refresh and log out")
# Made once: a marshmallow schema's constructor deep-copies its fields, a cost
# measured on /token (docs/performance.md). `load` keeps no state.
TOKEN_REQUEST = TokenRequestSchema()
REVOCATION = RevocationSchema()
REAUTHENTICATION = ReauthenticationSchema()


@blp.route("/login")
class UserLogin(MethodView):
    @public
    @login_budgets(failed=failed_login)
    @blp.arguments(UserLoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, response="UNAUTHORIZED", description="Invalid credentials")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, credentials):
        """Log in: a fresh access token and a refresh token."""
        user = authenticate(credentials["username"], credentials["password"])
        tokens = start_session(user)
        return token_answer(
            tokens, as_cookies=credentials["token_delivery"] == "cookie"
        )


@blp.route("/reauthenticate")
class Reauthentication(MethodView):
    @token_required()
    @login_budgets(failed=wrong_password, username=token_username)
    @blp.doc(requestBody=form_body_doc(ReauthenticationSchema))
    @blp.response(200, TokenSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="The body is not JSON")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self):
        """Step up in this session: the password again, for a fresh access token."""
        claims = get_jwt()
        require_session(claims)
        parameters = json_or_form(REAUTHENTICATION)
        check_password(token_user(), parameters["password"])
        tokens = reauthenticate(token_subject(), claims, PASSWORD_AMR)
        audit(
            "reauthenticated", "Re-authenticated in the session", family=claims["fam"]
        )
        return token_answer(tokens, as_cookies=sent_in_cookies())


def json_or_form(schema: Schema) -> dict:
    """A body that is a JSON object (as every JSON body is read: 400 when it is
    not JSON, 422 when a field is wrong) or form-encoded (422 the same way)."""
    location = "form" if request.mimetype == FORM else "json"
    return Blueprint.ARGUMENTS_PARSER.parse(schema, request, location=location)


@blp.route("/refresh")
class TokenRefresh(MethodView):
    @rate_limited("RATELIMIT_REFRESH")
    @token_required(refresh=True)
    @blp.response(200, TokenSchema)
    def post(self):
        """Trade a refresh token for a non-fresh access and a new refresh token."""
        tokens = rotate_refresh_token(token_subject(), get_jwt())
        audit("refresh", "Tokens refreshed", family=get_jwt()["fam"])
        return token_answer(tokens, as_cookies=sent_in_cookies())


@blp.route("/logout")
class UserLogout(MethodView):
    @token_required()
    @blp.response(200, MessageSchema)
    def post(self):
        """Log out: revoke this login's tokens, the refresh token included."""
        end_session(get_jwt())
        audit("logout", "Logged out", family=get_jwt().get("fam"))
        clear_token_cookies()
        return {"message": "Successfully logged out."}


@blp.route("/logout/all")
class UserLogoutAll(MethodView):
    @token_required()
    @blp.response(200, MessageSchema)
    def post(self):
        """Log out everywhere: end every session of yours (API tokens stay)."""
        end_all_sessions(token_subject().id)
        audit("logout_all", "Logged out of every session")
        clear_token_cookies()
        return {"message": "Logged out of every session."}


@blp.route("/token")
class TokenEndpoint(MethodView):
    @public
    # The password grant is a login: it shares every budget of /login's, and
    # sets a device cookie too (a browser client such as Swagger UI keeps it).
    @login_budgets(failed=failed_grant, not_a_login=grant_is_not("password"))
    @rate_limited("RATELIMIT_REFRESH", exempt_when=grant_is_not("refresh_token"))
    @blp.doc(requestBody=form_body_doc(TokenRequestSchema, json=False))
    @blp.response(200, TokenSchema)
    @blp.alt_response(
        400,
        schema=ErrorSchema,
        description="RFC 6749 §5.2: invalid_request, invalid_grant (wrong "
        "credentials, or a refresh token that is not good) or "
        "unsupported_grant_type, with an error_description",
    )
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self):
        """Get tokens the OAuth 2.0 way (RFC 6749): password or refresh_token grant."""
        parameters = form_parameters(TOKEN_REQUEST, json=False)
        return token_answer(grant_tokens(parameters), as_cookies=False)


@blp.route("/revoke")
class TokenRevocation(MethodView):
    @public
    @rate_limited("RATELIMIT_REFRESH")
    @blp.doc(requestBody=form_body_doc(RevocationSchema))
    @blp.response(200, MessageSchema)
    @blp.alt_response(
        400,
        schema=ErrorSchema,
        description="invalid_request: no `token` parameter (RFC 7009 §2.1)",
    )
    @blp.alt_response(
        503,
        schema=ErrorSchema,
        description="The revocation store or the database is unavailable; retry "
        "later (a token is never reported revoked unless it is).",
    )
    def post(self):
        """Revoke a token (RFC 7009): its whole session ends; no other credential."""
        parameters = form_parameters(REVOCATION)
        claims = revoke_token(parameters["token"])
        if claims is not None:
            audit(
                "token_revocation",
                "Session revoked with one of its tokens",
                user_id=claims.get("sub"),
                family=claims.get("fam"),
            )
        # RFC 7009 §2.2: the same answer for a token that was unknown, malformed,
        # expired or revoked already, so a prober learns nothing.
        return {"message": "The token is revoked."}
