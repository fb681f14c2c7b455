"""What other services and OAuth 2.0 clients discover: the public signing keys
(RFC 7517 JWK Set) and the server's metadata (RFC 8414)."""

from flask import current_app
from flask.views import MethodView

from auth import dpop_algorithms, public, signing_keys
from core import Blueprint, external_url, host_headers
from schemas import JwkSetSchema, ServerMetadataSchema

blp = Blueprint(
    "discovery", __name__, description="Public keys and OAuth 2.0 server metadata"
)

# Keys change only with a restart. Verifiers may keep the set five minutes: a new
# key is published as a fallback before it signs (docs/keys.md), and PyJWKClient
# fetches the set again for a kid it does not know.
CACHEABLE = {"Cache-Control": "public, max-age=300"}


@blp.route("/.well-known/jwks.json")
class JwkSet(MethodView):
    @public
    @blp.response(200, JwkSetSchema)
    def get(self):
        """The public keys that verify this API's tokens (RFC 7517); never a secret."""
        return signing_keys().jwks(), 200, CACHEABLE


@blp.route("/.well-known/oauth-authorization-server")
class ServerMetadata(MethodView):
    @public
    @blp.response(200, ServerMetadataSchema)
    def get(self):
        """The OAuth 2.0 server's metadata (RFC 8414 §2, §3)."""
        return (
            {
                "issuer": current_app.config["JWT_ENCODE_ISSUER"],
                # Absolute, as RFC 8414 §2 requires: under PUBLIC_URL, else at this
                # request's trusted Host (and the trusted proxies' X-Forwarded-*).
                "token_endpoint": external_url("tokens.TokenEndpoint"),
                "revocation_endpoint": external_url("tokens.TokenRevocation"),
                "jwks_uri": external_url("discovery.JwkSet"),
                "grant_types_supported": ["password", "refresh_token"],
                # No authorization endpoint (RFC 8414 §2: the list is then empty).
                "response_types_supported": [],
                # Public clients (RFC 6749 §2.1): no client authentication.
                "token_endpoint_auth_methods_supported": ["none"],
                "revocation_endpoint_auth_methods_supported": ["none"],
                # RFC 9449 §5.1: tokens are bound to a key with proofs of these.
                "dpop_signing_alg_values_supported": dpop_algorithms(),
            },
            200,
            # A cache in front must not hand one Host's URLs to another.
            {**CACHEABLE, **_vary(host_headers())},
        )


def _vary(headers: list[str]) -> dict[str, str]:
    return {"Vary": ", ".join(headers)} if headers else {}
