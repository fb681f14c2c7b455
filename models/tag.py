"""Tags: labels of one store, linked to that store's items."""

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core import Model
from models.item_tag import items_tags

if TYPE_CHECKING:
    from models.item import ItemModel
    from models.store import StoreModel


class TagModel(Model):
    """A tag name is unique within its store."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("store_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )

    store: Mapped["StoreModel"] = relationship(back_populates="tags")
    items: Mapped[list["ItemModel"]] = relationship(
        secondary=items_tags, back_populates="tags", order_by="ItemModel.id"
    )

    def __repr__(self) -> str:
        return f"<TagModel {self.id} {self.name!r}>"
