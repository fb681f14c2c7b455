"""The URLs the API hands out, and what it believes about where a request came from.

Absolute URLs (the server metadata, the OpenAPI document's `servers` and OAuth 2.0
flow URLs) come from PUBLIC_URL when it is set, else from the request's Host, which
Flask has checked against TRUSTED_HOSTS. A value a trusted proxy forwards is used
only when it is what its header means: an address in X-Forwarded-For, `http` or
`https` in X-Forwarded-Proto, a path in X-Forwarded-Prefix; anything else is
ignored and the connection's own value stays.
"""

import ipaddress
import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from flask import Request, current_app, request, url_for

# A mount path: "/" and segments of RFC 3986 unreserved characters (§2.3), never
# "." or ".." alone. No "//" (a network-path reference to another host, §4.2),
# no scheme, no host, nothing to escape.
MOUNT_PATH = re.compile(r"(?:/(?!\.{1,2}(?:/|$))[A-Za-z0-9._~-]+)*")
SCHEMES = ("http", "https")
# A TRUSTED_HOSTS entry, as werkzeug matches it: a host name or an IPv4 address, in
# lower case, without a port; a leading "." also admits every subdomain.
HOST_NAME = re.compile(r"\.?[a-z0-9-]+(?:\.[a-z0-9-]+)*")
# The forwarded values each header is about (RFC 9110 §12.5.5: a Vary names them).
HOST_HEADERS = ("X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix")
PREFIX_HEADERS = ("X-Forwarded-Prefix",)


def is_mount_path(value: str) -> bool:
    """Whether `value` is a path the API may be mounted under ("" for the root)."""
    return MOUNT_PATH.fullmatch(value) is not None


def is_host_name(value: str) -> bool:
    """Whether `value` may be a TRUSTED_HOSTS entry (werkzeug cannot match an IPv6
    literal: it cuts the entry at its first ":", as if that began a port)."""
    return HOST_NAME.fullmatch(value) is not None


def is_client_address(value: str | None) -> bool:
    """Whether `value` is an IPv4 or IPv6 address without a zone id (`%eth0`: the
    proxy's own link, and free text Python's ipaddress would keep)."""
    try:
        address = ipaddress.ip_address(value or "")
    except ValueError:
        return False
    return getattr(address, "scope_id", None) is None


def host_of(url: str) -> str:
    """The host a URL names, in lower case ("" when it names none or is no URL)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def public_base(url: str) -> str:
    """PUBLIC_URL as the base the API's paths are appended to (no trailing "/")."""
    return url.rstrip("/")


def public_url_problem(url: str, production: bool) -> str | None:
    """Why `url` cannot be PUBLIC_URL, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return "must be an absolute http or https URL (https://api.example.com/api)"
    if not is_host_name(parts.hostname) or parts.hostname.startswith("."):
        return "must name its host by a name or an IPv4 address"
    if parts.username is not None or "?" in url or "#" in url:
        return "must have no user name, query or fragment"
    if not is_mount_path(parts.path.rstrip("/")):
        return "must have a plain path (letters, digits, - . _ ~ between slashes)"
    if production and parts.scheme != "https" and not is_loopback(parts.hostname):
        return "must be https in production (http only for a loopback host)"
    return None


def is_loopback(host: str) -> bool:
    """localhost, or a loopback address: reached from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def external_url(endpoint: str, **values) -> str:
    """The absolute URL of an endpoint: under PUBLIC_URL when it is set, else at
    this request's (trusted) host, scheme and mount path."""
    public_url = current_app.config["PUBLIC_URL"]
    if public_url is None:
        return url_for(endpoint, _external=True, **values)
    path = url_for(endpoint, **values)  # under the request's mount path
    return public_base(public_url) + path[len(request.script_root) :]


def host_headers() -> list[str]:
    """The request headers absolute URLs come from, for a Vary (RFC 9110 §12.5.5):
    none under PUBLIC_URL; else the Host and what the trusted proxies forward."""
    if current_app.config["PUBLIC_URL"] is not None:
        return []
    return ["Host", *forwarded(HOST_HEADERS)]


def forwarded(headers: Iterable[str] = PREFIX_HEADERS) -> list[str]:
    """These forwarded headers, when trusted proxies are (else they change nothing)."""
    return list(headers) if current_app.config["TRUSTED_PROXIES"] else []


class ForwardedValues:
    """WSGI middleware behind werkzeug's ProxyFix: puts back the connection's own
    address, scheme or mount path where the forwarded one is not an address, a
    scheme or a path (ProxyFix keeps the originals in `werkzeug.proxy_fix.orig`)."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable):
        original = environ["werkzeug.proxy_fix.orig"]
        if not is_client_address(environ.get("REMOTE_ADDR")):
            environ["REMOTE_ADDR"] = original["REMOTE_ADDR"]
        scheme = str(environ.get("wsgi.url_scheme", "")).lower()
        environ["wsgi.url_scheme"] = (
            scheme if scheme in SCHEMES else original["wsgi.url_scheme"]
        )
        prefix = environ.get("SCRIPT_NAME", "").rstrip("/")
        environ["SCRIPT_NAME"] = (
            prefix if is_mount_path(prefix) else original["SCRIPT_NAME"] or ""
        )
        return self.app(environ, start_response)


class HostCheckedRequest(Request):
    """Flask's request; the paths in `any_host_paths` answer whatever Host they
    are sent: load balancers, orchestrators and Prometheus call them by address
    (Docker's HEALTHCHECK at 127.0.0.1, a pod's IP), and their answers hold no URL.

    Flask's create_url_adapter sets `trusted_hosts` from TRUSTED_HOSTS and checks
    the Host against it, for every other path.
    """

    any_host_paths: frozenset[str] = frozenset()
    _trusted_hosts: list[str] | None = None

    @property
    def trusted_hosts(self) -> list[str] | None:
        return None if self.path in self.any_host_paths else self._trusted_hosts

    @trusted_hosts.setter
    def trusted_hosts(self, value: list[str] | None) -> None:
        self._trusted_hosts = value
