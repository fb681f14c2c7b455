"""DPoP (RFC 9449) behind a real nginx under /api (tests/proxy.py, docs/deployment.md):
a proof's `htu` is the URL of the request as the client sent it (§4.3 check 9),
nginx's address and the prefix, never the upstream's own URL that gunicorn is
reached at. The server knows that URL from what its trusted proxy forwards
(TRUSTED_PROXIES=1: X-Forwarded-Proto, -Host, -Prefix), or from PUBLIC_URL when it
is set, which then holds for every request, whatever way it came in. nginx passes
a repeated header on as it came and gunicorn joins the two: two proofs are
refused (§4.3 check 1), and neither is spent. A path is named as the client sent
it, percent-encodings and all (RFC 3986 §2.1, §6.2.2).
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import servers
from tests.dpop import ProofKey
from tests.live.test_dpop_workers import (
    LOGIN,
    ME,
    assert_refreshed,
    assert_refused,
    call,
    me,
    new_session,
    refresh,
)
from tests.live.test_proxy import _env
from tests.proxy import PREFIX, nginx
from tests.servers import base_url, free_port

HTU_IS = "The DPoP proof's htu must be this request's URL, "
EXACTLY_ONE = "Send exactly one DPoP header (RFC 9449 §4.3)."


@dataclass
class Site:
    """nginx in front of gunicorn: where clients reach the API (`api`), nginx's
    own address (`site`), gunicorn's (`upstream`), and the base a proof names
    when the request goes straight to gunicorn (`direct`: gunicorn's own URL, or
    PUBLIC_URL when it is set)."""

    api: str
    site: str
    upstream: str
    direct: str


@pytest.fixture(scope="module", params=["forwarded", "public-url"])
def site(request, tmp_path_factory) -> Iterator[Site]:
    """nginx, then gunicorn with TRUSTED_PROXIES=1 behind it, the API's URLs from
    the forwarded headers or from PUBLIC_URL (nginx's address and the prefix: so
    nginx is started first, on the port gunicorn is to take)."""
    folder = tmp_path_factory.mktemp(f"dpop-{request.param}")
    port = free_port()
    upstream = base_url(port)
    with nginx(folder / "nginx", upstream) as address:
        api = address + PREFIX
        env = {**_env(folder), "PORT": str(port), "TRUSTED_PROXIES": "1"}
        if request.param == "public-url":
            env["PUBLIC_URL"] = api
        with servers.live_server(env, folder / "gunicorn.log"):
            direct = api if request.param == "public-url" else upstream
            yield Site(api, address, upstream, direct)


def test_a_bound_session_works_through_nginx_at_the_url_the_client_used(site):
    username, key, tokens = new_session(site.api)

    served = me(site.api, key, tokens["access_token"])
    # A query is no part of htu (§4.2): the proof names the path alone.
    with_query = call(
        site.api,
        "GET",
        f"{ME}?fields=all",
        key.headers("GET", site.api + ME, tokens["access_token"]),
    )
    renewed = assert_refreshed(refresh(site.api, key, tokens["refresh_token"]), key)
    after = me(site.api, key, renewed["access_token"])

    for reply in (served, with_query, after):
        assert reply.status == 200, reply.body
        assert reply.body["username"] == username


@pytest.mark.parametrize(
    ("address", "path"),
    [
        pytest.param("upstream", "", id="gunicorns-own-url"),
        pytest.param("upstream", PREFIX, id="gunicorns-port"),
        pytest.param("site", "", id="nginx-without-the-prefix"),
        pytest.param("api", PREFIX, id="the-prefix-twice"),
    ],
)
def test_a_proof_naming_another_url_than_the_clients_is_refused(site, address, path):
    """Refused at a protected route (401) and at a login (400), each naming the
    URL the proof must name: the client's."""
    _, key, tokens = new_session(site.api)
    wrong = getattr(site, address) + path
    token = tokens["access_token"]

    used = me(site.api, key, token, public=wrong)
    login = call(
        site.api,
        "POST",
        LOGIN,
        {"DPoP": key.proof("POST", wrong + LOGIN)},
        {"username": "nobody", "password": servers.PASSWORD},
    )

    assert_refused(used, 401, "invalid_dpop_proof", HTU_IS + site.api + ME)
    assert_refused(login, 400, "invalid_dpop_proof", HTU_IS + site.api + LOGIN)
    assert me(site.api, key, token).status == 200  # nothing was spent or ended


def test_straight_at_gunicorn_a_proof_names_the_public_url_if_set(site):
    """Without PUBLIC_URL, a request that bypasses nginx is at gunicorn's own
    URL; with it, every proof names PUBLIC_URL + path, whichever way it came."""
    _, key, tokens = new_session(site.api)
    token = tokens["access_token"]
    other = site.api if site.direct == site.upstream else site.upstream

    served = me(site.upstream, key, token, public=site.direct)
    refused = me(site.upstream, key, token, public=other)

    assert served.status == 200, served.body
    assert_refused(refused, 401, "invalid_dpop_proof", HTU_IS + site.direct + ME)


def test_two_dpop_headers_through_nginx_are_refused_and_neither_is_spent(site):
    _, key, tokens = new_session(site.api)
    token = tokens["access_token"]
    proofs = [key.proof("GET", site.api + ME, token=token) for _ in range(2)]
    both = [("Authorization", f"DPoP {token}")] + [("DPoP", p) for p in proofs]
    login_key = ProofKey()
    logins = [("DPoP", login_key.proof("POST", site.api + LOGIN)) for _ in range(2)]
    credentials = {"username": "nobody", "password": servers.PASSWORD}

    used = call(site.api, "GET", ME, both)
    login = call(site.api, "POST", LOGIN, logins, credentials)

    assert_refused(used, 401, "invalid_dpop_proof", EXACTLY_ONE)
    assert_refused(login, 400, "invalid_dpop_proof", EXACTLY_ONE)
    first_alone = call(site.api, "GET", ME, both[:2])
    assert first_alone.status == 200, first_alone.body


@pytest.mark.parametrize(
    "segment",
    [
        pytest.param("%7Euser", id="unreserved-encoded"),  # §6.2.2.2: "~user"
        pytest.param("a%20b", id="space"),
        pytest.param("caf%C3%A9", id="non-ascii"),
    ],
)
def test_a_proof_names_a_percent_encoded_path_as_the_client_sent_it(site, segment):
    """§4.3 check 9 compares htu with the request's URI, both normalised as RFC
    3986 §6.2.2 says: percent-encodings in upper case, none of an unreserved
    character. A URI's path carries a space or a non-ASCII character only
    percent-encoded (§2.1), as the client sent it: a proof naming it so is good,
    and the request goes on to its route (no such session: 404)."""
    _, key, tokens = new_session(site.api)
    path = "/me/sessions/" + segment
    token = tokens["access_token"]

    through_nginx = call(
        site.api, "DELETE", path, key.headers("DELETE", site.api + path, token)
    )
    straight = call(
        site.upstream, "DELETE", path, key.headers("DELETE", site.direct + path, token)
    )

    for reply in (through_nginx, straight):
        assert (reply.status, reply.error) == (404, "not_found"), reply.body
        assert reply.body["message"] == "Session not found.", reply.body
