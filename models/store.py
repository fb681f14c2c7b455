"""Stores: the catalog's top level."""

from typing import TYPE_CHECKING

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core import Model

if TYPE_CHECKING:
    from models.item import ItemModel
    from models.tag import TagModel


class StoreModel(Model):
    """A store owns its items and tags; deleting it deletes them."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)

    items: Mapped[list["ItemModel"]] = relationship(
        back_populates="store",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ItemModel.id",
    )
    tags: Mapped[list["TagModel"]] = relationship(
        back_populates="store",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TagModel.id",
    )

    def __repr__(self) -> str:
        return f"<StoreModel {self.id} {self.name!r}>"
