"""The caller's API tokens: long-lived bearer tokens for scripts."""

from flask.views import MethodView

from auth import (
    NO_STORE,
    Freshness,
    create_api_token,
    created_one,
    delete_api_token,
    list_api_tokens,
    rate_limited,
    token_required,
    token_subject,
)
from core import Blueprint
from resources import link, links
from schemas import (
    ApiTokenCreateSchema,
    ApiTokenSchema,
    MessageSchema,
    NewApiTokenSchema,
)

blp = Blueprint(
    "api_tokens", __name__, description="The caller's API tokens (for scripts)"
)


@blp.route("/me/api-tokens")
class ApiTokenList(MethodView):
    @token_required()
    @blp.response(200, ApiTokenSchema(many=True))
    def get(self):
        """List your API tokens that have not expired, newest first."""
        return list_api_tokens(token_subject().id)

    @rate_limited("RATELIMIT_API_TOKENS", deduct_when=created_one)
    @token_required(fresh=Freshness.ACCOUNT)
    @blp.arguments(ApiTokenCreateSchema)
    @blp.response(201, NewApiTokenSchema)
    @blp.alt_response(409, response="CONFLICT", description="Too many API tokens")
    @links(
        201,
        DeleteApiToken=link(
            "DELETE",
            "/me/api-tokens/{token_id}",
            "Revoke it",
            parameters={"token_id": "$response.body#/id"},
        ),
    )
    def post(self, new_token):
        """Make an API token (needs a fresh token); the token is shown only here."""
        made = create_api_token(
            token_subject(), new_token["name"], new_token["expires_in_days"]
        )
        return made, 201, NO_STORE  # it carries a secret, as a token answer does


@blp.route("/me/api-tokens/<id:token_id>")
class ApiToken(MethodView):
    @token_required()
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such token of yours")
    def delete(self, token_id):
        """Revoke one of your API tokens: it answers 401 token_revoked from now."""
        delete_api_token(token_subject().id, token_id)
        return {"message": "API token revoked."}
