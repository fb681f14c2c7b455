"""DPoP proofs in the tests: the client's proofs of devtools/dpop.py (signed with
PyJWT and keys made by `cryptography`, apart from the server's own code), at paths
of the Flask test client's base URL.
"""

from typing import Any

from devtools import dpop
from devtools.dpop import DROP, ath, b64url, thumbprint
from tests.helpers import PASSWORD

__all__ = ["BASE", "DROP", "ProofKey", "ath", "b64url", "bound_login", "thumbprint"]

# The Flask test client's default base URL: what `htu` names in process.
BASE = "http://localhost"


class ProofKey(dpop.ProofKey):
    """A client's DPoP key pair, and the proofs it signs."""

    def proof(self, method: str, path_or_url: str, **kwargs: Any) -> str:
        """A proof for `method` at `path_or_url` (a path is under BASE), with `ath`
        of `token`; `header` and `claims` override or DROP members."""
        url = path_or_url if "://" in path_or_url else BASE + path_or_url
        return super().proof(method, url, **kwargs)


def bound_login(client, key: ProofKey, username: str = "alice", **body: Any):
    """POST /login with a proof of `key`: the response."""
    return client.post(
        "/login",
        json={"username": username, "password": PASSWORD, **body},
        headers={"DPoP": key.proof("POST", "/login")},
    )
