"""Tokens: log in, refresh, log out (one session, or every session), revoke."""

from flask import g, request
from flask.views import MethodView
from flask_jwt_extended import get_jwt
from marshmallow import Schema

from auth import (
    FORM,
    check_revocable,
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
    passkey_step_up,
    password_login,
    public,
    rate_limited,
    reauthenticate,
    require_session,
    revoke_token,
    rotate_refresh_token,
    second_factor_login,
    sent_in_cookies,
    step_up_factors,
    token_answer,
    token_required,
    token_subject,
    token_user,
    token_username,
    waiting_username,
    wrong_code,
    wrong_password,
)
from core import Blueprint, ErrorSchema, audit
from resources import DATABASE_UNAVAILABLE
from schemas import (
    MAX_MFA_TOKEN_LENGTH,
    MessageSchema,
    MfaLoginSchema,
    MfaRequiredSchema,
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


def mfa_token_username() -> str:
    """The account a /login/mfa request's `mfa_token` is for (its failure budgets
    are that account's), looked up once a request."""
    if "mfa_username" not in g:
        body = request.get_json(silent=True) if request.is_json else None
        token = body.get("mfa_token") if isinstance(body, dict) else None
        valid = isinstance(token, str) and 0 < len(token) <= MAX_MFA_TOKEN_LENGTH
        g.mfa_username = waiting_username(token) if valid and token else ""
    return g.mfa_username


MFA_REQUIRED = (
    "invalid_credentials (unknown username or wrong password), or, for an "
    "account with a second factor and the right password, mfa_required with an "
    "mfa_token for POST /login/mfa"
)


@blp.route("/login")
class UserLogin(MethodView):
    @public
    @login_budgets(failed=failed_login)
    @blp.arguments(UserLoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, schema=MfaRequiredSchema, description=MFA_REQUIRED)
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, credentials):
        """Log in: a fresh access token and a refresh token (or a second step)."""
        delivery = credentials["token_delivery"]
        tokens = password_login(
            credentials["username"], credentials["password"], delivery
        )
        return token_answer(tokens, as_cookies=delivery == "cookie")


@blp.route("/login/mfa")
class SecondFactorLogin(MethodView):
    @public
    # A wrong code spends the account's failed-login budgets, as a wrong password.
    @login_budgets(failed=wrong_code, username=mfa_token_username)
    @blp.arguments(MfaLoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(
        401,
        schema=ErrorSchema,
        description="invalid_code (wrong, or used already), or invalid_mfa_token "
        "(unknown, used, expired, or spent on 5 wrong codes: log in again)",
    )
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, second_step):
        """Complete a login with a TOTP code or a recovery code: /login's answer."""
        tokens, delivery = second_factor_login(
            second_step["mfa_token"],
            second_step.get("code"),
            second_step.get("recovery_code"),
        )
        return token_answer(tokens, as_cookies=delivery == "cookie")


@blp.route("/reauthenticate")
class Reauthentication(MethodView):
    @token_required()
    @login_budgets(failed=wrong_password, username=token_username)
    @blp.doc(requestBody=form_body_doc(ReauthenticationSchema))
    @blp.response(200, TokenSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="The body is not JSON")
    @blp.alt_response(
        401,
        schema=ErrorSchema,
        description="invalid_credentials (wrong password), mfa_required (the "
        "account has a second factor: send a code too), invalid_code, "
        "invalid_credential or challenge_expired (a passkey's), or a refused token",
    )
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self):
        """Step up in this session: the password (and a code) or a passkey."""
        claims = get_jwt()
        require_session(claims)
        parameters = json_or_form(REAUTHENTICATION)
        if "credential" in parameters:
            amr = passkey_step_up(token_user(), claims["fam"], parameters["credential"])
        else:
            amr = step_up_factors(
                token_user(),
                parameters["password"],
                parameters.get("code"),
                parameters.get("recovery_code"),
            )
        tokens = reauthenticate(token_subject(), claims, amr)
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
        claims = revoke_token(parameters["token"], check_revocable)
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
