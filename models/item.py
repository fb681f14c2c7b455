"""Items for sale in a store."""

from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, Select, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core import Model, db
from models.base import not_found, read_connection
from models.item_tag import items_tags

if TYPE_CHECKING:
    from models.store import StoreModel
    from models.tag import TagModel


class ItemModel(Model):
    """An item belongs to one store and carries tags of that store."""

    __tablename__ = "items"
    __table_args__ = (CheckConstraint("price >= 0", name="price_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    # Exact cents in the database, a JSON number on the wire.
    price: Mapped[float] = mapped_column(Numeric(12, 2, asdecimal=False))
    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )

    store: Mapped["StoreModel"] = relationship(back_populates="items")
    tags: Mapped[list["TagModel"]] = relationship(
        secondary=items_tags, back_populates="items", order_by="TagModel.id"
    )

    def __repr__(self) -> str:
        return f"<ItemModel {self.id} {self.name!r}>"

    @classmethod
    def read(cls, item_id: int) -> dict:
        """The item as the API shows it, with its store and tags; 404 if absent.

        The API's hottest read, so it is one Core query turned into plain dicts:
        building ORM objects for it cost more than running the query (bench/).
        """
        rows = read_connection().execute(_read_statement(), {"item_id": item_id}).all()
        if not rows:
            raise not_found(cls)
        item = rows[0]
        return {
            "id": item.id,
            "name": item.name,
            "price": item.price,
            "description": item.description,
            "store": {"id": item.store_id, "name": item.store_name},
            # The outer join gives one row per tag, or one row of NULLs for none.
            "tags": [
                {"id": row.tag_id, "name": row.tag_name}
                for row in rows
                if row.tag_id is not None
            ],
        }


@cache
def _read_statement() -> Select:
    """Built once, on first use (when every table is defined)."""
    from models.store import StoreModel
    from models.tag import TagModel

    items, stores, tags = ItemModel.__table__, StoreModel.__table__, TagModel.__table__
    return (
        db.select(
            items.c.id,
            items.c.name,
            items.c.price,
            items.c.description,
            stores.c.id.label("store_id"),
            stores.c.name.label("store_name"),
            tags.c.id.label("tag_id"),
            tags.c.name.label("tag_name"),
        )
        .join(stores, stores.c.id == items.c.store_id)
        .outerjoin(items_tags, items_tags.c.item_id == items.c.id)
        .outerjoin(tags, tags.c.id == items_tags.c.tag_id)
        .where(items.c.id == db.bindparam("item_id"))
        .order_by(tags.c.id)
    )
