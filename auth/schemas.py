"""The token layer's request and response schemas: accounts, logins, token pairs,
sessions, API tokens, revocation and token requests, the signing keys and the
server metadata. Resources import them through schemas.py, which also
re-exports the second factor's (auth/factors/schemas.py)."""

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from auth.factors.passkey_schemas import AuthenticationCredentialSchema
from auth.factors.schemas import (
    OneCodeAtMost,
)
from core.fields import Name, UTCDateTime, timestamp_field
from models.user import USERNAME_DOC_PATTERN, USERNAME_RE

# Bounded before any hashing; a new password has a minimum length too.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
# A token sent in a request body (/revoke, /token): far more than any of ours.
MAX_TOKEN_LENGTH = 8192
# API tokens live 1-365 days, 90 unless asked otherwise.
DEFAULT_API_TOKEN_DAYS = 90
MAX_API_TOKEN_DAYS = 365


def password_field(*, new: bool = False, **kwargs) -> fields.String:
    """A password in a request (never dumped); a new one has a minimum length."""
    return fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(
            min=MIN_PASSWORD_LENGTH if new else 1, max=MAX_PASSWORD_LENGTH
        ),
        **kwargs,
    )


class UserRegisterSchema(Schema):
    """New account credentials."""

    username = fields.String(
        required=True,
        validate=validate.Regexp(
            USERNAME_RE,
            error="Use 3 to 80 letters, digits, '_', '.' or '-'.",
        ),
        metadata={"example": "alice", "pattern": USERNAME_DOC_PATTERN},
    )
    password = password_field(new=True, metadata={"example": "correct horse battery"})


class UserLoginSchema(Schema):
    """Login credentials (bounded before any hashing)."""

    username = fields.String(
        required=True,
        validate=validate.Length(min=1, max=80),
        metadata={"example": "alice"},
    )
    password = password_field(metadata={"example": "correct horse battery"})
    token_delivery = fields.String(
        load_default="body",
        validate=validate.OneOf(["body", "cookie"]),
        metadata={
            "description": "body: the tokens are in the answer (header mode). "
            "cookie: they are set as HttpOnly cookies that page JavaScript cannot "
            "read, with CSRF double-submit cookies (browser apps)."
        },
    )


class ReauthenticationSchema(OneCodeAtMost):
    """A step-up inside the session: the password again (JSON or form-encoded),
    and a code when the account has a second factor; or, instead, a passkey's
    answer to POST /reauthenticate/options (JSON)."""

    password = fields.String(
        load_only=True,
        validate=validate.Length(min=1, max=MAX_PASSWORD_LENGTH),
        metadata={"example": "correct horse battery"},
    )
    credential = fields.Nested(
        AuthenticationCredentialSchema,
        metadata={"description": "A passkey's assertion, instead of a password"},
    )

    @validates_schema
    def _password_or_passkey(self, data: dict, **kwargs) -> None:
        if "credential" in data and {"password", "code", "recovery_code"} & set(data):
            raise ValidationError(
                "Send a passkey's credential alone, or the password.", "credential"
            )
        if "credential" not in data and "password" not in data:
            raise ValidationError("Missing data for required field.", "password")


class PasswordChangeSchema(Schema):
    """The current password, and the new one."""

    current_password = password_field()
    new_password = password_field(new=True)

    @validates_schema
    def _must_differ(self, data: dict, **kwargs) -> None:
        if data.get("current_password") == data.get("new_password"):
            raise ValidationError(
                "Must differ from the current password.", "new_password"
            )


class UserSchema(Schema):
    """A user as others see it (never the hash)."""

    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)
    is_admin = fields.Boolean(dump_only=True)


class RegisteredUserSchema(Schema):
    """The answer to a registration."""

    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)


class TokenSchema(Schema):
    """A token pair, as RFC 6749 §5.1 shapes it (cookie mode: in cookies instead)."""

    access_token = fields.String(
        metadata={"description": "Absent when the tokens were set as cookies"}
    )
    refresh_token = fields.String(
        metadata={"description": "Absent when the tokens were set as cookies"}
    )
    token_type = fields.String(
        required=True,
        metadata={
            "example": "Bearer",
            "description": "DPoP when the login came with a DPoP proof (RFC 9449 "
            "§5): the tokens are bound to its key",
        },
    )
    expires_in = fields.Integer(
        required=True, metadata={"description": "Access token lifetime in seconds"}
    )


class RevocationSchema(Schema):
    """An RFC 7009 §2.1 revocation request (form-encoded, or JSON)."""

    class Meta:
        # RFC 6749 §3.2: unrecognized request parameters (client_id, ...) are
        # ignored, so off-the-shelf OAuth clients can call it.
        unknown = EXCLUDE

    token = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_TOKEN_LENGTH),
        metadata={"description": "The access or refresh token to revoke"},
    )
    token_type_hint = fields.String(
        validate=validate.Length(max=64),
        metadata={
            "description": "refresh_token or access_token; any other value is "
            "ignored (RFC 7009 §2.1), and the token is looked up either way",
            "example": "refresh_token",
        },
    )


class TokenRequestSchema(Schema):
    """A token request (RFC 6749 §4.3.2 password grant, §6 refresh_token grant)."""

    class Meta:
        # client_id, scope and any other parameter are ignored (RFC 6749 §3.2).
        unknown = EXCLUDE

    grant_type = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "password or refresh_token", "example": "password"},
    )
    username = fields.String(
        validate=validate.Length(min=1, max=80),
        metadata={"description": "password grant", "example": "alice"},
    )
    password = fields.String(
        load_only=True,
        validate=validate.Length(min=1, max=MAX_PASSWORD_LENGTH),
        metadata={"description": "password grant"},
    )
    refresh_token = fields.String(
        validate=validate.Length(min=1, max=MAX_TOKEN_LENGTH),
        metadata={"description": "refresh_token grant"},
    )
    scope = fields.String(
        validate=validate.Length(max=1024),
        metadata={"description": "Accepted and ignored: every token has every scope"},
    )


class SessionSchema(Schema):
    """One of the caller's sessions (one login and the refreshes that followed)."""

    id = fields.String(
        dump_only=True, metadata={"description": "Opaque; the key to end it"}
    )
    created_at = timestamp_field()
    last_used_at = timestamp_field()
    expires_at = timestamp_field()
    user_agent = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "At the last use"}
    )
    ip_address = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "At the last use"}
    )
    authenticated_at = UTCDateTime(
        dump_only=True,
        metadata={
            "description": "When its user last proved who they are: the login, or "
            "the latest POST /reauthenticate"
        },
    )
    dpop_jkt = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The RFC 7638 thumbprint of the key its tokens are bound "
            "to (their cnf.jkt, RFC 9449); null for a bearer session",
            "example": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        },
    )
    current = fields.Boolean(
        dump_only=True, metadata={"description": "The session of the calling token"}
    )


class ApiTokenCreateSchema(Schema):
    """A new API token's name and lifetime."""

    name = Name(required=True, metadata={"example": "nightly backup"})
    expires_in_days = fields.Integer(
        strict=True,
        load_default=DEFAULT_API_TOKEN_DAYS,
        validate=validate.Range(min=1, max=MAX_API_TOKEN_DAYS),
        metadata={"description": "Lifetime in days", "example": 90},
    )


class ApiTokenSchema(Schema):
    """One of the caller's API tokens (never the token itself)."""

    id = fields.Integer(
        dump_only=True, metadata={"description": "The key to delete it"}
    )
    name = fields.String(dump_only=True)
    created_at = timestamp_field()
    expires_at = timestamp_field()
    last_used_at = UTCDateTime(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Coarse: updated at most once a minute"},
    )


class NewApiTokenSchema(ApiTokenSchema):
    """A new API token: the token is shown in this answer only."""

    class Meta:
        exclude = ("last_used_at",)

    token = fields.String(
        dump_only=True,
        metadata={"description": "Send as `Authorization: Bearer <token>`; shown once"},
    )


class JwkSchema(Schema):
    """A public signing key (RFC 7517 §4; RFC 7518 §6 and RFC 8037 §2 members)."""

    kid = fields.String(dump_only=True, metadata={"description": "RFC 7638 thumbprint"})
    kty = fields.String(dump_only=True, metadata={"example": "OKP"})
    alg = fields.String(dump_only=True, metadata={"example": "EdDSA"})
    use = fields.String(dump_only=True, metadata={"example": "sig"})
    crv = fields.String(dump_only=True, metadata={"description": "OKP and EC keys"})
    x = fields.String(dump_only=True, metadata={"description": "OKP and EC keys"})
    y = fields.String(dump_only=True, metadata={"description": "EC keys"})
    n = fields.String(dump_only=True, metadata={"description": "RSA keys"})
    e = fields.String(dump_only=True, metadata={"description": "RSA keys"})


class JwkSetSchema(Schema):
    """RFC 7517 §5: the keys that verify this API's tokens (none for a secret)."""

    keys = fields.List(fields.Nested(JwkSchema), dump_only=True)


class ServerMetadataSchema(Schema):
    """RFC 8414 §2: what an OAuth 2.0 client needs to know of this server."""

    issuer = fields.String(dump_only=True, metadata={"description": "JWT_ISSUER"})
    token_endpoint = fields.String(dump_only=True)
    revocation_endpoint = fields.String(dump_only=True)
    jwks_uri = fields.String(dump_only=True)
    grant_types_supported = fields.List(fields.String(), dump_only=True)
    response_types_supported = fields.List(
        fields.String(),
        dump_only=True,
        metadata={"description": "Empty: there is no authorization endpoint"},
    )
    token_endpoint_auth_methods_supported = fields.List(fields.String(), dump_only=True)
    revocation_endpoint_auth_methods_supported = fields.List(
        fields.String(), dump_only=True
    )
    dpop_signing_alg_values_supported = fields.List(
        fields.String(),
        dump_only=True,
        metadata={"description": "RFC 9449 §5.1: DPOP_ALGORITHMS"},
    )
