"""Items."""

from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy.orm import joinedload, selectinload

from auth import token_required
from core import Blueprint, db
from models import ItemModel, StoreModel
from models.base import delete_or_404, get_or_404, paginate, write
from resources import link, links
from schemas import ItemQueryArgsSchema, ItemSchema, ItemUpdateSchema, MessageSchema

THIS_ITEM = {"item_id": "$response.body#/id"}
ITS_STORE = {"store_id": "$response.body#/store/id"}

blp = Blueprint("items", __name__, description="Operations on items")


@blp.route("/item")
class ItemList(MethodView):
    @token_required()
    @blp.arguments(ItemQueryArgsSchema, location="query")
    @blp.response(200, ItemSchema(many=True))
    @blp.paginate()
    def get(self, filters, pagination_parameters):
        """List items, optionally of one store."""
        statement = (
            db.select(ItemModel)
            .options(joinedload(ItemModel.store), selectinload(ItemModel.tags))
            .order_by(ItemModel.id)
        )
        if "store_id" in filters:
            statement = statement.where(ItemModel.store_id == filters["store_id"])
        return paginate(statement, pagination_parameters)

    @token_required(fresh=True)
    @blp.arguments(ItemSchema)
    @blp.response(201, ItemSchema)
    @blp.alt_response(409, response="CONFLICT", description="Store deleted meanwhile")
    @links(
        201,
        GetItem=link("GET", "/item/{item_id}", "The item", parameters=THIS_ITEM),
        UpdateItem=link(
            "PUT", "/item/{item_id}", "Update the item", parameters=THIS_ITEM
        ),
        DeleteItem=link(
            "DELETE", "/item/{item_id}", "Delete the item", parameters=THIS_ITEM
        ),
        GetStore=link(
            "GET", "/store/{store_id}", "The item's store", parameters=ITS_STORE
        ),
        CreateTag=link(
            "POST",
            "/store/{store_id}/tag",
            "A tag in the item's store",
            parameters=ITS_STORE,
        ),
    )
    def post(self, item_data):
        """Create an item; needs a fresh token."""
        store = db.session.get(StoreModel, item_data["store_id"])
        if store is None:
            abort(
                422,
                message="The item's store does not exist.",
                errors={"json": {"store_id": ["Store not found."]}},
            )
        # Relations set here: the answer is built without reading the item back.
        item = ItemModel(**item_data, store=store, tags=[])
        with write("The item conflicts with an existing one."):
            db.session.add(item)
        return item


@blp.route("/item/<id:item_id>")
class Item(MethodView):
    @token_required()
    @blp.response(200, ItemSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, item_id):
        """Get an item."""
        return ItemModel.read(item_id)

    @token_required()
    @blp.arguments(ItemUpdateSchema)
    @blp.response(200, ItemSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def put(self, item_data, item_id):
        """Update an existing item (never creates one)."""
        item = get_or_404(ItemModel, item_id)
        with write("The item conflicts with an existing one."):
            for field, value in item_data.items():
                setattr(item, field, value)
        return item

    @token_required(admin=True)
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, item_id):
        """Delete an item (administrators)."""
        delete_or_404(ItemModel, item_id)
        return {"message": "Item deleted."}
