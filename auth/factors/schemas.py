"""The second factor's request and response schemas: TOTP enrolment, codes, the
login that waits for one. Re-exported by auth/schemas.py (and schemas.py)."""

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from core.errors import ErrorSchema

# Six ASCII digits: `\d` would take other scripts' digits too. The OpenAPI
# document's patterns are ECMA-262 (`$` ends the input; Python's needs `\Z`).
CODE_RE = re.compile(r"[0-9]{6}\Z")
CODE_PATTERN = "^[0-9]{6}$"
# Four groups of four base32 characters, hyphens optional, either case.
RECOVERY_CODE_RE = re.compile(r"[A-Za-z2-7]{4}(?:-?[A-Za-z2-7]{4}){3}\Z")
RECOVERY_CODE_PATTERN = "^[A-Za-z2-7]{4}(-?[A-Za-z2-7]{4}){3}$"
MAX_MFA_TOKEN_LENGTH = 128


def code_field(**kwargs) -> fields.String:
    """A TOTP code: six digits, as an authenticator app shows them."""
    return fields.String(
        load_only=True,
        validate=validate.Regexp(CODE_RE, error="Must be 6 digits (0-9)."),
        metadata={"example": "123456", "pattern": CODE_PATTERN},
        **kwargs,
    )


def recovery_code_field() -> fields.String:
    """A recovery code, as it was shown (xxxx-xxxx-xxxx-xxxx)."""
    return fields.String(
        load_only=True,
        validate=validate.Regexp(
            RECOVERY_CODE_RE, error="Must be a recovery code: xxxx-xxxx-xxxx-xxxx."
        ),
        metadata={"example": "abcd-efgh-ijkl-mnop", "pattern": RECOVERY_CODE_PATTERN},
    )


class OneCodeAtMost(Schema):
    """`code` or `recovery_code`, never both."""

    code = code_field()
    recovery_code = recovery_code_field()

    @validates_schema
    def _one_code(self, data: dict, **kwargs) -> None:
        if "code" in data and "recovery_code" in data:
            raise ValidationError(
                "Send a code or a recovery_code, not both.", "recovery_code"
            )


class MfaLoginSchema(OneCodeAtMost):
    """The second step of a login: the `mfa_token` /login answered, and a code."""

    mfa_token = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=MAX_MFA_TOKEN_LENGTH),
    )

    @validates_schema
    def _one_code_at_least(self, data: dict, **kwargs) -> None:
        if "code" not in data and "recovery_code" not in data:
            raise ValidationError("Send a code or a recovery_code.", "code")


class TotpConfirmationSchema(Schema):
    """The first code of a new secret, which turns TOTP on."""

    code = code_field(required=True)


class TotpEnrolmentSchema(Schema):
    """A new TOTP secret, shown this once: as text, as a URI and as a QR code."""

    secret = fields.String(required=True, metadata={"description": "Base32, 160 bits"})
    otpauth_uri = fields.String(
        required=True,
        metadata={
            "description": "otpauth://totp/ISSUER:USERNAME?secret=...&issuer=..."
        },
    )
    qr_svg = fields.String(
        required=True, metadata={"description": "The URI as an SVG QR code"}
    )


class RecoveryCodesSchema(Schema):
    """Ten single-use recovery codes, shown this once."""

    recovery_codes = fields.List(fields.String(), required=True)


class MfaStatusSchema(Schema):
    """The account's second factors."""

    totp = fields.Boolean(required=True)
    recovery_codes_left = fields.Integer(required=True)


class MfaRequiredSchema(ErrorSchema):
    """401 `mfa_required`: the password was right; at /login, the `mfa_token` that
    POST /login/mfa takes with a code (good for 5 minutes and 5 wrong codes)."""

    mfa_token = fields.String(
        metadata={"description": "Opaque; present in /login's answer"}
    )
