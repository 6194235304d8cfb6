"""What every part of the writer shares: its API calls, counted, and the resource names they are counted under.

Each write goes through `CountedWrites`, so the kube-writes metric (by verb, resource and outcome) sees all of them,
whichever effect made them; the resource names are also those docs/architecture/kubernetes.md uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from actors import metrics
from kubeapi.kube_client import KubeApi, KubeError, outcome
from schemas import API_GROUP, API_VERSION

Report = Callable[[Any, object], None]
"""Deliver a message to an actor address (the runtime's `tell`)."""

CUSTOM_PREFIX: Final = f"/apis/{API_GROUP}/{API_VERSION}"

# Resource names used in the kube-writes metric (and in docs/architecture/kubernetes.md).
JOBS: Final = "jobs"
NODES: Final = "nodes"
PODS_EVICTION: Final = "pods/eviction"
EVENTS: Final = "events"
MACHINE_STATUS: Final = f"nodes.{API_GROUP}/status"
GROUP_STATUS: Final = f"groups.{API_GROUP}/status"


class CountedWrites:
    """Sends writes through `api`, counting each in the kube-writes metric; call it as the API call itself."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    def __call__(self, verb: str, resource: str, method: str, path: str, **arguments: Any) -> dict[str, Any]:
        try:
            answer = self._api.request(method, path, what=f"{verb} {path}", **arguments)
        except KubeError as error:
            metrics.KUBE_WRITES.labels(verb, resource, outcome(error)).inc()
            raise
        metrics.KUBE_WRITES.labels(verb, resource, "ok").inc()
        return answer
