"""The link between items and tags (many to many)."""

from sqlalchemy import Column, ForeignKey, Table

from core import db

# Deleting an item drops its links; a linked tag cannot be deleted (409), except
# together with its store, whose items (and so the links) go in the same statement.
items_tags = Table(
    "items_tags",
    db.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True, index=True),
)
