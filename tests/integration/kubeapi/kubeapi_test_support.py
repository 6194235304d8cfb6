"""Helpers shared by the adapter tests: polling, report and eviction recorders, and builders for machines, pods,
disruption budgets and batches.

A plain module (conftest files are not importable by name). Kubernetes Nodes and Leases are cluster-wide while
tests share one fake server per module, so every Kubernetes Node name is prefixed with the test's namespace.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from actors.effects_port import EffectBatch, MachineRef
from actors.fsm import effects
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.group import GroupSpec
from schemas.node import Node
from sim.fakeapi import FakeApiServer

T = TypeVar("T")

REPLY_TO = "node-actor-address"
"""Stands in for an ActorAddress: the writer only hands it back to `report`."""
GROUP = "rack-a"


class Reports:
    """What the writer reported to actors, as (address, message) pairs; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Any, object]] = []

    def __call__(self, address: Any, message: object) -> None:
        with self._lock:
            self._items.append((address, message))

    @property
    def messages(self) -> list[object]:
        with self._lock:
            return [message for _, message in self._items]

    @property
    def addresses(self) -> list[Any]:
        with self._lock:
            return [address for address, _ in self._items]

    def of_type(self, kind: type[T]) -> list[T]:
        return [message for message in self.messages if isinstance(message, kind)]


def job_template() -> dict[str, Any]:
    return {"image": "busybox:1.36", "command": ["sh", "-c", "echo power"]}


def create_machine(fake_api: FakeApiServer, namespace: str, name: str, **spec: Any) -> Node:
    """A Node resource stored in the fake, returned as the model the actors would hold (uid included)."""
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "labels": {label_names.GROUP_LABEL: GROUP}},
        "spec": {
            "kubernetesNodeName": kube_node_name(namespace, name),
            "startupJob": job_template(),
            "shutdownJob": job_template(),
            **spec,
        },
    }
    stored = fake_api.store.create(GROUP_VERSION, "nodes", body, namespace)
    return Node.model_validate(stored)


def create_group(fake_api: FakeApiServer, namespace: str, name: str = GROUP, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "Group",
        "metadata": {"name": name},
        "spec": {"maxSize": 3, **spec},
    }
    return fake_api.store.create(GROUP_VERSION, "groups", body, namespace)


def kube_node_name(namespace: str, machine: str) -> str:
    return f"{namespace}-{machine}"


def create_kube_node(fake_api: FakeApiServer, name: str, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}
    return fake_api.store.create("v1", "nodes", body)


def group_spec(**fields: Any) -> GroupSpec:
    return GroupSpec.model_validate({"maxSize": 3, "bootTimeout": "2m", "shutdownTimeout": "1m", **fields})


def batch_for(
    node: Node, *effect_list: effects.Effect, spec: GroupSpec | None = None, reply_to: Any = REPLY_TO
) -> EffectBatch:
    machine = MachineRef(
        namespace=node.metadata.namespace,
        name=node.metadata.name,
        kubernetes_node_name=node.spec.kubernetes_node_name or node.metadata.name,
        group=GROUP,
    )
    return EffectBatch(machine, node, spec or group_spec(), tuple(effect_list), reply_to)


class EvictionRecorder:
    """An `on_request` hook of the fake API recording every eviction asked for, refused ones included.

    `before` maps an eviction count to a callable run just before that eviction (1-based) is processed, so a test
    can change the world at an exact point of a drain (e.g. let a budget allow the third attempt).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._evictions: list[str] = []
        self.before: dict[int, Callable[[], object]] = {}

    def __call__(self, method: str, target: str, body: bytes) -> None:
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction", target.split("?")[0])
        if method != "POST" or match is None:
            return
        with self._lock:
            self._evictions.append(f"{match[1]}/{match[2]}")
            action = self.before.get(len(self._evictions))
        if action is not None:
            action()

    @property
    def evictions(self) -> list[str]:
        """`namespace/name` of every eviction asked for, in order."""
        with self._lock:
            return list(self._evictions)


def create_pod(
    fake_api: FakeApiServer, namespace: str, name: str, node_name: str, *, phase: str = "Running", **metadata: Any
) -> dict[str, Any]:
    """A pod on `node_name`, Running and Ready by default (as a kubelet would report it), so budgets count it."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **metadata},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]},
    }
    fake_api.store.create("v1", "pods", body, namespace)
    status: dict[str, Any] = {"phase": phase}
    if phase == "Running":
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    return fake_api.store.patch("v1", "pods", name, {"status": status}, namespace, subresource="status")


def create_budget(fake_api: FakeApiServer, namespace: str, name: str, app: str, **spec: Any) -> dict[str, Any]:
    """A PodDisruptionBudget over the pods labelled `app=<app>`."""
    body = {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}
    return fake_api.store.create("policy/v1", "poddisruptionbudgets", body, namespace)
