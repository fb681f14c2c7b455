"""What a DPoP proof costs the server, in process (issue 27).

    .venv/bin/python -m bench.proof_cost                       # ES256, EdDSA, RS256
    .venv/bin/python -m bench.proof_cost --algorithms ES256,ES384,EdDSA,RS256,PS256

Two measurements in one process, on production settings (bench/patch_gains.py's
app: the memory blocklist, a SQLite file, the library patches applied):

1. `auth.proofs.check_proof`, the stateless checks of a proof (RFC 9449 §4.3), for
   each algorithm: distinct proofs of one key (the server keeps the keys it has
   built, so a key seen before costs its signature check and the claims' checks);
   of it the signature verification alone (PyJWT's algorithm, as check_proof has
   it verify); and a proof of a key never seen before (the key built from its JWK
   too, an EC point checked to be on its curve).
2. Whole requests through Flask's test client (the app's own cost, no server):
   GET /item/<id> and POST /refresh with a bearer session, and with a session bound
   to a key of each algorithm (`Authorization: DPoP`, a proof of its own on every
   request, signed before its batch; each refresh with a refresh token of its own).

Each figure is the minimum over the rounds of a batch's mean, the rounds going
through the variants in turn (a slow spell of the machine then hits them alike);
CPU time of the process by default (--clock wall for wall-clock time). Compare
figures within one run. Run it from the repository's root, as a module.
"""

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator

from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_decode

from bench.patch_gains import CLOCKS, production_app
from devtools.dpop import ALGORITHMS, ProofKey

BASE = "http://localhost"  # the Flask test client's base URL, which `htu` names
MAX_AGE = 60.0  # DPOP_PROOF_MAX_AGE's default
WARM_UP = 100  # requests of each variant before any is timed
NEW_KEYS = 16  # proofs of never-seen keys a round (RSA keys take long to make)


def timed(clock: Callable[[], float], calls: list[Callable[[], object]]) -> float:
    """Microseconds a call, over the batch."""
    started = clock()
    for call in calls:
        call()
    return (clock() - started) / len(calls) * 1e6


def keep_best(best: dict[str, float], name: str, value: float) -> None:
    best[name] = min(best.get(name, value), value)


# --- 1. check_proof -------------------------------------------------------------------


def proof_costs(algorithms: list[str], batch: int, rounds: int, clock) -> dict:
    """For each algorithm, µs per: check_proof of a known key ("check"), its
    signature verification alone ("verify"), and check_proof of a new key
    ("new")."""
    from auth import proofs

    url, token = BASE + "/item/1", "x" * 400  # about an access token's length
    keys = {name: ProofKey(name) for name in algorithms}
    best: dict[str, dict[str, float]] = {name: {} for name in algorithms}
    for _ in range(rounds):
        for name, key in keys.items():
            values = [key.proof("GET", url, token=token) for _ in range(batch + 1)]
            strangers = [
                ProofKey(name).proof("GET", url, token=token) for _ in range(NEW_KEYS)
            ]
            expected = proofs.Expected(
                "GET", url, token, ALGORITHMS, time.time(), MAX_AGE, 0
            )
            proofs.check_proof(values.pop(), expected)  # the key, built once

            def check(value: str, expected=expected) -> object:
                return proofs.check_proof(value, expected)

            figures = {
                "check": timed(clock, [lambda v=v: check(v) for v in values]),
                "verify": signature_cost(clock, key, values),
                "new": timed(clock, [lambda v=v: check(v) for v in strangers]),
            }
            for label, value in figures.items():
                keep_best(best[name], label, value)
    return best


def signature_cost(clock, key: ProofKey, values: list[str]) -> float:
    """The signature verification alone, as check_proof has PyJWT run it."""
    algorithm = get_default_algorithms()[key.algorithm]
    public = algorithm.from_jwk(json.dumps(key.jwk))
    signed = []
    for value in values:
        signing_input, _, signature = value.rpartition(".")
        signed.append((signing_input.encode(), base64url_decode(signature)))
    return timed(
        clock, [lambda m=m, s=s: algorithm.verify(m, public, s) for m, s in signed]
    )


# --- 2. whole requests ----------------------------------------------------------------


class Variant:
    """One way of sending a case's requests: bearer, or bound to `key`."""

    def __init__(self, key: ProofKey | None) -> None:
        self.key = key
        self.name = "bearer" if key is None else f"DPoP {key.algorithm}"

    def headers(self, method: str, path: str, token: str) -> dict[str, str]:
        if self.key is None:
            return {"Authorization": f"Bearer {token}"}
        return self.key.headers(method, BASE + path, token)


def request_costs(
    made: tuple, algorithms: list[str], case: str, batch: int, rounds: int, clock
) -> dict[str, float]:
    """µs per request of `case` ("item" or "refresh") for each variant, on the
    app `made` by production_app."""
    from auth import start_session
    from core import db
    from models import UserModel

    app, user_id, item_id = made
    variants = [Variant(None)] + [Variant(ProofKey(name)) for name in algorithms]
    method, path = (
        ("GET", f"/item/{item_id}") if case == "item" else ("POST", "/refresh")
    )
    wanted = 1 if case == "item" else WARM_UP + batch * rounds
    with app.app_context():
        # Sessions minted up front (a refresh token is good once): bound to the
        # variant's key, as a login with its proof would bind them.
        user = db.session.get(UserModel, user_id)
        kind = "access_token" if case == "item" else "refresh_token"
        tokens: dict[str, Iterator[str]] = {}
        for variant in variants:
            jkt = None if variant.key is None else variant.key.jkt
            minted = [start_session(user, jkt=jkt)[kind] for _ in range(wanted)]
            # GET /item/<id> sends one access token again and again.
            many = iter(minted) if case == "refresh" else itertools.repeat(minted[0])
            tokens[variant.name] = many
    client = app.test_client()

    def send_all(variant: Variant, count: int) -> list[Callable[[], object]]:
        prepared = [
            variant.headers(method, path, next(tokens[variant.name]))
            for _ in range(count)
        ]

        def send(headers: dict[str, str]) -> None:
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 200, response.get_json()

        return [lambda h=h: send(h) for h in prepared]

    for variant in variants:
        for call in send_all(variant, WARM_UP):
            call()
    best: dict[str, float] = {}
    for round_number in range(rounds):
        order = variants if round_number % 2 == 0 else variants[::-1]
        for variant in order:
            calls = send_all(variant, batch)  # proofs signed before the clock runs
            keep_best(best, variant.name, timed(clock, calls))
    return best


# --- the report -----------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", default="ES256,EdDSA,RS256")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--proofs", type=int, default=400, help="check_proof batch")
    parser.add_argument("--requests", type=int, default=300, help="request batch")
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu")
    args = parser.parse_args()
    algorithms = [name.strip() for name in args.algorithms.split(",") if name.strip()]
    unknown = set(algorithms) - set(ALGORITHMS)
    if unknown:
        sys.exit(f"unknown algorithms: {sorted(unknown)}; known: {ALGORITHMS}")
    clock = CLOCKS[args.clock]
    made = production_app("bench-proof-cost-")  # the library patches, applied
    print(f"{args.clock} time; minimum over {args.rounds} rounds of a batch's mean\n")
    costs = proof_costs(algorithms, args.proofs, args.rounds, clock)
    print(
        "| algorithm | check_proof, known key | of it the signature "
        "| the rest (parsing, key lookup, claims) | check_proof, new key |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, cost in costs.items():
        rest = cost["check"] - cost["verify"]
        print(
            f"| {name} | {cost['check']:.0f} µs | {cost['verify']:.0f} µs "
            f"| {rest:.0f} µs | {cost['new']:.0f} µs |"
        )
    for case, title in (("item", "GET /item/<id>"), ("refresh", "POST /refresh")):
        costs = request_costs(made, algorithms, case, args.requests, args.rounds, clock)
        bearer = costs["bearer"]
        print(f"\n{title}, in process:\n")
        print("| session | µs a request | beside bearer |")
        print("|---|---:|---:|")
        for name, cost in costs.items():
            more = (
                ""
                if name == "bearer"
                else f"{cost / bearer:.2f}x (+{cost - bearer:.0f} µs)"
            )
            print(f"| {name} | {cost:.0f} | {more} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
