"""What the admission webhook knows about other objects: a thread-safe cache fed by watches, plus one live read.

The webhook's cross-object rules (`webhooks.admission`) ask three questions: does this Group exist, which Node
resources exist (uniqueness of Kubernetes Node names and providerIDs, the Group's room for always-on machines),
and does this Kubernetes Node exist. They are asked on the API server's clock (5 s for the whole review) from the
webhook's request threads, so the answers come from memory: three list-then-watch threads of their own keep the
cache current. They run on every replica, leader or not, because every replica serves the webhook (only the
leader receives traffic, but a standby must be ready the moment it is elected); they only read.

A cache lags a write by a moment, and `kubectl apply -f` of a Group followed at once by its Nodes must not be
refused for it, so a "no such Group" is confirmed with a live GET before it becomes a denial. A live read that
fails raises, and the webhook then denies with code 500 (the webhook's failure policy is Fail, so this is the
honest answer).

This module cannot import `webhooks` (actors know nothing of the edges), so the record type of a machine is given
by the composition root: `CachedAdmissionLookup(..., machine_record=webhooks.KnownMachine)` satisfies the
`AdmissionLookup` protocol exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, TypeVar

from kubernetes.client import ApiClient

from actors.watch_port import Listed, WatchEvent, WatchEventType
from kubeapi.kube_client import KubeApi, KubeNotFound
from kubeapi.watch import CUSTOM_PREFIX, ResourceWatch, collection
from schemas import labels

LOGGER = logging.getLogger(__name__)

MachineT = TypeVar("MachineT")
MachineRecord = Callable[[str, str, str | None, str, str | None, str], MachineT]
"""Builds a machine record from (name, kubernetes_node_name, provider_id, power_policy, group, namespace)."""

LIVE_READ_TIMEOUT: Final = (2.0, 2.0)
"""(connect, read) seconds of the live Group read: well inside the API server's 5 s for the whole review."""
ADMISSION_GROUPS: Final = "admission-groups"
ADMISSION_MACHINES: Final = "admission-machines"
ADMISSION_KUBE_NODES: Final = "admission-kube-nodes"


def machine_facts(raw: Mapping[str, Any]) -> tuple[str, str, str | None, str, str | None, str]:
    """(name, kubernetes_node_name, provider_id, power_policy, group, namespace) of a raw Node resource. Pure.

    Read leniently, without the schema: a stored object that breaks a newer rule must still count for uniqueness.
    """
    metadata = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    name = str(metadata.get("name") or "")
    provider_id = spec.get("providerID") or status.get("providerID") or None
    group = (metadata.get("labels") or {}).get(labels.GROUP_LABEL) or None
    return (
        name,
        str(spec.get("kubernetesNodeName") or name),
        str(provider_id) if provider_id is not None else None,
        str(spec.get("powerPolicy") or "Auto"),
        str(group) if group is not None else None,
        str(metadata.get("namespace") or ""),
    )


def _namespaced_key(raw: Mapping[str, Any]) -> tuple[str, str]:
    metadata = raw.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


class CachedAdmissionLookup(Generic[MachineT]):
    """`webhooks.admission.AdmissionLookup` over watch caches; every method is safe from any thread."""

    def __init__(
        self,
        api_client: ApiClient,
        machine_record: MachineRecord[MachineT],
        watch_namespace: str = "",
        *,
        watch_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._api = KubeApi(api_client, timeout=LIVE_READ_TIMEOUT)
        self._machine_record = machine_record
        self._lock = threading.Lock()
        self._groups: set[tuple[str, str]] = set()
        self._machines: dict[tuple[str, str], MachineT] = {}
        self._kube_nodes: set[str] = set()
        options = dict(watch_options or {})
        custom = (
            f"{CUSTOM_PREFIX}/namespaces/{watch_namespace}" if watch_namespace else CUSTOM_PREFIX
        )
        watch_api = KubeApi(api_client)
        self._watches = [
            ResourceWatch(ADMISSION_GROUPS, *collection(watch_api, f"{custom}/groups"), self._on_groups, **options),
            ResourceWatch(
                ADMISSION_MACHINES, *collection(watch_api, f"{custom}/nodes"), self._on_machines, **options
            ),
            ResourceWatch(
                ADMISSION_KUBE_NODES, *collection(watch_api, "/api/v1/nodes"), self._on_kube_nodes, **options
            ),
        ]

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        for watch in self._watches:
            watch.start()

    def stop(self, timeout: float = 5.0) -> None:
        for watch in self._watches:
            watch.stop(timeout)

    def wait_synced(self, timeout: float) -> bool:
        """True once every watch has delivered its first list (False at the timeout)."""
        deadline = time.monotonic() + timeout
        return all(watch.wait_synced(max(0.0, deadline - time.monotonic())) for watch in self._watches)

    @property
    def synced(self) -> bool:
        return all(watch.wait_synced(0) for watch in self._watches)

    # --- AdmissionLookup ------------------------------------------------------------------------------------

    def group_exists(self, namespace: str, name: str) -> bool:
        with self._lock:
            if (namespace, name) in self._groups:
                return True
        path = f"{CUSTOM_PREFIX}/namespaces/{namespace}/groups/{name}"
        try:
            self._api.get(path, what=f"get Group {namespace}/{name}")
        except KubeNotFound:
            return False
        LOGGER.debug("admission: Group %s/%s exists but the cache has not seen it yet", namespace, name)
        return True

    def nodes(self, namespace: str) -> list[MachineT]:
        with self._lock:
            if not namespace:
                return list(self._machines.values())
            return [record for (space, _name), record in self._machines.items() if space == namespace]

    def kubernetes_node_exists(self, name: str) -> bool:
        with self._lock:
            return name in self._kube_nodes

    # --- watch sinks (watch threads) --------------------------------------------------------------------------

    def _on_groups(self, output: WatchEvent | Listed) -> None:
        with self._lock:
            if isinstance(output, Listed):
                self._groups = {_namespaced_key(item) for item in output.items}
            elif output.type is WatchEventType.DELETED:
                self._groups.discard(_namespaced_key(output.object))
            else:
                self._groups.add(_namespaced_key(output.object))

    def _on_machines(self, output: WatchEvent | Listed) -> None:
        with self._lock:
            if isinstance(output, Listed):
                self._machines = {
                    _namespaced_key(item): self._machine_record(*machine_facts(item)) for item in output.items
                }
            elif output.type is WatchEventType.DELETED:
                self._machines.pop(_namespaced_key(output.object), None)
            else:
                self._machines[_namespaced_key(output.object)] = self._machine_record(*machine_facts(output.object))

    def _on_kube_nodes(self, output: WatchEvent | Listed) -> None:
        with self._lock:
            if isinstance(output, Listed):
                self._kube_nodes = {_namespaced_key(item)[1] for item in output.items}
            elif output.type is WatchEventType.DELETED:
                self._kube_nodes.discard(_namespaced_key(output.object)[1])
            else:
                self._kube_nodes.add(_namespaced_key(output.object)[1])
