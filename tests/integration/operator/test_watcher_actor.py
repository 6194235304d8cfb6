"""The KubeWatcherActor on a real ActorRuntime: raw watch output in, the observations the Supervisor needs out.

A recording actor stands in for the Supervisor; the raw objects are shaped as the API server sends them (list
items of built-in kinds without kind/apiVersion, resourceVersions as strings of integers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from thespian.actors import Actor, ActorSystemMessage

from actors import metrics
from actors.messages import (
    GroupObserved,
    InventoryListed,
    JobObserved,
    JobRemoved,
    KubeNodeObserved,
    MachineObserved,
    MachineRemoved,
)
from actors.runtime import ActorRuntime
from actors.watch_port import GROUPS, KUBE_NODES, MACHINES, POWER_JOBS, Listed, WatchEvent, WatchEventType
from actors.watcher_actor import is_newer, parse_job, parse_kube_node, start_watcher
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.node import NodeState, OperationKind

NAMESPACE = "homelab"


@dataclass(frozen=True)
class TakeRecorded:
    request_id: str


@dataclass(frozen=True)
class Recorded:
    request_id: str
    messages: tuple[object, ...]


class Recorder(Actor):  # type: ignore[misc]  # thespian ships no type hints
    """Stands in for the Supervisor: keeps what it is sent, hands it over (and forgets it) when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[object] = []

    def receiveMessage(self, message: object, sender: Any) -> None:
        if isinstance(message, TakeRecorded):
            self.send(sender, Recorded(message.request_id, tuple(self.messages)))
            self.messages.clear()
        elif not isinstance(message, ActorSystemMessage):
            self.messages.append(message)


@dataclass
class Watcher:
    runtime: ActorRuntime
    address: Any
    recorder: Any

    def feed(self, *outputs: Listed | WatchEvent) -> list[object]:
        """Hand the outputs to the watcher as the watch threads do; what reached the Supervisor because of them."""
        for output in outputs:
            self.runtime.tell(self.address, output)
        reply = self.runtime.ask(self.recorder, TakeRecorded(self.runtime.new_request_id()), 5.0, Recorded)
        return list(reply.result(5.0).messages)


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    with ActorRuntime(name="watcher-test") as runtime:
        recorder = runtime.create_actor(Recorder).result(5.0)
        address = start_watcher(runtime, recorder)
        yield Watcher(runtime, address, recorder)


# --- raw objects as the API server sends them ------------------------------------------------------------------


def group(name: str, version: str, max_size: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION, "kind": "Group",
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": version, "uid": f"uid-{name}"},
        "spec": {"maxSize": max_size},
    }


def machine(name: str, version: str, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    template = {"image": "busybox:1.36"}
    body: dict[str, Any] = {
        "apiVersion": GROUP_VERSION, "kind": "Node",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "resourceVersion": version, "uid": f"uid-{name}",
            "labels": {label_names.GROUP_LABEL: "workers"},
        },
        "spec": {"startupJob": template, "shutdownJob": template, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def kube_node(name: str, version: str, *, ready: bool = True, heartbeat: str = "2026-03-01T10:00:00Z",
              provider_id: str = "", taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": version, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"providerID": provider_id, "taints": taints or []},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "15Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "lastHeartbeatTime": heartbeat}],
        },
    }


def job(name: str, owner: str, version: str, *, phase: str = "", labels: dict[str, str] | None = None
        ) -> dict[str, Any]:
    conditions = {
        "": [],
        "Complete": [{"type": "Complete", "status": "True"}],
        "Failed": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit"}],
    }[phase]
    job_labels = {
        label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
        label_names.MACHINE_LABEL: owner,
        label_names.GROUP_LABEL: "workers",
        label_names.OPERATION_LABEL: "startup",
        label_names.ATTEMPT_LABEL: name.rpartition("-")[2],
    } if labels is None else labels
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": version, "labels": job_labels,
                     "creationTimestamp": "2026-03-01T10:00:00Z"},
        "status": {"active": 0 if phase else 1, "conditions": conditions},
    }


def listed(resource: str, *items: dict[str, Any], version: str = "100") -> Listed:
    return Listed(resource, tuple(items), version)


def event(resource: str, kind: WatchEventType, obj: dict[str, Any]) -> WatchEvent:
    return WatchEvent(resource, kind, obj)


ADDED, MODIFIED, DELETED = WatchEventType.ADDED, WatchEventType.MODIFIED, WatchEventType.DELETED


def everything_listed(watcher: Watcher) -> InventoryListed:
    (inventory,) = watcher.feed(
        listed(GROUPS, group("workers", "10")),
        listed(MACHINES, machine("m1", "11"), machine("m2", "12")),
        listed(KUBE_NODES, kube_node("m1", "13")),
        listed(POWER_JOBS, job("m1-startup-1", "m1", "14")),
    )
    assert isinstance(inventory, InventoryListed)
    return inventory


# --- restart recovery: one inventory ----------------------------------------------------------------------------


def test_nothing_is_routed_until_every_resource_is_listed_then_one_inventory(watcher: Watcher) -> None:
    early = watcher.feed(
        listed(GROUPS, group("workers", "10")),
        listed(MACHINES, machine("m1", "11"), machine("m2", "12")),
        listed(KUBE_NODES, kube_node("m1", "13")),
        # Events between the lists and the last list are part of the picture the inventory gives.
        event(MACHINES, MODIFIED, machine("m2", "20", priority=5)),
        event(MACHINES, ADDED, machine("m3", "21")),
        event(MACHINES, DELETED, machine("m1", "22")),
    )
    assert early == []

    (inventory,) = watcher.feed(listed(POWER_JOBS, job("m2-startup-1", "m2", "30", phase="Complete")))

    assert isinstance(inventory, InventoryListed)
    assert [g.metadata.name for g in inventory.groups] == ["workers"]
    assert [(m.metadata.name, m.spec.priority) for m in inventory.machines] == [("m2", 5), ("m3", 0)]
    assert [(n.name, n.ready) for n in inventory.kube_nodes] == [("m1", True)]
    assert [(j.name, j.machine, j.succeeded) for j in inventory.jobs] == [("m2-startup-1", "m2", True)]


# --- after the inventory: events, staleness, heartbeats ------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(event(MACHINES, MODIFIED, machine("m1", "11")), [], id="same-version-repeated"),
        pytest.param(event(MACHINES, MODIFIED, machine("m1", "9", priority=3)), [], id="older-version-dropped"),
        pytest.param(event(MACHINES, MODIFIED, machine("m1", "50", priority=3)), [MachineObserved], id="newer"),
        pytest.param(event(MACHINES, DELETED, machine("m1", "50")), [MachineRemoved], id="deleted"),
        pytest.param(event(KUBE_NODES, MODIFIED, kube_node("m1", "50", heartbeat="2026-03-01T10:00:10Z")), [],
                     id="kubelet-heartbeat-dropped"),
        pytest.param(event(KUBE_NODES, MODIFIED, kube_node("m1", "50", ready=False)), [KubeNodeObserved],
                     id="node-turned-not-ready"),
        pytest.param(event(POWER_JOBS, MODIFIED, job("m1-startup-1", "m1", "50", phase="Failed")), [JobObserved],
                     id="job-failed"),
        pytest.param(event(POWER_JOBS, DELETED, job("m1-startup-1", "m1", "50")), [JobRemoved], id="job-deleted"),
        pytest.param(event(GROUPS, MODIFIED, group("workers", "50", max_size=5)), [GroupObserved],
                     id="group-changed"),
    ],
)
def test_events_after_the_inventory(watcher: Watcher, output: WatchEvent, expected: list[type]) -> None:
    everything_listed(watcher)

    routed = watcher.feed(output)

    assert [type(message) for message in routed] == expected


def test_a_relist_after_lost_history_reports_only_the_difference(watcher: Watcher) -> None:
    everything_listed(watcher)

    routed = watcher.feed(listed(MACHINES, machine("m2", "12"), machine("m4", "40"), version="41"))

    assert routed == [MachineRemoved(NAMESPACE, "m1"), *routed[1:]]
    (added,) = routed[1:]
    assert isinstance(added, MachineObserved)
    assert added.node.metadata.name == "m4"
    assert watcher.feed(listed(MACHINES, machine("m2", "12"), machine("m4", "40"), version="42")) == []


# --- unreadable objects ------------------------------------------------------------------------------------------


def test_a_malformed_node_resource_is_logged_once_counted_and_skipped(
    watcher: Watcher, caplog: pytest.LogCaptureFixture
) -> None:
    everything_listed(watcher)
    broken = machine("m9", "60")
    del broken["spec"]["startupJob"]
    def skipped() -> float:
        sample = ("homelab_autoscaler_watch_objects_skipped_total", {"resource": MACHINES})
        return metrics.REGISTRY.get_sample_value(*sample) or 0.0

    before = skipped()

    with caplog.at_level(logging.WARNING, logger="actors.watcher_actor"):
        assert watcher.feed(event(MACHINES, ADDED, broken)) == []
        assert watcher.feed(listed(MACHINES, machine("m1", "11"), machine("m2", "12"), broken)) == []

    (warning,) = caplog.records
    assert "homelab/m9" in warning.getMessage()
    assert "spec.startupJob" in warning.getMessage()
    assert skipped() == before + 1
    (fixed,) = watcher.feed(event(MACHINES, MODIFIED, machine("m9", "61")))
    assert isinstance(fixed, MachineObserved)


def test_an_unreadable_status_is_rebuilt_keeping_the_job_numbering(watcher: Watcher) -> None:
    (inventory,) = watcher.feed(
        listed(GROUPS, group("workers", "10")),
        listed(MACHINES, machine("m1", "11", status={"state": "Exploded", "attempts": 7})),
        listed(KUBE_NODES),
        listed(POWER_JOBS),
    )

    assert isinstance(inventory, InventoryListed)
    (rebuilt,) = inventory.machines
    status = rebuilt.status
    assert (status.state, status.attempts, status.reason) == (NodeState.SHUTDOWN, 7, "StatusRebuilt")
    assert "status.state" in status.message


def test_the_echo_of_a_status_write_is_not_forwarded_once_the_inventory_is_out(watcher: Watcher) -> None:
    everything_listed(watcher)

    echoed = watcher.feed(event(MACHINES, MODIFIED, machine("m1", "80", status={"state": "StartingUp"})))
    respecified = watcher.feed(event(MACHINES, MODIFIED, machine("m1", "81", priority=9)))

    assert echoed == []
    assert [type(message) for message in respecified] == [MachineObserved]


# --- the pure readers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "known", "newer"),
    [
        pytest.param("10", "9", True, id="integers-compared-as-numbers"),
        pytest.param("9", "10", False, id="older-integer"),
        pytest.param("10", "10", False, id="same"),
        pytest.param("b", "a", True, id="opaque-different"),
        pytest.param("a", "a", False, id="opaque-same"),
    ],
)
def test_resource_version_order(candidate: str, known: str, newer: bool) -> None:
    assert is_newer(candidate, known) is newer


def test_a_failed_job_is_read_from_its_labels_and_conditions() -> None:
    observed = parse_job(job("m1-startup-3", "m1", "5", phase="Failed"))

    assert (observed.machine, observed.group, observed.kind, observed.attempt) == (
        "m1", "workers", OperationKind.STARTUP, 3
    )
    assert (observed.active, observed.succeeded, observed.failed) == (False, False, True)
    assert observed.message == "Job has reached the specified backoff limit"
    assert observed.created == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_a_job_without_our_labels_cannot_be_read() -> None:
    with pytest.raises(ValueError, match=label_names.ATTEMPT_LABEL):
        parse_job(job("stray", "m1", "5", labels={label_names.MACHINE_LABEL: "m1",
                                                  label_names.OPERATION_LABEL: "startup"}))


def test_a_kubernetes_node_keeps_what_the_machine_needs_and_drops_taints_kubernetes_would_refuse() -> None:
    observed = parse_kube_node(kube_node("m1", "5", provider_id="k3s://m1", taints=[
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule", "timeAdded": "2026-03-01T10:00:00Z"},
        {"key": "broken", "effect": "Sometimes"},
    ]))

    assert (observed.ready, observed.provider_id) == (True, "k3s://m1")
    assert [(taint.key, taint.value) for taint in observed.snapshot.taints] == [("dedicated", "gpu")]
    assert observed.snapshot.capacity["memory"] == "16Gi"
    assert observed.snapshot.allocatable["memory"] == "15Gi"
    assert observed.snapshot.labels == {"kubernetes.io/hostname": "m1"}
