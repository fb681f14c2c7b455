"""The token layer: what resources (and the factory) may use of it.

Resources import from here only. Inside: `callbacks` (Flask-JWT-Extended's
callbacks, every token failure in the envelope), `decorators` (`token_required`,
`public`, the token's user), `sessions` (sessions and their tokens: log in,
rotate, revoke, list), `accounts` and `passwords` (credentials), `delivery` (body
or cookies), `limits` (rate limits of the auth routes), `oauth` (the token
endpoint's grants, form-encoded requests) and `claims_cache`.
"""

from auth.accounts import authenticate, change_password, register_user
from auth.callbacks import register_jwt_callbacks
from auth.claims_cache import init_claims_cache
from auth.decorators import (
    public,
    require_self_or_admin,
    token_required,
    token_subject,
    token_user,
)
from auth.delivery import clear_token_cookies, sent_in_cookies, token_answer
from auth.limits import (
    failed_grant,
    failed_login,
    grant_is_not,
    login_username_key,
    rate_limited,
)
from auth.oauth import form_body_doc, form_parameters, grant_tokens
from auth.passwords import passwords
from auth.sessions import (
    end_all_sessions,
    end_other_sessions,
    end_session,
    end_session_by_id,
    list_sessions,
    revoke_token,
    rotate_refresh_token,
    start_session,
)

__all__ = [
    "authenticate",
    "change_password",
    "clear_token_cookies",
    "end_all_sessions",
    "end_other_sessions",
    "end_session",
    "end_session_by_id",
    "failed_grant",
    "failed_login",
    "form_body_doc",
    "form_parameters",
    "grant_is_not",
    "grant_tokens",
    "init_claims_cache",
    "list_sessions",
    "login_username_key",
    "passwords",
    "public",
    "rate_limited",
    "register_jwt_callbacks",
    "register_user",
    "require_self_or_admin",
    "revoke_token",
    "rotate_refresh_token",
    "sent_in_cookies",
    "start_session",
    "token_answer",
    "token_required",
    "token_subject",
    "token_user",
]
