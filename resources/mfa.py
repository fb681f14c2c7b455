"""The caller's second factors: TOTP enrolment, recovery codes, what is on."""

from flask.views import MethodView

from auth import NO_STORE, Freshness, token_required, token_user, totp
from core import Blueprint, ErrorSchema
from resources import DATABASE_UNAVAILABLE
from schemas import (
    MfaStatusSchema,
    RecoveryCodesSchema,
    TotpConfirmationSchema,
    TotpEnrolmentSchema,
)

blp = Blueprint(
    "mfa", __name__, description="Your second factors: TOTP and recovery codes"
)
NOT_ENABLED = "totp_not_enabled: the account has no TOTP"


@blp.route("/me/mfa")
class MfaStatus(MethodView):
    @token_required()
    @blp.response(200, MfaStatusSchema)
    def get(self):
        """What protects your account: TOTP on or off, recovery codes left."""
        return totp.status(token_user())


@blp.route("/me/mfa/totp")
class Totp(MethodView):
    @token_required(fresh=Freshness.ACCOUNT)
    @blp.response(201, TotpEnrolmentSchema)
    @blp.alt_response(
        409, schema=ErrorSchema, description="totp_enabled: turn it off first"
    )
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self):
        """Start TOTP: a new secret, shown only here; confirm it with a code."""
        return totp.start_enrolment(token_user()), 201, NO_STORE

    @token_required(fresh=Freshness.ACCOUNT)
    @blp.response(200, MfaStatusSchema)
    @blp.alt_response(409, schema=ErrorSchema, description=NOT_ENABLED)
    def delete(self):
        """Turn TOTP off: a password alone logs in again; recovery codes die."""
        user = token_user()
        totp.disable(user)
        return totp.status(user)


@blp.route("/me/mfa/totp/confirm")
class TotpConfirmation(MethodView):
    @token_required(fresh=Freshness.ACCOUNT)
    @blp.arguments(TotpConfirmationSchema)
    @blp.response(200, RecoveryCodesSchema)
    @blp.alt_response(
        400, schema=ErrorSchema, description="invalid_code: not the new secret's"
    )
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="no_pending_enrolment: start one with POST /me/mfa/totp",
    )
    def post(self, confirmation):
        """Turn TOTP on with a first code: ten recovery codes, shown only here."""
        codes = totp.confirm_enrolment(token_user(), confirmation["code"])
        return {"recovery_codes": codes}, 200, NO_STORE


@blp.route("/me/mfa/recovery-codes")
class RecoveryCodes(MethodView):
    @token_required(fresh=Freshness.ACCOUNT)
    @blp.response(200, RecoveryCodesSchema)
    @blp.alt_response(409, schema=ErrorSchema, description=NOT_ENABLED)
    def post(self):
        """New recovery codes, shown only here; the old ones stop working."""
        codes = totp.renew_recovery_codes(token_user())
        return {"recovery_codes": codes}, 200, NO_STORE
