"""Scale-down on a cluster: the machine CA lets go is cordoned, powered off, and its Kubernetes Node removed.

On a real cluster the machine's Node goes NotReady the way any silent Node does (its kubelet stops renewing the
node Lease and the node-lifecycle controller marks it), so this scenario takes about a minute there.
"""

from __future__ import annotations

from e2e_support import DELETING, RUNNING, E2eHomelab

from schemas import labels as label_names
from schemas.node import OperationKind


def test_delete_nodes_cordons_then_powers_off_and_removes_the_node(homelab: E2eHomelab) -> None:
    group_id = homelab.group_id
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.start_simulator()
    ca = homelab.start_operator()
    ca.increase_size(1, group_id=group_id)
    homelab.wait_state("m1", "Ready")
    instance_id = homelab.instance_id("m1")
    homelab.wait(lambda: [item.status.instanceState for item in ca.nodes(group_id)] == [RUNNING], "m1 running")

    ca.delete_nodes(instance_id, group_id=group_id, names=[homelab.kube_node_name("m1")])

    assert ca.target_size(group_id) == 0  # at once, before the machine is off
    assert [(item.id, item.status.instanceState) for item in ca.nodes(group_id)] in ([(instance_id, DELETING)], [])
    status = homelab.wait_state("m1", "Shutdown")
    assert status["reason"] == "PoweredOff"
    homelab.wait(lambda: homelab.kube_node("m1") is None, "the powered-off machine's Kubernetes Node to be deleted")
    assert ca.nodes(group_id) == []

    (shutdown_job,) = homelab.created_jobs("m1", OperationKind.SHUTDOWN)
    assert shutdown_job == "m1-shutdown-2"  # the machine's second power operation
    node_then = homelab.kube_node_when_created(shutdown_job)
    assert node_then is not None, "the Node must still exist when the shutdown Job is created"
    assert node_then["spec"].get("unschedulable") is True, "the Node must be cordoned before the shutdown Job exists"
    job = homelab.job(shutdown_job)
    assert job is not None, "a finished power Job is kept for inspection"
    assert job["metadata"]["labels"][label_names.OPERATION_LABEL] == "shutdown"
    assert _finished_successfully(job)
    assert homelab.created_jobs("m1") == ["m1-shutdown-2", "m1-startup-1"]  # nothing created twice
    homelab.wait(lambda: {"PoweringOff", "PoweredOff"} <= homelab.event_counts("m1").keys(), "the power-off Events")
    group = homelab.wait(lambda: _group_with(homelab, target=0, ready=0), "the Group status to count nothing on")
    assert group["status"]["machines"].get("Shutdown") == 1


def _finished_successfully(job: dict[str, object]) -> bool:
    status = job.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return any(
        condition.get("type") == "Complete" and condition.get("status") == "True" for condition in conditions or ()
    )


def _group_with(homelab: E2eHomelab, *, target: int, ready: int) -> dict[str, object] | None:
    group = homelab.group()
    status = group.get("status") or {}
    return group if status.get("targetSize") == target and status.get("readyCount") == ready else None
