"""Section 7: what the worker's redaction costs per response body.

Every body the worker returns passes `Redactor.body` (snworker/worker/redact.py) before it
leaves the worker. Its cost is a pure function of the body and the secrets, so it is measured
here, in this process, on the bodies sections 2 and 4 fetch, with the secrets a worker holds
after one consent, registered in the order and with the lifetimes `authorize.py` gives them.
Each body's redaction is interleaved in blocks with snworker GETs of the same body (default
framing), and reported as a share of that GET's median latency.

The cost depends on the secrets drawn, not only on their number: a live token's fragments are
found by searching for 12-character blocks of it, and how fast `bytes.find` skips through a
body depends on which characters a block shares with the body. So the redactions cycle through
DRAWS independent sets of secrets, call by call, and the figure is the median over all of
them; the medians of the best and the worst draw are reported beside it.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import statistics
import time
from functools import partial
from typing import Any

from benchmarks.measure import Block, alternate, summarize, timed_loop
from benchmarks.sections import DEFAULT_FRAMING, Bench
from snworker.worker.authorize import Pkce
from snworker.worker.redact import REDACTED, Redactor

# ServiceNow's default access token lifespan, and the slack authorize.py adds to it: the token
# stays live (searched for as base64 and as fragments) for the whole run, as a fresh one is.
ACCESS_LIFESPAN = 1800.0
EXPIRY_SLACK = 300.0
BODIES = ("small", "1MB")
DRAWS = 8


def worker_redactor() -> tuple[Redactor, dict[str, int]]:
    """A Redactor holding what a worker holds once connected, and the secrets' lengths.

    As `run_flow` and `TokenEndpoint._grant` do: the PKCE verifier before the browser opens,
    the code the callback brought, then the grant's access token (live until its expiry plus
    slack) and refresh token (kept raw only: no request carries it).
    """
    verifier = Pkce.new().verifier
    code = secrets.token_urlsafe(32)  # 43 characters, as the stub issues them
    access = secrets.token_urlsafe(64)  # 86 characters, as ServiceNow issues them
    refresh = secrets.token_urlsafe(64)
    redactor = Redactor()
    redactor.add(verifier)
    redactor.add(code)
    redactor.add(access, live_until=time.monotonic() + ACCESS_LIFESPAN + EXPIRY_SLACK)
    redactor.add(refresh)
    # The figure is only worth having if the live token's encodings and fragments are searched.
    leaks = (base64.b64encode(f"Bearer {access}".encode()), access[7:40].encode())
    if not all(REDACTED.encode() in redactor.body(b'{"x":"' + leak + b'"}') for leak in leaks):
        raise RuntimeError("the access token is not searched for as a live token")
    lengths = {"verifier": len(verifier), "code": len(code),
               "access_token_live": len(access), "refresh_token": len(refresh)}
    return redactor, lengths


def _redact_block(redactors: list[Redactor], body: bytes, count: int) -> Block:
    """`count` redactions of `body`, call i by redactor i mod DRAWS (from 0 in every block)."""
    turn = itertools.cycle([partial(redactor.body, body) for redactor in redactors])
    return timed_loop(lambda: next(turn)(), count)


def _draw_medians_us(blocks: list[Block], draws: int) -> list[float]:
    """Each draw's median latency: its calls are every `draws`-th of every block."""
    return [
        statistics.median(value / 1000.0 for block in blocks
                          for value in block.latencies_ns[draw::draws])
        for draw in range(draws)
    ]


def redaction(bench: Bench) -> dict[str, Any]:
    """`Redactor.body` on the small GET's body and section 4's 1 MB body, against their GETs."""
    drawn = [worker_redactor() for _ in range(DRAWS)]
    redactors = [redactor for redactor, _ in drawn]
    paths = {"small": bench.record_path, "1MB": bench.payload_paths["1MB"]}
    result: dict[str, Any] = {
        "secrets": drawn[0][1],
        "draws": DRAWS,
        "framing": DEFAULT_FRAMING,
        "label": "Redactor.body in-process, 4 secrets (1 live access token), vs snworker GET "
                 "of the same body",
    }
    for label in BODIES:
        path = paths[label]
        body = bench.connection.execute_api_request(path).content
        # The common case is measured: nothing to replace.
        if any(redactor.body(body) != body for redactor in redactors):
            raise RuntimeError(f"the {label} body holds one of the benchmark's secrets")
        get = partial(bench.snworker_get, path)
        for _ in range(2):
            get()
        count = bench.scale.redact_per_block[label]
        blocks_redact, blocks_get = alternate(
            bench.scale.blocks,
            partial(_redact_block, redactors, body, count),
            partial(timed_loop, get, bench.scale.redact_get_per_block[label]),
        )
        cost, fetch = summarize(blocks_redact), summarize(blocks_get)
        draws = _draw_medians_us(blocks_redact, DRAWS)
        result[label] = {
            "body_bytes": len(body),
            "redact": cost.as_json(),
            "redact_draws_median_us": {"best": round(min(draws), 2),
                                       "worst": round(max(draws), 2)},
            "snworker_get": fetch.as_json(),
            "redact_mb_per_s": round(len(body) / cost.median_us, 1),
            "share_pct": round(100.0 * cost.median_us / fetch.median_us, 2),
            "share_pct_worst_draw": round(100.0 * max(draws) / fetch.median_us, 2),
        }
    return result
