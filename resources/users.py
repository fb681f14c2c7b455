"""Registration, login, token refresh, logout and accounts."""

from flask import after_this_request, current_app
from flask.views import MethodView
from flask_jwt_extended import (
    get_jwt,
    get_jwt_request_location,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
)
from flask_smorest import Blueprint, abort

from auth import (
    jwt_required,
    public,
    require_self_or_admin,
    token_subject,
    token_user,
)
from errors import APIError, ErrorSchema, NotFound
from extensions import db
from models import UserModel
from observability import audit
from resources import link, links
from schemas import (
    MessageSchema,
    PasswordChangeSchema,
    RegisteredUserSchema,
    TokenSchema,
    UserLoginSchema,
    UserRegisterSchema,
    UserSchema,
)
from security import failed_login, login_username_key, rate_limited
from tokens import (
    issue_tokens,
    revoke_all_user_tokens,
    revoke_session,
    rotate_refresh_token,
)

blp = Blueprint("users", __name__, description="Accounts and their tokens")

# RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
DATABASE_UNAVAILABLE = "The database is unavailable; retry later."
THIS_USER = {"user_id": "$response.body#/id"}


class InvalidCredentials(APIError):
    """Unknown username or wrong password: one answer for both."""

    status_code = 401
    error = "invalid_credentials"
    headers = {"WWW-Authenticate": 'Bearer realm="api"'}  # RFC 9110 §15.5.2


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
        user = UserModel.register(user_data["username"], user_data["password"])
        audit("register", "User registered", user_id=str(user.id))
        return user


@blp.route("/login")
class UserLogin(MethodView):
    @public
    @rate_limited("RATELIMIT_LOGIN")
    @rate_limited(
        "RATELIMIT_LOGIN_USERNAME",
        key_func=login_username_key,
        deduct_when=failed_login,
    )
    @blp.arguments(UserLoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, response="UNAUTHORIZED", description="Invalid credentials")
    @blp.alt_response(503, schema=ErrorSchema, description=DATABASE_UNAVAILABLE)
    def post(self, credentials):
        """Log in: a fresh access token and a refresh token."""
        user = UserModel.authenticate(credentials["username"], credentials["password"])
        if user is None:
            audit(
                "login_failure", "Login failed", username=credentials["username"][:80]
            )
            raise InvalidCredentials("Invalid credentials.")
        audit("login_success", "Login succeeded", user_id=str(user.id))
        tokens = issue_tokens(user, fresh=True)
        return _deliver(tokens, as_cookies=credentials["token_delivery"] == "cookie")


@blp.route("/refresh")
class TokenRefresh(MethodView):
    @rate_limited("RATELIMIT_REFRESH")
    @jwt_required(refresh=True)
    @blp.response(200, TokenSchema)
    def post(self):
        """Trade a refresh token for a non-fresh access and a new refresh token."""
        tokens = rotate_refresh_token(token_subject(), get_jwt())
        audit("refresh", "Tokens refreshed", family=get_jwt()["fam"])
        return _deliver(tokens, as_cookies=_sent_in_cookies())


@blp.route("/logout")
class UserLogout(MethodView):
    @jwt_required()
    @blp.response(200, MessageSchema)
    def post(self):
        """Log out: revoke this login's tokens, the refresh token included."""
        revoke_session(get_jwt())
        audit("logout", "Logged out", family=get_jwt().get("fam"))
        _clear_cookies()
        return {"message": "Successfully logged out."}


@blp.route("/logout/all")
class UserLogoutAll(MethodView):
    @jwt_required()
    @blp.response(200, MessageSchema)
    def post(self):
        """Log out everywhere: revoke every token of the user."""
        revoke_all_user_tokens(token_subject().id)
        audit("logout_all", "Logged out of every session")
        _clear_cookies()
        return {"message": "Logged out of every session."}


@blp.route("/me")
class Me(MethodView):
    @jwt_required()
    @blp.response(200, UserSchema)
    def get(self):
        """Get the user the token belongs to."""
        return token_user()


@blp.route("/user/password")
class UserPassword(MethodView):
    @jwt_required(fresh=True)
    @blp.arguments(PasswordChangeSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="Wrong current password")
    def put(self, passwords):
        """Change the password: other sessions end; answers a new fresh pair."""
        user = token_user()
        user.change_password(passwords["current_password"], passwords["new_password"])
        revoke_all_user_tokens(user.id)
        audit("password_change", "Password changed; other sessions revoked")
        tokens = issue_tokens(user, fresh=True)
        return _deliver(tokens, as_cookies=_sent_in_cookies())


@blp.route("/user/<id:user_id>")
class User(MethodView):
    @jwt_required()
    @blp.response(200, UserSchema)
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, user_id):
        """Get a user (yourself, or anyone as an administrator)."""
        require_self_or_admin(user_id)
        return _get_user(user_id)

    @jwt_required(fresh=True)
    @blp.response(200, MessageSchema)
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, user_id):
        """Delete a user (yourself, or anyone as an admin); needs a fresh token."""
        require_self_or_admin(user_id)
        user = _get_user(user_id)
        revoke_all_user_tokens(user.id)
        user.delete()
        audit("account_deletion", "Account deleted", deleted_user_id=str(user_id))
        if get_jwt()["sub"] == str(user_id):
            _clear_cookies()
        return {"message": "User deleted."}


def _deliver(tokens: dict, *, as_cookies: bool) -> tuple:
    """The token answer: in the body, or (cookie mode) as HttpOnly cookies only."""
    if as_cookies:
        if not current_app.config["AUTH_COOKIES_ENABLED"]:
            abort(
                422,
                message="Cookie delivery is switched off on this server.",
                errors={"json": {"token_delivery": ["Cookie delivery is disabled."]}},
            )
        access, refresh = tokens.pop("access_token"), tokens.pop("refresh_token")

        @after_this_request
        def set_cookies(response):
            set_access_cookies(response, access)
            set_refresh_cookies(response, refresh)
            return response

    return tokens, 200, NO_STORE


def _sent_in_cookies() -> bool:
    """Whether this request's token came in a cookie (then answer in cookies)."""
    return get_jwt_request_location() == "cookies"


def _clear_cookies() -> None:
    """Expire the token and CSRF cookies (cookie mode's logout)."""
    if current_app.config["AUTH_COOKIES_ENABLED"]:

        @after_this_request
        def unset(response):
            unset_jwt_cookies(response)
            return response


def _get_user(user_id: int) -> UserModel:
    user = db.session.get(UserModel, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user
