"""HTTP hardening: trusted proxies and hosts, security headers, CORS, the body-size
limit."""

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge, SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix

from core.errors import error_response
from core.extensions import cors
from core.telemetry.endpoint import METRICS_PATH
from core.telemetry.logs import QUIET_PATHS
from core.urls import ForwardedValues, HostCheckedRequest

# Lets the bundled Swagger UI work (its own scripts and styles, inline styles,
# data: images) and nothing else; JSON responses are never rendered anyway.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ProbeAnyHostRequest(HostCheckedRequest):
    """The probes and the metrics answer any Host; every other path a trusted one."""

    any_host_paths = QUIET_PATHS | {METRICS_PATH}


def init_hardening(app: Flask) -> None:
    """Wire the defences into the app."""
    _trust_proxies_and_hosts(app)
    app.before_request(_refuse_oversized_body)
    app.after_request(_add_security_headers)
    app.after_request(_no_content_for_automatic_options)
    if app.config["CORS_ORIGINS"]:
        cors.init_app(
            app,
            origins=app.config["CORS_ORIGINS"],
            supports_credentials=True,
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-CSRF-TOKEN",
                "X-Request-ID",
                "DPoP",
            ],
            # WWW-Authenticate: a page reads the RFC 9470 step-up challenge too;
            # DPoP-Nonce: the RFC 9449 §8 nonce its next proofs carry.
            expose_headers=[
                "X-Pagination",
                "X-Request-ID",
                "Retry-After",
                "WWW-Authenticate",
                "DPoP-Nonce",
            ],
            max_age=600,
        )


def _trust_proxies_and_hosts(app: Flask) -> None:
    """Believe the trusted proxies' forwarded values, answer only the trusted hosts,
    and route every path as it is written."""
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Only the last `proxies` hops of X-Forwarded-* are believed, and only
        # values that are what their header means (an address, a scheme, a path;
        # a host is checked against TRUSTED_HOSTS); the proxy's X-Forwarded-Prefix
        # becomes the mount path (request.script_root), as a SCRIPT_NAME does
        # without a proxy.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            ForwardedValues(app.wsgi_app),
            x_for=proxies,
            x_proto=proxies,
            x_host=proxies,
            x_prefix=proxies,
        )
    app.request_class = ProbeAnyHostRequest
    app.register_error_handler(SecurityError, _untrusted_host)
    # werkzeug would answer "/store//1" with a redirect to "/store/1", built from
    # the Host, in HTML: such a path is simply not one of the API's (404).
    app.url_map.merge_slashes = False


def _untrusted_host(_error: SecurityError) -> Response:
    """400 in the envelope; the Host is not echoed (it is the attacker's text)."""
    return error_response(
        400, "The request's Host is not one this API answers.", "untrusted_host"
    )


def _refuse_oversized_body() -> None:
    """413 before any work, even on endpoints that never read the body, however
    the body is framed.

    A Content-Length over the limit is refused on the header alone. A chunked
    body (RFC 9112 §7.1) announces no length, and werkzeug stops reading one at
    the limit without a word: the app was handed the body cut short (a form
    with the credentials first was acted on). So it is read here, up to one
    byte past the limit (to tell "exactly the limit" from "more"), and kept:
    `get_data` caches it, and forms and JSON are parsed from that copy.
    """
    limit = request.max_content_length
    if limit is None:
        return
    if request.content_length is None and "Transfer-Encoding" in request.headers:
        request.max_content_length = limit + 1
        oversized = len(request.get_data(cache=True)) > limit
        request.max_content_length = limit
    else:
        oversized = (request.content_length or 0) > limit
    if oversized:
        raise RequestEntityTooLarge(f"The request body is larger than {limit} bytes.")


def _no_content_for_automatic_options(response: Response) -> Response:
    """Flask answers OPTIONS itself with 200 and an empty text/html body: 204 No
    Content with `Allow` instead, no body and no Content-Type (RFC 9110 §9.3.7,
    §15.3.5). CORS preflights get it too (flask-cors adds its headers; any 2xx
    is an ok status for a preflight)."""
    rule = request.url_rule
    if (
        request.method == "OPTIONS"
        and getattr(rule, "provide_automatic_options", False)
        and response.status_code == 200
    ):
        response.status_code = 204
        del response.headers["Content-Type"]
    return response


def _add_security_headers(response: Response) -> Response:
    # Headers a view set itself stay as they are.
    present = {name.lower() for name, _ in response.headers}
    response.headers.extend(
        (name, value)
        for name, value in SECURITY_HEADERS.items()
        if name.lower() not in present
    )
    if current_app.config["CORS_ORIGINS"]:
        # The CORS answer depends on the Origin: caches must keep them apart.
        response.vary.add("Origin")
    if request.is_secure:
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    return response
