"""Passkeys (WebAuthn): register yours, log in with one, step up with one.

Each ceremony is two requests: options (with a new challenge, good for one use
and 5 minutes) for the browser's navigator.credentials.create() or get(), then
the credential it answered (docs/passkeys.md).
"""

from flask import g, request
from flask.views import MethodView
from flask_jwt_extended import get_jwt

from auth import (
    NO_STORE,
    Freshness,
    failed_passkey,
    login_budgets,
    passkey_login,
    passkeys,
    public,
    rate_limited,
    require_session,
    token_answer,
    token_required,
    token_user,
)
from core import Blueprint, ErrorSchema
from resources import DATABASE_UNAVAILABLE
from schemas import (
    CreationOptionsSchema,
    MessageSchema,
    PasskeyLoginOptionsSchema,
    PasskeyLoginSchema,
    PasskeyRegistrationSchema,
    PasskeyRenameSchema,
    PasskeySchema,
    RequestOptionsSchema,
    TokenSchema,
)

blp = Blueprint(
    "passkeys",
    __name__,
    description="Passkeys (WebAuthn): register, log in and step up without a password",
)
REFUSED = (
    "invalid_credential (an unknown passkey, a bad signature, another origin, no "
    "user verification, or a cloned authenticator) or challenge_expired (the "
    "challenge is unknown, used or older than 5 minutes: ask for new options)"
)


def credential_username() -> str:
    """The account a /login/passkey request's credential names (its failure
    budgets are that account's), looked up once a request."""
    if "passkey_username" not in g:
        body = request.get_json(silent=True) if request.is_json else None
        credential = body.get("credential") if isinstance(body, dict) else None
        g.passkey_username = passkeys.credential_owner(credential)
    return g.passkey_username


@blp.route("/me/passkeys/options")
class PasskeyCreationOptions(MethodView):
    @token_required(fresh=Freshness.ACCOUNT)
    @blp.response(200, CreationOptionsSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="too_many_passkeys")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self):
        """Options for navigator.credentials.create(): a new passkey of yours."""
        return passkeys.registration_options(token_user()), 200, NO_STORE


@blp.route("/me/passkeys")
class PasskeyList(MethodView):
    @token_required()
    @blp.response(200, PasskeySchema(many=True))
    def get(self):
        """List your passkeys, oldest first."""
        return passkeys.passkeys_of(token_user())

    @token_required(fresh=Freshness.ACCOUNT)
    @blp.arguments(PasskeyRegistrationSchema)
    @blp.response(201, PasskeySchema)
    @blp.alt_response(
        400,
        schema=ErrorSchema,
        description="invalid_credential (not an answer to your options, another "
        "origin, no user verification) or challenge_expired",
    )
    @blp.alt_response(
        409, schema=ErrorSchema, description="passkey_exists or too_many_passkeys"
    )
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, registration):
        """Register a passkey: the browser's answer to the options, and a name."""
        return passkeys.register(
            token_user(), registration["name"], registration["credential"]
        )


@blp.route("/me/passkeys/<id:passkey_id>")
class Passkey(MethodView):
    @token_required()
    @blp.arguments(PasskeyRenameSchema)
    @blp.response(200, PasskeySchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No passkey of yours")
    def patch(self, rename, passkey_id):
        """Rename one of your passkeys."""
        return passkeys.rename(token_user(), passkey_id, rename["name"])

    @token_required(fresh=Freshness.ACCOUNT)
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No passkey of yours")
    def delete(self, passkey_id):
        """Delete one of your passkeys: it logs in and steps up no more."""
        passkeys.remove(token_user(), passkey_id)
        return {"message": "Passkey deleted."}


@blp.route("/login/passkey/options")
class PasskeyLoginOptions(MethodView):
    @public
    @rate_limited("RATELIMIT_PASSKEY_OPTIONS")
    @blp.arguments(PasskeyLoginOptionsSchema)
    @blp.response(200, RequestOptionsSchema)
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, asked):
        """Options for navigator.credentials.get(): any passkey of this site, or a
        username's."""
        return passkeys.login_options(asked.get("username")), 200, NO_STORE


@blp.route("/login/passkey")
class PasskeyLogin(MethodView):
    @public
    @login_budgets(failed=failed_passkey, username=credential_username)
    @blp.arguments(PasskeyLoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, schema=ErrorSchema, description=REFUSED)
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, login):
        """Log in with a passkey, no password: /login's answer, a fresh token."""
        tokens = passkey_login(login["credential"], login["token_delivery"])
        return token_answer(tokens, as_cookies=login["token_delivery"] == "cookie")


@blp.route("/reauthenticate/options")
class StepUpOptions(MethodView):
    @token_required()
    @blp.response(200, RequestOptionsSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="no_passkeys")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self):
        """Options for a passkey step-up in this session (POST /reauthenticate)."""
        claims = get_jwt()
        require_session(claims)
        options = passkeys.step_up_options(token_user(), claims["fam"])
        return options, 200, NO_STORE
