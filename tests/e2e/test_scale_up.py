"""Scale-up on a cluster: what Cluster Autoscaler asks for becomes a powered-on machine and a Ready Node.

Drives the operator over real gRPC the way CA does and checks the cluster's own objects: the startup Job (its
labels, exactly one per machine), the Kubernetes Node the machine registers (its providerID is CA's instance id,
the Group's labels and taint are on it), the Node resource's status, the Group's status and the Events.
"""

from __future__ import annotations

from e2e_support import CREATING, GROUP, POOL_LABEL, RUNNING, SIMULATED_TAINT, E2eHomelab

from protos import externalgrpc_pb2 as externalgrpc
from schemas import labels as label_names
from schemas.node import OperationKind

STARTUP = OperationKind.STARTUP


def test_increase_size_powers_machines_on_highest_priority_first(homelab: E2eHomelab) -> None:
    group_id = homelab.group_id
    homelab.add_group(max_size=2)
    homelab.add_machine("m1")
    homelab.add_machine("m2", priority=10)
    homelab.start_simulator()
    ca = homelab.start_operator()
    assert ca.target_size(group_id) == 0
    assert ca.nodes(group_id) == []

    ca.increase_size(1, group_id=group_id)

    assert ca.target_size(group_id) == 1  # at once: CA must never see the target lag its own request
    (job,) = homelab.wait(lambda: homelab.jobs("m2"), "the startup Job of the higher-priority machine")
    assert {name: job["metadata"]["labels"].get(name) for name in _OUR_JOB_LABELS} == {
        label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
        label_names.MACHINE_LABEL: "m2",
        label_names.GROUP_LABEL: GROUP,
        label_names.OPERATION_LABEL: "startup",
        label_names.ATTEMPT_LABEL: "1",
    }
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", "m2", homelab.machine("m2")["metadata"]["uid"])
    first_id = homelab.instance_id("m2")
    assert [(instance.id, instance.status.instanceState) for instance in ca.nodes(group_id)] in (
        [(first_id, CREATING)],
        [(first_id, RUNNING)],  # a fast cluster may have finished the boot already
    )

    status = homelab.wait_state("m2", "Ready")
    node = homelab.kube_node("m2")
    assert node is not None, "the booted machine's Kubernetes Node must exist"
    assert node["spec"]["providerID"] == first_id == status["providerID"]
    assert node["metadata"]["labels"][label_names.GROUP_LABEL] == GROUP
    assert node["metadata"]["labels"][POOL_LABEL] == GROUP
    assert SIMULATED_TAINT in node["spec"].get("taints", [])
    assert not node["spec"].get("unschedulable")
    assert [(instance.id, instance.status.instanceState) for instance in ca.nodes(group_id)] == [(first_id, RUNNING)]
    assert homelab.state("m1") == "Shutdown"
    homelab.wait(lambda: {"PoweringOn", "Booted"} <= homelab.event_counts("m2").keys(), "the power-on Events")

    ca.increase_size(1, group_id=group_id)

    assert ca.target_size(group_id) == 2
    homelab.wait_state("m1", "Ready")
    homelab.wait(lambda: _states(ca.nodes(group_id)) == [RUNNING, RUNNING], "CA to see both machines running")
    provider_ids = {str((homelab.kube_node(name) or {}).get("spec", {}).get("providerID")) for name in ("m1", "m2")}
    assert {instance.id for instance in ca.nodes(group_id)} == provider_ids == {
        homelab.instance_id("m1"), homelab.instance_id("m2")
    }
    assert homelab.created_jobs(operation=STARTUP) == ["m1-startup-1", "m2-startup-1"]  # one each, none twice
    assert homelab.created_jobs(operation=OperationKind.SHUTDOWN) == []
    group = homelab.wait(lambda: _group_settled(homelab, ready=2), "the Group status to count two Ready machines")
    assert group["status"]["targetSize"] == 2


_OUR_JOB_LABELS = (
    label_names.MANAGED_BY_LABEL,
    label_names.MACHINE_LABEL,
    label_names.GROUP_LABEL,
    label_names.OPERATION_LABEL,
    label_names.ATTEMPT_LABEL,
)


def _states(instances: list[externalgrpc.Instance]) -> list[int]:
    return [instance.status.instanceState for instance in instances]


def _group_settled(homelab: E2eHomelab, *, ready: int) -> dict[str, object] | None:
    group = homelab.group()
    return group if (group.get("status") or {}).get("readyCount") == ready else None
