"""The passkeys' relying party (WebAuthn §5.4.2, §13.4.9): the RP ID, its name and
the origins whose pages may run a ceremony, derived and checked at start-up.

A browser binds each passkey to an RP ID, a domain, and signs the origin of the
page that asked; the server accepts an assertion only for its RP ID's hash and
for one of its origins, exactly. An RP ID is a domain (not an IP address), and
every origin's host must be it or one of its subdomains (WebAuthn §5.1.4.1 step
8): otherwise no browser would run the ceremony, so the app refuses to start.
Origins are https, except http on localhost (a secure context to browsers).
Without an RP ID (production, and a PUBLIC_URL that names no domain) passkeys
are off: their routes are not there, and a start-up warning says why.
"""

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from core.environment import ConfigError
from core.urls import host_of, is_client_address, is_host_name

DEVELOPMENT_RP_ID = "localhost"
DEVELOPMENT_ORIGINS = ("http://localhost:5000",)  # ./scripts/serve.sh
DEFAULT_PORTS = (("https", 443), ("http", 80))


def derive_relying_party(values: dict[str, Any], production: bool) -> list[str]:
    """Fill in the RP ID and origins from PUBLIC_URL (when it names a domain
    served over https, or localhost), else in development from localhost; the RP
    name from the API's title. In production with neither, passkeys are off: the
    warning says so."""
    public_url = values.get("PUBLIC_URL") or ""
    try:
        origin = origin_of(public_url) if public_url else ""
    except ValueError:
        origin = ""  # not a URL: validate() says so, naming PUBLIC_URL
    # PUBLIC_URL is followed where a browser would run a ceremony on it: a domain,
    # over https (or localhost).
    public_host = host_of(public_url)
    named = (
        bool(origin)
        and not is_client_address(public_host)
        and _origin_problem(origin, public_host) is None
    )
    if not values.get("WEBAUTHN_RP_NAME"):
        values["WEBAUTHN_RP_NAME"] = values["API_TITLE"]
    if values.get("WEBAUTHN_RP_ID"):
        if not values.get("WEBAUTHN_ORIGINS") and named:
            values["WEBAUTHN_ORIGINS"] = [origin]
        return []
    if named:
        values["WEBAUTHN_RP_ID"] = public_host
        values.setdefault("WEBAUTHN_ORIGINS", [])
        values["WEBAUTHN_ORIGINS"] = values["WEBAUTHN_ORIGINS"] or [origin]
        return []
    if not production:
        values["WEBAUTHN_RP_ID"] = DEVELOPMENT_RP_ID
        values["WEBAUTHN_ORIGINS"] = values.get("WEBAUTHN_ORIGINS") or list(
            DEVELOPMENT_ORIGINS
        )
        return []
    return [
        "Passkeys are off: PUBLIC_URL names no domain served over https. Set "
        "WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS to offer them (docs/passkeys.md)."
    ]


def validate_relying_party(values: Mapping[str, Any]) -> None:
    """Raise ConfigError unless passkeys are off (no RP ID, no origins) or the RP
    ID is a domain and every origin an exact origin on it that a browser would
    run a ceremony in."""
    rp_id = values.get("WEBAUTHN_RP_ID") or ""
    if not rp_id:
        if values.get("WEBAUTHN_ORIGINS"):
            raise ConfigError(
                "WEBAUTHN_ORIGINS needs WEBAUTHN_RP_ID (PUBLIC_URL names no domain "
                "it could follow): passkeys are bound to a domain (docs/passkeys.md)."
            )
        return
    if rp_id != rp_id.lower() or not is_host_name(rp_id) or is_client_address(rp_id):
        raise ConfigError(
            f"WEBAUTHN_RP_ID must be a domain in lower case, got {rp_id!r}."
        )
    if not values["WEBAUTHN_ORIGINS"]:
        raise ConfigError("WEBAUTHN_ORIGINS must name at least one origin.")
    for origin in values["WEBAUTHN_ORIGINS"]:
        problem = _origin_problem(origin, rp_id)
        if problem:
            raise ConfigError(f"WEBAUTHN_ORIGINS: {origin!r} {problem}.")
    for name in ("WEBAUTHN_CHALLENGE_EXPIRES", "WEBAUTHN_MAX_CREDENTIALS"):
        if values[name] < 1:
            raise ConfigError(f"{name} must be at least 1.")


def passkeys_enabled(config: Mapping[str, Any]) -> bool:
    """Whether the app offers passkeys (it has a relying party)."""
    return bool(config.get("WEBAUTHN_RP_ID"))


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, as a browser serializes an origin (without
    the scheme's default port)."""
    parts = urlsplit(url)
    default = (parts.scheme, parts.port) in DEFAULT_PORTS
    port = f":{parts.port}" if parts.port is not None and not default else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _origin_problem(origin: str, rp_id: str) -> str | None:
    """Why a browser would never send `origin` for `rp_id`, or None."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return "is not an origin"
    if (parts.scheme, parts.port) in DEFAULT_PORTS:
        return "must leave out the scheme's default port, as browsers do"
    if not parts.hostname or origin_of(origin) != origin:
        return "must be an exact origin: scheme://host[:port], no path, lower case"
    if parts.scheme != "https" and not (
        parts.scheme == "http" and parts.hostname == "localhost"
    ):
        return "must be https (http only on localhost)"
    if parts.hostname != rp_id and not parts.hostname.endswith(f".{rp_id}"):
        return f"is not on WEBAUTHN_RP_ID {rp_id!r} or a subdomain of it"
    return None
