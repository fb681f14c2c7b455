"""Tags of a store, and their links to that store's items."""

from flask.views import MethodView
from sqlalchemy.exc import IntegrityError

from auth import token_required
from core import Blueprint, Conflict, NotFound, db
from models import ItemModel, StoreModel, TagModel, items_tags
from models.base import get_or_404, paginate, rows_changed, write
from resources import link, links
from schemas import MessageSchema, PlainTagSchema, TagAndItemSchema, TagSchema

THIS_TAG = {"tag_id": "$response.body#/id"}

blp = Blueprint("tags", __name__, description="Operations on tags")


@blp.route("/store/<id:store_id>/tag")
class TagsInStore(MethodView):
    @token_required()
    @blp.response(200, TagSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    def get(self, store_id, pagination_parameters):
        """List a store's tags."""
        get_or_404(StoreModel, store_id)
        statement = (
            db.select(TagModel)
            .where(TagModel.store_id == store_id)
            .order_by(TagModel.id)
        )
        return paginate(statement, pagination_parameters)

    @token_required()
    @blp.arguments(PlainTagSchema)
    @blp.response(201, TagSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", description="Tag name taken")
    @links(
        201,
        GetTag=link("GET", "/tag/{tag_id}", "The tag", parameters=THIS_TAG),
        DeleteTag=link(
            "DELETE", "/tag/{tag_id}", "Delete the tag", parameters=THIS_TAG
        ),
        CreateItem=link(
            "POST",
            "/item",
            "An item in the tag's store",
            request_body={"store_id": "$response.body#/store_id"},
        ),
    )
    def post(self, tag_data, store_id):
        """Create a tag in a store."""
        store = get_or_404(StoreModel, store_id)
        # Relations set here: the answer is built without reading the tag back.
        tag = TagModel(store=store, **tag_data, items=[])
        with write("This store already has a tag with that name.", "tag_exists"):
            db.session.add(tag)
        return tag


@blp.route("/item/<id:item_id>/tag/<id:tag_id>")
class LinkTagsToItem(MethodView):
    @token_required()
    @blp.response(201, TagSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", description="Tag of another store")
    @links(
        201,
        UnlinkTag=link(
            "DELETE",
            "/item/{item_id}/tag/{tag_id}",
            "Unlink the tag again",
            parameters={
                "item_id": "$request.path.item_id",
                "tag_id": "$request.path.tag_id",
            },
        ),
        DeleteTag=link(
            "DELETE", "/tag/{tag_id}", "Delete the (linked) tag", parameters=THIS_TAG
        ),
    )
    def post(self, item_id, tag_id):
        """Link a tag to an item of the same store (linking twice keeps one link)."""
        item, tag = _item_and_tag(item_id, tag_id)
        if tag.store_id != item.store_id:
            raise Conflict(
                "A tag can only be linked to items of its own store.", "store_mismatch"
            )
        if tag not in item.tags:
            try:
                db.session.execute(
                    db.insert(items_tags).values(item_id=item_id, tag_id=tag_id)
                )
                db.session.commit()
            except IntegrityError:
                # A concurrent request linked them first: the link exists either way.
                db.session.rollback()
        db.session.expire_all()
        return db.session.get(TagModel, tag_id)

    @token_required()
    @blp.response(200, TagAndItemSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, item_id, tag_id):
        """Unlink a tag from an item."""
        item, tag = _item_and_tag(item_id, tag_id)
        with write("The tag could not be unlinked."):
            unlinked = rows_changed(
                db.delete(items_tags).where(
                    items_tags.c.item_id == item_id, items_tags.c.tag_id == tag_id
                )
            )
        if not unlinked:
            raise NotFound("The tag is not linked to this item.")
        db.session.expire_all()
        return {"message": "Tag removed from item.", "item": item, "tag": tag}


@blp.route("/tag/<id:tag_id>")
class Tag(MethodView):
    @token_required()
    @blp.response(200, TagSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, tag_id):
        """Get a tag with its store and items."""
        return get_or_404(TagModel, tag_id)

    @token_required()
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", description="Tag still linked")
    def delete(self, tag_id):
        """Delete a tag that no item uses."""
        tag = get_or_404(TagModel, tag_id)
        if tag.items:
            raise Conflict("The tag is still linked to items.", "tag_in_use")
        # A Core delete, so the database (not the ORM) guards the links: a link
        # made concurrently makes this fail as a 409 instead of vanishing.
        with write("The tag is still linked to items.", "tag_in_use"):
            db.session.execute(db.delete(TagModel).where(TagModel.id == tag_id))
        return {"message": "Tag deleted."}


def _item_and_tag(item_id: int, tag_id: int) -> tuple[ItemModel, TagModel]:
    item = get_or_404(ItemModel, item_id)
    tag = get_or_404(TagModel, tag_id)
    return item, tag
