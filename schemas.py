"""Request and response schemas (marshmallow); unknown fields are refused (422).

The shop's schemas (stores, items, tags) are here; the token layer's live in
auth/schemas.py and are re-exported below, so resources import every schema from
this module.
"""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from auth.factors.passkey_schemas import (
    CreationOptionsSchema,
    PasskeyLoginOptionsSchema,
    PasskeyLoginSchema,
    PasskeyRegistrationSchema,
    PasskeyRenameSchema,
    PasskeySchema,
    RequestOptionsSchema,
)
from auth.factors.schemas import (
    MAX_MFA_TOKEN_LENGTH,
    MfaLoginSchema,
    MfaRequiredSchema,
    MfaStatusSchema,
    RecoveryCodesSchema,
    TotpConfirmationSchema,
    TotpEnrolmentSchema,
)

# The token layer's schemas, for the resources; `USERNAME_RE` is models.user's.
from auth.schemas import (
    ApiTokenCreateSchema,
    ApiTokenSchema,
    JwkSchema,
    JwkSetSchema,
    NewApiTokenSchema,
    PasswordChangeSchema,
    ReauthenticationSchema,
    RegisteredUserSchema,
    RevocationSchema,
    ServerMetadataSchema,
    SessionSchema,
    TokenRequestSchema,
    TokenSchema,
    UserLoginSchema,
    UserRegisterSchema,
    UserSchema,
)
from core.fields import MAX_ID, Name, Text
from models.user import USERNAME_RE

__all__ = [
    "MAX_ID",
    "MAX_MFA_TOKEN_LENGTH",
    "USERNAME_RE",
    "ApiTokenCreateSchema",
    "ApiTokenSchema",
    "CreationOptionsSchema",
    "HealthSchema",
    "ItemQueryArgsSchema",
    "ItemSchema",
    "ItemUpdateSchema",
    "JwkSchema",
    "JwkSetSchema",
    "MessageSchema",
    "MfaLoginSchema",
    "MfaRequiredSchema",
    "MfaStatusSchema",
    "NewApiTokenSchema",
    "PasskeyLoginOptionsSchema",
    "PasskeyLoginSchema",
    "PasskeyRegistrationSchema",
    "PasskeyRenameSchema",
    "PasskeySchema",
    "PasswordChangeSchema",
    "PlainItemSchema",
    "PlainStoreSchema",
    "PlainTagSchema",
    "ReauthenticationSchema",
    "RecoveryCodesSchema",
    "RegisteredUserSchema",
    "RequestOptionsSchema",
    "RevocationSchema",
    "ServerMetadataSchema",
    "SessionSchema",
    "StoreSchema",
    "TagAndItemSchema",
    "TagSchema",
    "TokenRequestSchema",
    "TokenSchema",
    "TotpConfirmationSchema",
    "TotpEnrolmentSchema",
    "UserLoginSchema",
    "UserRegisterSchema",
    "UserSchema",
]

MAX_PRICE = 9_999_999_999.99
MAX_DESCRIPTION_LENGTH = 2000


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


class MessageSchema(Schema):
    """A plain confirmation."""

    message = fields.String(required=True)


class HealthSchema(Schema):
    """A probe's answer."""

    status = fields.String(required=True, metadata={"example": "ready"})
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Each dependency: ok or unavailable"},
    )
