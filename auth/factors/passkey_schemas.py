"""The passkeys' request and response schemas: a browser's credential JSON
(WebAuthn L3 §5.1.8 `toJSON()`), the ceremonies' options, a passkey as listed.
Re-exported by auth/schemas.py (and schemas.py).

A credential is bounded and shaped here, before py_webauthn parses a byte of it;
members a browser adds that the server does not read are dropped (EXCLUDE).
"""

import re

from marshmallow import EXCLUDE, Schema, fields, validate

from core.fields import Name, timestamp_field

# base64url (RFC 4648 §5), padded or not. ECMA-262 for the OpenAPI document.
BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")
BASE64URL_PATTERN = "^[A-Za-z0-9_-]*={0,2}$"
# The credential id is at most 1023 bytes (§5.8.3): 1364 characters of base64url.
MAX_ID_CHARACTERS = 1364


def base64url_field(max_length: int, **kwargs) -> fields.String:
    """Bytes as base64url text, of at most `max_length` characters."""
    return fields.String(
        validate=[
            validate.Length(min=1, max=max_length),
            validate.Regexp(BASE64URL_RE, error="Must be base64url."),
        ],
        metadata={"pattern": BASE64URL_PATTERN},
        **kwargs,
    )


class _Credential(Schema):
    """What every PublicKeyCredential's JSON has."""

    class Meta:
        unknown = EXCLUDE

    id = base64url_field(MAX_ID_CHARACTERS, required=True)
    rawId = base64url_field(MAX_ID_CHARACTERS, required=True)
    type = fields.String(required=True, validate=validate.Equal("public-key"))
    authenticatorAttachment = fields.String(
        allow_none=True, validate=validate.Length(max=32)
    )
    clientExtensionResults = fields.Dict(load_default=dict)


class AttestationResponseSchema(Schema):
    """AuthenticatorAttestationResponseJSON (§5.2.1): what create() answered."""

    class Meta:
        unknown = EXCLUDE

    clientDataJSON = base64url_field(4096, required=True)
    attestationObject = base64url_field(65536, required=True)
    transports = fields.List(
        fields.String(validate=validate.Length(max=32)),
        validate=validate.Length(max=10),
    )


class AssertionResponseSchema(Schema):
    """AuthenticatorAssertionResponseJSON (§5.2.2): what get() answered."""

    class Meta:
        unknown = EXCLUDE

    clientDataJSON = base64url_field(4096, required=True)
    authenticatorData = base64url_field(4096, required=True)
    signature = base64url_field(1024, required=True)
    userHandle = fields.String(
        allow_none=True,
        validate=[
            validate.Length(max=88),  # 64 bytes (§5.4.3)
            validate.Regexp(BASE64URL_RE, error="Must be base64url."),
        ],
    )


class RegistrationCredentialSchema(_Credential):
    """RegistrationResponseJSON: `credential.toJSON()` after create()."""

    response = fields.Nested(AttestationResponseSchema, required=True)


class AuthenticationCredentialSchema(_Credential):
    """AuthenticationResponseJSON: `credential.toJSON()` after get()."""

    response = fields.Nested(AssertionResponseSchema, required=True)


def passkey_name(**kwargs) -> Name:
    """What the user calls a passkey ("laptop", "phone"): a name, as any."""
    return Name(metadata={"example": "laptop"}, **kwargs)


class PasskeyRegistrationSchema(Schema):
    """A new passkey: its name, and the browser's answer to the options."""

    name = passkey_name(required=True)
    credential = fields.Nested(RegistrationCredentialSchema, required=True)


class PasskeyRenameSchema(Schema):
    """A passkey's new name."""

    name = passkey_name(required=True)


class PasskeySchema(Schema):
    """A passkey as its owner sees it (never its key)."""

    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    created_at = timestamp_field()
    last_used_at = timestamp_field()


class PasskeyLoginOptionsSchema(Schema):
    """A login's options: with no username, any passkey of this site."""

    username = fields.String(
        validate=validate.Length(min=1, max=80), metadata={"example": "alice"}
    )


class PasskeyLoginSchema(Schema):
    """A login with a passkey: the browser's answer, and how tokens are sent."""

    credential = fields.Nested(AuthenticationCredentialSchema, required=True)
    token_delivery = fields.String(
        load_default="body",
        validate=validate.OneOf(["body", "cookie"]),
        metadata={"description": "As at POST /login"},
    )


class CreationOptionsSchema(Schema):
    """PublicKeyCredentialCreationOptionsJSON (§5.4): for create(), with
    PublicKeyCredential.parseCreationOptionsFromJSON() or base64url decoding."""

    rp = fields.Dict(required=True)
    user = fields.Dict(required=True, metadata={"description": "id: the user handle"})
    challenge = fields.String(required=True, metadata={"description": "base64url"})
    pubKeyCredParams = fields.List(fields.Dict(), required=True)
    timeout = fields.Integer(required=True, metadata={"description": "ms"})
    excludeCredentials = fields.List(fields.Dict(), required=True)
    authenticatorSelection = fields.Dict(required=True)
    attestation = fields.String(required=True)


class RequestOptionsSchema(Schema):
    """PublicKeyCredentialRequestOptionsJSON (§5.5): for get(), with
    PublicKeyCredential.parseRequestOptionsFromJSON() or base64url decoding."""

    challenge = fields.String(required=True, metadata={"description": "base64url"})
    timeout = fields.Integer(required=True, metadata={"description": "ms"})
    rpId = fields.String(required=True)
    allowCredentials = fields.List(fields.Dict(), required=True)
    userVerification = fields.String(required=True)
