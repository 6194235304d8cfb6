"""Old names of the simulator's Kubernetes client, kept only for importers outside `sim.machines`.

The simulator now calls the API server through the operator's own `actors.adapters.kube_client` (requests,
watch streams, and the `KubeError` tree), so both behave alike against our fake and a real cluster. The names
below are aliases, not code: `sim.seed`, `sim.invariants`, the `sim` command and the e2e support still import
them, and this module can go once they import `KubeApi`/`KubeError` directly.
"""

from __future__ import annotations

from actors.adapters.kube_client import MERGE_PATCH, KubeApi, KubeError

KubeRest = KubeApi
KubeApiError = KubeError

__all__ = ["MERGE_PATCH", "KubeApiError", "KubeRest"]
