"""The benchmark's DPoP-bound cases (RFC 9449, issue 27), beside the bearer ones:

- `item-dpop`, case 1 bound: GET /item/<id> with `Authorization: DPoP <access
  token>` and a proof of its own on every request (a fresh `jti`, `ath` of the
  token, `htu` the very URL wrk requests), on a server of its own;
- `refresh-dpop`, case 3 bound: POST /refresh, every request with a bound refresh
  token of its own (`Authorization: DPoP`) and a proof with that token's `ath`, on
  the server of case 3 (`refresh`).

A proof is good once and for DPOP_PROOF_MAX_AGE seconds (60), so a run's proofs
are signed just before it, one for every request wrk may send, and handed to wrk
in one file per thread of "token proof" lines (bench/wrk_dpop.lua), as refresh
tokens are (bench/wrk_tokens.lua): the signing is never inside the timed window.
The client's key is made once a bench run (ES256, as clients use by default;
`--proof-algorithm` for another), so the server builds it once and then only
verifies each proof's signature, as it does for a client that keeps its key.
"""

import time
from collections.abc import Callable, Iterator

from devtools import servers
from devtools.dpop import ALGORITHMS, ProofKey

PROOF_MAX_AGE = 60  # the server's DPOP_PROOF_MAX_AGE default, which the bench keeps
# Requests a second no bound case comes near on loopback: enough proofs a run.
PROOFS_A_SECOND = 4_000


def add_options(parser) -> None:
    """The bound cases' options (bench.run's parser)."""
    parser.add_argument(
        "--proof-algorithm",
        default="ES256",
        choices=ALGORITHMS,
        help="the DPoP proofs' algorithm in item-dpop and refresh-dpop "
        "(default: ES256)",
    )
    parser.add_argument(
        "--proofs-per-run",
        type=int,
        help="DPoP proofs signed before each item-dpop run (default: enough for "
        f"{PROOFS_A_SECOND:,} requests a second)",
    )


def proof_lines(
    key: ProofKey, method: str, url: str, tokens: list[str], duration: float
) -> list[str]:
    """A "token proof" line for each token: a proof of `key` for `method` at
    `url` with the token's `ath`. Refused (SystemExit) when signing them took so
    long that the last requests of a `duration`-second run would come too late."""
    started = time.monotonic()
    lines = [f"{token} {key.proof(method, url, token=token)}" for token in tokens]
    took = time.monotonic() - started
    if took + duration + 1 >= PROOF_MAX_AGE:
        raise SystemExit(
            f"{len(lines)} {key.algorithm} proofs took {took:.1f} s to sign: the "
            f"run would end after they are {PROOF_MAX_AGE} s old "
            "(lower --proofs-per-run or --tokens-per-run)"
        )
    return lines


def bound_login(base: str, key: ProofKey, username: str, password: str) -> dict:
    """POST /login with a proof of `key`: a session bound to it (the token pair)."""
    proof = {"DPoP": key.proof("POST", base + "/login")}
    tokens = servers.login(base, username, password, headers=proof)
    assert tokens["token_type"] == "DPoP", tokens
    return tokens


def bound_cases(
    bench,
    key: ProofKey,
    item_base: str,
    refresh_base: str,
    refresh_batches: Iterator[list[str]],
    login: tuple[str, str],
) -> list[tuple[str, Callable[[], float]]]:
    """item-dpop on `item_base` (with a bound login there) and refresh-dpop on
    `refresh_base` (with `refresh_batches`: refresh tokens bound to `key`, one
    batch a run), each signing its run's proofs when it is called."""
    args = bench.args
    access = bound_login(item_base, key, *login)["access_token"]
    item_url, refresh_url = item_base + "/item/5", refresh_base + "/refresh"
    count = args.proofs_per_run or args.duration * PROOFS_A_SECOND
    repeated = [access] * count

    def item() -> float:
        lines = proof_lines(key, "GET", item_url, repeated, args.duration)
        return bench.measure("item-dpop", item_url, proofs=lines)

    def refresh() -> float:
        tokens = next(refresh_batches)
        lines = proof_lines(key, "POST", refresh_url, tokens, args.duration)
        return bench.measure("refresh-dpop", refresh_url, method="POST", proofs=lines)

    return [("item-dpop", item), ("refresh-dpop", refresh)]
