"""marshmallow fields that the shop's schemas (schemas.py) and the token layer's
(auth/schemas.py) share: names, free text, moments in UTC, database ids."""

import re
from datetime import UTC, datetime

from marshmallow import ValidationError, fields, validate

# Ids are 32-bit integers in the database (PostgreSQL's `integer`).
MAX_ID = 2**31 - 1

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


class UTCDateTime(fields.DateTime):
    """A moment, ISO 8601 with its UTC offset (SQLite hands it back naive)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


def timestamp_field() -> UTCDateTime:
    """A read-only moment in UTC."""
    return UTCDateTime(dump_only=True)
