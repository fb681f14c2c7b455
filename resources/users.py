"""Accounts: registration, the caller, password changes, reading and deleting users."""

from flask.views import MethodView
from flask_jwt_extended import get_jwt

from auth import (
    Freshness,
    change_password,
    clear_token_cookies,
    delete_account,
    end_all_sessions,
    login_budgets,
    public,
    rate_limited,
    register_user,
    require_self_or_admin,
    revoke_api_tokens,
    sent_in_cookies,
    session_like,
    token_answer,
    token_required,
    token_user,
    token_username,
    wrong_password,
)
from core import Blueprint, ErrorSchema, audit
from models import UserModel
from models.base import get_or_404
from resources import DATABASE_UNAVAILABLE, link, links
from schemas import (
    MessageSchema,
    PasswordChangeSchema,
    RegisteredUserSchema,
    TokenSchema,
    UserRegisterSchema,
    UserSchema,
)

blp = Blueprint("users", __name__, description="Accounts")

THIS_USER = {"user_id": "$response.body#/id"}


@blp.route("/register")
class UserRegister(MethodView):
    @public
    @rate_limited("RATELIMIT_REGISTER")
    @blp.arguments(UserRegisterSchema)
    @blp.response(201, RegisteredUserSchema)
    @blp.alt_response(409, response="CONFLICT", description="Username taken")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    @links(
        201,
        GetUser=link("GET", "/user/{user_id}", "The account", parameters=THIS_USER),
        DeleteUser=link(
            "DELETE", "/user/{user_id}", "Delete the account", parameters=THIS_USER
        ),
    )
    def post(self, user_data):
        """Create an account."""
        user = register_user(user_data["username"], user_data["password"])
        audit("register", "User registered", user_id=str(user.id))
        return user


@blp.route("/me")
class Me(MethodView):
    @token_required()
    @blp.response(200, UserSchema)
    def get(self):
        """Get the user the token belongs to."""
        return token_user()


@blp.route("/user/password")
class UserPassword(MethodView):
    @token_required(fresh=Freshness.ACCOUNT)
    # Guessing the current password with a stolen fresh token spends the budgets.
    @login_budgets(failed=wrong_password, username=token_username)
    @blp.arguments(PasswordChangeSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="Wrong current password")
    def put(self, passwords):
        """Change the password: sessions and API tokens end; a new fresh pair."""
        user = token_user()
        change_password(user, passwords["current_password"], passwords["new_password"])
        end_all_sessions(user.id)
        revoke_api_tokens(user.id)
        audit("password_change", "Password changed; sessions, API tokens revoked")
        # The new session was proved as the fresh token's was (its `amr`: the
        # password, and a code for an account with TOTP) and the new password,
        # and is bound to the same DPoP key as the request was.
        tokens = session_like(user, get_jwt())
        return token_answer(tokens, as_cookies=sent_in_cookies())


@blp.route("/user/<id:user_id>")
class User(MethodView):
    @token_required()
    @blp.response(200, UserSchema)
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, user_id):
        """Get a user (yourself, or anyone as an administrator)."""
        require_self_or_admin(user_id)
        return get_or_404(UserModel, user_id)

    @token_required(fresh=Freshness.ACCOUNT)
    @blp.response(200, MessageSchema)
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, user_id):
        """Delete a user (yourself, or anyone as an admin); needs a fresh token."""
        require_self_or_admin(user_id)
        delete_account(get_or_404(UserModel, user_id))
        audit("account_deletion", "Account deleted", deleted_user_id=str(user_id))
        if get_jwt()["sub"] == str(user_id):
            clear_token_cookies()
        return {"message": "User deleted."}
