"""Items for sale in a store."""

from functools import cache

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, Select, String, Text
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship

from extensions import db
from models.item_tag import items_tags


class ItemModel(db.Model):
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

    store: Mapped["StoreModel"] = relationship(back_populates="items")  # noqa: F821
    tags: Mapped[list["TagModel"]] = relationship(  # noqa: F821
        secondary=items_tags, back_populates="items", order_by="TagModel.id"
    )

    def __repr__(self) -> str:
        return f"<ItemModel {self.id} {self.name!r}>"

    @classmethod
    def find_with_relations(cls, item_id: int) -> "ItemModel | None":
        """The item with its store and tags, in one query."""
        return (
            db.session.scalars(_with_relations(), {"item_id": item_id}).unique().first()
        )


@cache
def _with_relations() -> Select:
    """Built once (on first use, when every model is mapped): Session.get() with
    loader options would build and fingerprint a new statement on every request,
    which costs more than running it."""
    return (
        db.select(ItemModel)
        .options(joinedload(ItemModel.store), joinedload(ItemModel.tags))
        .where(ItemModel.id == db.bindparam("item_id"))
    )
