"""The token layer: what resources (and the factory) may use of it.

Resources import from here only. Inside: `callbacks` (Flask-JWT-Extended's
callbacks, every token failure in the envelope), `claims` (what a token of ours
carries), `headers` (the token headers, made sound before they are read),
`decorators` (`token_required`, `public`, the token's user), `sessions` (sessions
and their tokens: log in, rotate, revoke, list), `api_tokens` (long-lived tokens for
scripts), `accounts` (registration, passwords checked), `factors` (what a user
proves who they are with: passwords, TOTP and recovery codes, the login waiting for
a second factor, passkeys and their ceremonies), `logins` (a login and a step-up
with every factor the account has; passkeys log in and step up alone), `delivery`
(body or cookies), `limits` (rate limits of the auth routes, the failed-login
budgets), `devices` (device cookies: a known device's own budget), `oauth` (the
token endpoint's grants, form-encoded requests), `keys` (the signing keys and their
JWKS), `proofs`, `nonces` and `dpop` (DPoP, RFC 9449: proofs, the server's nonces,
and the sessions bound to a client's key), `claims_cache` (tokens verified a moment
ago), `user_cache` (the user check, answered from memory for up to 2 s), `schemas`
(the token layer's request and response schemas, re-exported by schemas.py) and
`commands` (`flask users ...`, `flask keys ...`).
"""

from auth.accounts import (
    authenticate,
    change_password,
    check_password,
    delete_account,
    register_user,
)
from auth.api_tokens import (
    create_api_token,
    delete_api_token,
    init_api_tokens,
    list_api_tokens,
    revoke_api_tokens,
)
from auth.callbacks import register_jwt_callbacks
from auth.claims_cache import current_claims_cache, init_claims_cache
from auth.commands import register_auth_commands
from auth.decorators import (
    public,
    require_self_or_admin,
    token_required,
    token_subject,
    token_user,
    token_username,
)
from auth.delivery import NO_STORE, clear_token_cookies, sent_in_cookies, token_answer
from auth.dpop import algorithms as dpop_algorithms
from auth.dpop import check_revocable, init_dpop
from auth.factors import passkeys, totp
from auth.factors.encryption import init_secret_keys
from auth.factors.mfa_tokens import waiting_username
from auth.factors.passkeys import passkey_step_up
from auth.factors.passwords import passwords
from auth.freshness import Freshness
from auth.headers import init_token_headers
from auth.keys import init_signing_keys, signing_keys
from auth.limits import (
    created_one,
    failed_grant,
    failed_login,
    failed_passkey,
    grant_is_not,
    login_budgets,
    rate_limited,
    wrong_code,
    wrong_password,
)
from auth.logins import (
    passkey_login,
    password_login,
    second_factor_login,
    step_up_factors,
)
from auth.oauth import FORM, form_body_doc, form_parameters, grant_tokens
from auth.sessions import (
    end_all_sessions,
    end_other_sessions,
    end_session,
    end_session_by_id,
    list_sessions,
    reauthenticate,
    require_session,
    revoke_token,
    rotate_refresh_token,
    session_like,
    start_session,
)
from auth.user_cache import init_user_cache

__all__ = [
    "check_revocable",
    "dpop_algorithms",
    "init_dpop",
    "FORM",
    "Freshness",
    "password_login",
    "passkey_login",
    "passkey_step_up",
    "passkeys",
    "failed_passkey",
    "second_factor_login",
    "init_secret_keys",
    "step_up_factors",
    "totp",
    "waiting_username",
    "check_password",
    "reauthenticate",
    "require_session",
    "token_username",
    "wrong_code",
    "wrong_password",
    "NO_STORE",
    "authenticate",
    "change_password",
    "clear_token_cookies",
    "delete_account",
    "create_api_token",
    "created_one",
    "current_claims_cache",
    "delete_api_token",
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
    "init_api_tokens",
    "init_claims_cache",
    "init_signing_keys",
    "init_token_headers",
    "init_user_cache",
    "list_api_tokens",
    "list_sessions",
    "login_budgets",
    "passwords",
    "public",
    "rate_limited",
    "register_auth_commands",
    "register_jwt_callbacks",
    "register_user",
    "require_self_or_admin",
    "revoke_api_tokens",
    "revoke_token",
    "rotate_refresh_token",
    "sent_in_cookies",
    "signing_keys",
    "session_like",
    "start_session",
    "token_answer",
    "token_required",
    "token_subject",
    "token_user",
]
