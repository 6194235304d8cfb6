"""Per-RPC metrics of the gateway: calls by method and status code, and latency by method.

The metrics themselves are declared with every other operator metric in `actors.metrics` (one module owns
the exported names); this module only feeds them. It exists because the hot calls run thousands of times per
CA loop: `labels()` takes a lock and a dict lookup on every call, so the label children are looked up once per
(method, code) and kept here.
"""

from __future__ import annotations

from typing import Final

import grpc
from prometheus_client.metrics import Counter, Histogram

from actors import metrics

_requests: Final[dict[tuple[str, str], Counter]] = {}
_latencies: Final[dict[str, Histogram]] = {}


def record(method: str, code: grpc.StatusCode, seconds: float) -> None:
    """Count one call of `method` answered with `code` and observe how long it took."""
    code_name: str = code.name
    counter = _requests.get((method, code_name))
    if counter is None:
        # Two threads may both get here first; labels() returns the same child, so the race is harmless.
        counter = _requests[(method, code_name)] = metrics.GRPC_REQUESTS.labels(method, code_name)
    latency = _latencies.get(method)
    if latency is None:
        latency = _latencies[method] = metrics.GRPC_REQUEST_SECONDS.labels(method)
    counter.inc()
    latency.observe(seconds)
