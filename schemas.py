"""Request and response schemas (marshmallow); unknown fields are refused (422)."""

import re
from datetime import UTC, datetime

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

MAX_PRICE = 9_999_999_999.99
MAX_DESCRIPTION_LENGTH = 2000
# Ids are 32-bit integers in the database (PostgreSQL's `integer`).
MAX_ID = 2**31 - 1
# Bounded before any hashing; a new password has a minimum length too.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
# A token sent in a request body (/revoke, /token): far more than any of ours.
MAX_TOKEN_LENGTH = 8192
# API tokens live 1-365 days, 90 unless asked otherwise.
DEFAULT_API_TOKEN_DAYS = 90
MAX_API_TOKEN_DAYS = 365

# 3-80 letters, digits, "_", "." or "-". Python's pattern ends with \Z (its `$`
# accepts a final newline); the OpenAPI document's (ECMA-262) ends with `$`.
USERNAME_RULE = "^[A-Za-z0-9_.-]{3,80}"
USERNAME_RE = re.compile(USERNAME_RULE + r"\Z")
USERNAME_DOC_PATTERN = USERNAME_RULE + "$"


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# The same rules for the OpenAPI document, whose patterns are ECMA-262 regular
# expressions (no `\Z`; `$` ends the input): a name has no control character and at
# least one visible one; free text has no NUL.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
TEXT_PATTERN = r"^[^\x00]*$"


class Text(fields.String):
    """Free text: any character but NUL (databases refuse it, PostgreSQL loudly)."""

    def __init__(self, **kwargs) -> None:
        metadata = {"pattern": TEXT_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        return text


class Name(fields.String):
    """A name of 1-80 characters that is not blank; surrounding spaces are dropped."""

    def __init__(self, **kwargs) -> None:
        metadata = {"pattern": NAME_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(
            validate=validate.Length(min=1, max=80), metadata=metadata, **kwargs
        )

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        stripped = text.strip()
        if not stripped:
            raise ValidationError("Must not be blank.")
        if CONTROL_CHARACTERS.search(stripped):
            raise ValidationError("Must not contain control characters.")
        return stripped


class Number(fields.Float):
    """A JSON number: strings such as "12.50" and booleans are refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("Must be a number.")
        return super()._deserialize(value, attr, data, **kwargs)


# How the OpenAPI document says "at most two decimal places".
CENTS = {"multipleOf": 0.01}


def _at_most_two_decimals(value: float) -> None:
    """Prices are in cents: 19.99 is fine, 19.999 is not."""
    if round(value, 2) != value:
        raise ValidationError("Must have at most two decimal places.")


def price_field(**kwargs) -> Number:
    """A price: 0 to MAX_PRICE, in cents."""
    metadata = {**kwargs.pop("metadata", {}), **CENTS}
    return Number(
        validate=[validate.Range(min=0, max=MAX_PRICE), _at_most_two_decimals],
        metadata=metadata,
        **kwargs,
    )


def description_field(**kwargs) -> Text:
    """An optional item description."""
    return Text(
        allow_none=True,
        validate=validate.Length(max=MAX_DESCRIPTION_LENGTH),
        **kwargs,
    )


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


class PlainStoreSchema(Schema):
    """A store without its contents."""

    id = fields.Integer(dump_only=True)
    name = Name(required=True, metadata={"example": "Corner shop"})


class PlainItemSchema(Schema):
    """An item without its relations."""

    id = fields.Integer(dump_only=True)
    name = Name(required=True, metadata={"example": "Chair"})
    price = price_field(required=True, metadata={"example": 15.99})
    description = description_field(metadata={"example": None})


class PlainTagSchema(Schema):
    """A tag without its relations."""

    id = fields.Integer(dump_only=True)
    name = Name(required=True, metadata={"example": "furniture"})


class ItemSchema(PlainItemSchema):
    """An item with its store and tags."""

    store_id = fields.Integer(
        required=True,
        load_only=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_ID),
    )
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    tags = fields.List(fields.Nested(PlainTagSchema), dump_only=True)


class ItemUpdateSchema(Schema):
    """A partial update of an item; at least one field."""

    name = Name()
    price = price_field()
    description = description_field()

    @validates_schema
    def _not_empty(self, data: dict, **kwargs) -> None:
        if not data:
            raise ValidationError("Provide at least one of name, price, description.")


class ItemQueryArgsSchema(Schema):
    """Filters for the item list."""

    store_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "Only this store"},
    )


class StoreSchema(PlainStoreSchema):
    """A store with its items and tags."""

    items = fields.List(fields.Nested(PlainItemSchema), dump_only=True)
    tags = fields.List(fields.Nested(PlainTagSchema), dump_only=True)


class TagSchema(PlainTagSchema):
    """A tag with its store and linked items."""

    store_id = fields.Integer(dump_only=True)
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    items = fields.List(fields.Nested(PlainItemSchema), dump_only=True)


class TagAndItemSchema(Schema):
    """The result of unlinking a tag from an item."""

    message = fields.String()
    item = fields.Nested(ItemSchema)
    tag = fields.Nested(TagSchema)


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


class ReauthenticationSchema(Schema):
    """A step-up inside the session: the password again (JSON or form-encoded)."""

    password = password_field(metadata={"example": "correct horse battery"})


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
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(
        required=True, metadata={"description": "Access token lifetime in seconds"}
    )


class MessageSchema(Schema):
    """A plain confirmation."""

    message = fields.String(required=True)


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


class UTCDateTime(fields.DateTime):
    """A moment, ISO 8601 with its UTC offset (SQLite hands it back naive)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


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


def timestamp_field() -> UTCDateTime:
    """A read-only moment in UTC."""
    return UTCDateTime(dump_only=True)


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


class HealthSchema(Schema):
    """A probe's answer."""

    status = fields.String(required=True, metadata={"example": "ready"})
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Each dependency: ok or unavailable"},
    )
