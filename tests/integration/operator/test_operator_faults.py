"""An unreliable API server does not confuse the operator: broken watches, lost history, errors and conflicts.

Faults are injected into the fake API mid-flight (while machines boot) through its fault injector; each test then
checks what a person would: every machine ends where CA asked, each power Job exists once, and nothing anyone
else wrote to a Node is lost.
"""

from __future__ import annotations

import logging
import threading

import pytest

from actors import metrics
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.crds import NODE_CRD_NAME
from tests.support.crds import looser_crd
from tests.support.operator_homelab import GROUP_ID, NAMESPACE, RUNNING, Homelab, machine_manifest, simulated
from tests.support.polling import wait_for


def _counter(name: str, **labels: str) -> float:
    """The counter's `_total` sample for `labels`, as a scrape shows it (0 before the first count)."""
    return metrics.REGISTRY.get_sample_value(f"{metrics.PREFIX}{name}_total", labels) or 0.0


def _members(homelab: Homelab) -> list[str]:
    operator = homelab.operators[0].operator
    group = operator.read_model.group(GROUP_ID)
    return sorted(machine.name for machine in group.machines) if group is not None else []


def test_dropped_watches_lost_history_and_server_errors_mid_flight(homelab: Homelab) -> None:
    homelab.add_group(max_size=3)
    for name in ("m1", "m2", "m3"):
        homelab.add_machine(name)
    homelab.simulate(simulated("m1"), simulated("m2"), simulated("m3"), job_seconds=0.5)
    ca = homelab.start_operator()
    restarts_before = _counter("watch_restarts", resource="power-jobs")
    job_lists_before = homelab.fake.faults.count("list", "jobs")

    ca.increase_size(2)
    wait_for(lambda: len(homelab.jobs()) == 2, what="two startup Jobs")
    # Every watch breaks and cannot come back at once; meanwhile a machine is deleted and history is compacted,
    # so resuming answers 410 and only a relist can show the deletion.
    homelab.fake.faults.fail("watch", "*", count=8, code=500)
    homelab.fake.faults.fail("list", "*", count=3, code=500)
    homelab.fake.faults.drop_watches()
    unused = next(name for name in ("m1", "m2", "m3") if not homelab.jobs(name))
    homelab.fake.store.delete(GROUP_VERSION, "nodes", unused, NAMESPACE)
    homelab.fake.faults.compact_history()

    booted = sorted({"m1", "m2", "m3"} - {unused})
    for name in booted:
        homelab.wait_state(name, "Ready")
    wait_for(lambda: _members(homelab) == booted, what=f"{unused} to leave the group after the relist")
    assert [instance.status.instanceState for instance in ca.nodes()] == [RUNNING, RUNNING]
    assert homelab.created_jobs() == [f"{name}-startup-1" for name in booted]
    assert _counter("watch_restarts", resource="power-jobs") > restarts_before
    assert homelab.fake.faults.count("list", "jobs") > job_lists_before


def test_server_errors_on_writes_are_retried_without_duplicates(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1"))
    ca = homelab.start_operator()
    homelab.fake.faults.fail("create", "jobs", count=2, code=500)
    homelab.fake.faults.fail("patch", "nodes/status", count=2, code=503)

    ca.increase_size(1)

    homelab.wait_state("m1", "Ready")
    assert homelab.created_jobs("m1") == ["m1-startup-1"]


def test_conflicting_node_writes_are_retried_from_a_fresh_read_and_lose_nothing(homelab: Homelab) -> None:
    managed_taint = {"key": "homelab.example/power", "value": "on-demand", "effect": "PreferNoSchedule"}
    homelab.add_group(max_size=1, nodeTaints=[managed_taint])
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1"))
    ca = homelab.start_operator()
    someone_else = {"key": "example.com/maintenance-window", "effect": "NoSchedule"}
    interfered = threading.Event()

    def write_in_between(method: str, target: str, body: bytes) -> None:
        # Another writer (CA, the kubelet, a person) changes the Node between our read and our guarded write.
        guarded = method == "PATCH" and target.startswith("/api/v1/nodes/m1") and b"resourceVersion" in body
        if guarded and not interfered.is_set():
            interfered.set()
            node = homelab.fake.store.get("v1", "nodes", "m1")
            homelab.fake.store.patch("v1", "nodes", "m1", {
                "metadata": {"labels": {"example.com/owner": "someone-else"}},
                "spec": {"taints": [*(node["spec"].get("taints") or []), someone_else]},
            })

    conflicts_before = _counter("kube_writes", verb="patch", resource="nodes", outcome="conflict")
    homelab.fake.on_request.append(write_in_between)

    ca.increase_size(1)

    homelab.wait_state("m1", "Ready")

    def converged() -> bool:
        node = homelab.kube_node("m1") or {}
        taints = node.get("spec", {}).get("taints") or []
        node_labels = node.get("metadata", {}).get("labels") or {}
        return (
            node.get("spec", {}).get("providerID") == "homelab://homelab/m1"
            and managed_taint in taints
            and node_labels.get(label_names.GROUP_LABEL) == "workers"
        )

    wait_for(converged, what="providerID, labels and taints on the Node")
    node = homelab.kube_node("m1")
    assert node is not None
    assert interfered.is_set()
    assert someone_else in node["spec"]["taints"]
    assert node["metadata"]["labels"]["example.com/owner"] == "someone-else"
    assert _counter("kube_writes", verb="patch", resource="nodes", outcome="conflict") > conflicts_before


def test_a_malformed_node_resource_is_skipped_until_it_is_fixed(
    homelab: Homelab, caplog: pytest.LogCaptureFixture
) -> None:
    homelab.add_group(max_size=2)
    homelab.add_machine("m1")
    broken = machine_manifest("m-broken")
    del broken["spec"]["startupJob"]
    with looser_crd(homelab.fake, NODE_CRD_NAME):  # the CRD refuses it now; an older one stored it
        homelab.fake.store.create(GROUP_VERSION, "nodes", broken, NAMESPACE)
    skipped_before = _counter("watch_objects_skipped", resource="machines")

    with caplog.at_level(logging.WARNING, logger="actors.watcher_actor"):
        homelab.start_operator()

    homelab.wait_state("m1", "Shutdown")
    assert homelab.state("m-broken") is None
    assert _members(homelab) == ["m1"]
    (warning,) = [record for record in caplog.records if "m-broken" in record.getMessage()]
    assert "startupJob" in warning.getMessage()
    assert _counter("watch_objects_skipped", resource="machines") == skipped_before + 1

    homelab.fake.store.update(GROUP_VERSION, "nodes", machine_manifest("m-broken") | {
        "metadata": homelab.fake.store.get(GROUP_VERSION, "nodes", "m-broken", NAMESPACE)["metadata"]
    }, NAMESPACE)

    homelab.wait_state("m-broken", "Shutdown")
    assert _members(homelab) == ["m-broken", "m1"]
