"""Items for sale in a store."""

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
