"""Stores."""

from flask.views import MethodView

from auth import token_required
from core import Blueprint, db
from models import StoreModel
from models.base import delete_or_404, get_or_404, paginate, write
from resources import link, links
from schemas import MessageSchema, PlainStoreSchema, StoreSchema

STORE_ID = "$response.body#/id"
THIS_STORE = {"store_id": STORE_ID}
# Where a new store's id leads: the store, its tags, its items.
STORE_LINKS = {
    "GetStore": link("GET", "/store/{store_id}", "The store", parameters=THIS_STORE),
    "DeleteStore": link(
        "DELETE", "/store/{store_id}", "Delete the store", parameters=THIS_STORE
    ),
    "ListTags": link(
        "GET", "/store/{store_id}/tag", "The store's tags", parameters=THIS_STORE
    ),
    "CreateTag": link(
        "POST", "/store/{store_id}/tag", "A tag in the store", parameters=THIS_STORE
    ),
    "ListItems": link(
        "GET", "/item", "The store's items", parameters={"query.store_id": STORE_ID}
    ),
    "CreateItem": link(
        "POST", "/item", "An item in the store", request_body={"store_id": STORE_ID}
    ),
}

blp = Blueprint("stores", __name__, description="Operations on stores")


@blp.route("/store")
class StoreList(MethodView):
    @token_required()
    @blp.response(200, PlainStoreSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List stores."""
        statement = db.select(StoreModel).order_by(StoreModel.id)
        return paginate(statement, pagination_parameters)

    @token_required()
    @blp.arguments(PlainStoreSchema)
    @blp.response(201, PlainStoreSchema)
    @blp.alt_response(409, response="CONFLICT", description="Store name taken")
    @links(201, **STORE_LINKS)
    def post(self, store_data):
        """Create a store."""
        store = StoreModel(**store_data)
        with write("A store with that name already exists.", "store_exists"):
            db.session.add(store)
        return store


@blp.route("/store/<id:store_id>")
class Store(MethodView):
    @token_required()
    @blp.response(200, StoreSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @links(
        200,
        LinkTag=link(
            "POST",
            "/item/{item_id}/tag/{tag_id}",
            "Link the store's first tag to its first item",
            parameters={
                "item_id": "$response.body#/items/0/id",
                "tag_id": "$response.body#/tags/0/id",
            },
        ),
    )
    def get(self, store_id):
        """Get a store with its items and tags."""
        return get_or_404(StoreModel, store_id)

    @token_required(admin=True)
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, store_id):
        """Delete a store with its items and tags (administrators)."""
        # One statement: the database cascades to items, tags and their links.
        delete_or_404(StoreModel, store_id)
        return {"message": "Store deleted."}
