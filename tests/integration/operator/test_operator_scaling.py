"""The operator manages simulated machines end to end: what Cluster Autoscaler asks is what the cluster shows.

Each test runs the real operator in-process against its own fake API server over HTTP, with the machine simulator
playing the machines, the Job controller and the node-lifecycle controller, and drives it through a real gRPC
channel the way CA does.
"""

from __future__ import annotations

import json

import grpc
import pytest

from protos import externalgrpc_pb2 as externalgrpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from tests.support.operator_homelab import (
    CREATING,
    DELETING,
    GROUP,
    NAMESPACE,
    RUNNING,
    Homelab,
    RequestLog,
    RunningOperator,
    simulated,
)
from tests.support.polling import wait_for

OUR_JOB_LABELS = (
    label_names.MANAGED_BY_LABEL,
    label_names.MACHINE_LABEL,
    label_names.GROUP_LABEL,
    label_names.OPERATION_LABEL,
    label_names.ATTEMPT_LABEL,
)


def test_scale_up_powers_a_machine_on_and_reports_it_running(homelab: Homelab) -> None:
    homelab.add_group(max_size=2)
    homelab.add_machine("m1")
    homelab.add_machine("m2", priority=10)
    homelab.simulate(simulated("m1"), simulated("m2"))
    ca = homelab.start_operator()
    assert ca.target_size() == 0
    assert ca.nodes() == []

    ca.increase_size(1)

    assert ca.target_size() == 1  # at once: CA must never see the target lag its own request
    (job,) = wait_for(lambda: homelab.jobs("m2"), what="the startup Job of the higher-priority machine")
    job_labels = job["metadata"]["labels"]
    assert {name: job_labels.get(name) for name in OUR_JOB_LABELS} == {
        label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
        label_names.MACHINE_LABEL: "m2",
        label_names.GROUP_LABEL: GROUP,
        label_names.OPERATION_LABEL: "startup",
        label_names.ATTEMPT_LABEL: "1",
    }
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", "m2", homelab.machine("m2")["metadata"]["uid"])
    booting = ca.nodes()
    assert [(instance.id, instance.status.instanceState) for instance in booting] == [
        ("homelab://homelab/m2", CREATING)
    ]

    status = homelab.wait_state("m2", "Ready")["status"]
    node = homelab.kube_node("m2")
    assert node is not None
    provider_id = node["spec"]["providerID"]
    assert provider_id == "homelab://homelab/m2" == status["providerID"]
    assert node["metadata"]["labels"][label_names.GROUP_LABEL] == GROUP
    assert node["metadata"]["labels"]["homelab.example/pool"] == GROUP
    assert not node["spec"].get("unschedulable")
    assert [(instance.id, instance.status.instanceState) for instance in ca.nodes()] == [(provider_id, RUNNING)]
    wait_for(lambda: {"PoweringOn", "Booted"} <= homelab.event_reasons("m2"), what="the power-on Events")
    (scale_up,) = wait_for(
        lambda: [event for event in homelab.events(GROUP) if event["involvedObject"]["kind"] == "Group"],
        what="the ScaleUp Event on the Group",
    )
    assert (scale_up["reason"], scale_up["message"]) == (
        "ScaleUp", "Cluster Autoscaler asked for 1 more: powering on m2 (target 0 → 1)"
    )
    assert homelab.state("m1") == "Shutdown"
    assert homelab.created_jobs() == ["m2-startup-1"]
    group = wait_for(
        lambda: (g := homelab.fake.store.get(GROUP_VERSION, "groups", GROUP, NAMESPACE))["status"].get("readyCount")
        and g,
        what="the Group status",
    )
    assert group["status"]["targetSize"] == 1


def test_scale_down_cordons_powers_off_and_deletes_the_node(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1"))
    ca = homelab.start_operator()
    ca.increase_size(1)
    homelab.wait_state("m1", "Ready")
    requests = RequestLog()
    homelab.fake.on_request.append(requests)

    ca.delete_nodes("homelab://homelab/m1", names=["m1"])

    assert ca.target_size() == 0
    assert [instance.status.instanceState for instance in ca.nodes()] in ([DELETING], [])
    homelab.wait_state("m1", "Shutdown")
    wait_for(lambda: homelab.kube_node("m1") is None, what="the Kubernetes Node to be deleted")
    cordons = [
        entry for entry in requests.matching("PATCH", "/api/v1/nodes/m1")
        if json.loads(entry[2] or b"{}").get("spec", {}).get("unschedulable") is True
    ]
    shutdown_posts = [entry for entry in requests.matching("POST", "/jobs") if b'"shutdown"' in entry[2]]
    assert cordons, "the Node must be cordoned"
    assert shutdown_posts, "a shutdown Job must be created"
    assert requests.entries.index(cordons[0]) < requests.entries.index(shutdown_posts[0])
    assert homelab.job_names("m1", "shutdown") == ["m1-shutdown-2"]
    assert ca.nodes() == []
    wait_for(lambda: {"PoweringOff", "PoweredOff"} <= homelab.event_reasons("m1"), what="the power-off Events")


def test_failed_boots_cool_down_then_quarantine_until_a_person_resets(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1", fail_boot=True))
    ca = homelab.start_operator()
    instance_id = "homelab://homelab/m1"

    # First failure: reported to CA as a failed creation, which CA answers by deleting the stand-in node.
    ca.increase_size(1)
    failed = wait_for(lambda: _failed_instance(ca, instance_id), what="the failed boot to be reported")
    assert failed.status.instanceState == CREATING
    assert failed.status.errorInfo.errorCode == "BootFailed"
    # CA may see the failure a moment before the status write lands in the API.
    homelab.wait_state("m1", "BootFailed")
    wait_for(lambda: "BootJobFailed" in homelab.event_reasons("m1"), what="the BootJobFailed Event")
    ca.delete_nodes(instance_id)
    cooling = homelab.wait_state("m1", "Shutdown")["status"]
    assert cooling["consecutiveFailures"] == 1
    assert cooling["cooldownUntil"]
    with pytest.raises(grpc.RpcError) as refused:
        ca.increase_size(1)  # still cooling down: nothing to power on
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    # Second failure after the cooldown: quarantined, with a condition and an Event, never chosen again.
    wait_for(lambda: _accepted(ca), what="the cooldown to end")
    wait_for(lambda: homelab.state("m1") == "BootFailed", what="the second boot to fail")
    ca.delete_nodes(instance_id)
    quarantined = homelab.wait_state("m1", "Quarantined")["status"]
    conditions = {condition["type"]: condition["status"] for condition in quarantined["conditions"]}
    assert conditions[label_names.CONDITION_QUARANTINED] == "True"
    wait_for(lambda: "Quarantined" in homelab.event_reasons("m1"), what="the Quarantined Event")
    assert homelab.created_jobs("m1") == ["m1-startup-1", "m1-startup-2"]
    assert ca.nodes() == []

    # A person resets it: available again.
    homelab.fake.store.patch(
        GROUP_VERSION, "nodes", "m1", {"metadata": {"annotations": {label_names.RESET_ANNOTATION: "fixed-psu"}}},
        NAMESPACE,
    )
    reset = homelab.wait_state("m1", "Shutdown")["status"]
    assert reset["consecutiveFailures"] == 0
    ca.increase_size(1)  # chosen again: the next (failing) boot starts
    wait_for(lambda: homelab.created_jobs("m1") == ["m1-startup-1", "m1-startup-2", "m1-startup-3"],
             what="a third startup Job after the reset")


def _accepted(ca: RunningOperator) -> bool:
    try:
        ca.increase_size(1)
    except grpc.RpcError:
        return False
    return True


def _failed_instance(ca: RunningOperator, instance_id: str) -> externalgrpc.Instance | None:
    instance = ca.instance(instance_id)
    return instance if instance is not None and instance.status.errorInfo.errorCode else None


def test_a_machine_powered_on_by_hand_is_adopted_and_one_powered_off_is_let_go(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    simulator = homelab.simulate(simulated("m1"))
    ca = homelab.start_operator()

    simulator.machine("m1").power_on_unexpectedly()

    assert homelab.wait_state("m1", "Ready")["status"]["reason"] == "StartedOutsideAutoscaler"
    assert [instance.status.instanceState for instance in ca.nodes()] == [RUNNING]
    assert ca.target_size() == 1
    assert homelab.created_jobs("m1") == []  # adopted, never powered on by us

    # Power is cut and the dead Node object is removed, as an administrator (or a cloud controller) does.
    simulator.machine("m1").power_off_unexpectedly()
    wait_for(lambda: not simulator.machine("m1").powered_on, what="the machine to lose power")
    homelab.fake.store.delete("v1", "nodes", "m1")

    assert homelab.wait_state("m1", "Shutdown")["status"]["reason"] == "StoppedOutsideAutoscaler"
    assert ca.nodes() == []
    assert ca.target_size() == 0
    assert homelab.created_jobs("m1") == []


def test_a_boot_cancelled_after_its_power_on_went_out_is_powered_off_when_the_machine_comes_up(
    homelab: Homelab,
) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    # The startup Job is done long before the machine has booted: a cancel cannot call the power-on back.
    homelab.simulate(simulated("m1", boot_seconds=1.5), job_seconds=0.05)
    ca = homelab.start_operator()
    ca.increase_size(1)
    wait_for(
        lambda: any(
            condition.get("type") == "Complete"
            for job in homelab.jobs("m1")
            for condition in (job.get("status") or {}).get("conditions") or []
        ),
        what="the startup Job to succeed",
    )
    assert homelab.kube_node("m1") is None, "the machine must still be booting"

    ca.stub.NodeGroupDecreaseTargetSize(externalgrpc.NodeGroupDecreaseTargetSizeRequest(id=f"{NAMESPACE}/{GROUP}",
                                                                                        delta=-1))
    assert homelab.wait_state("m1", "Shutdown")["status"]["reason"] == "BootCancelled"
    targets = []

    def powered_off_again() -> bool:
        targets.append(ca.target_size())
        return homelab.created_jobs("m1") == ["m1-shutdown-2", "m1-startup-1"] and homelab.state("m1") == "Shutdown"

    wait_for(powered_off_again, what="the machine to be powered off once it came up")
    assert set(targets) == {0}, "CA asked for the machine to go: it never counts again"
    assert "ReleasedBootCameUp" in homelab.event_reasons("m1")
    assert ca.nodes() == []
    wait_for(lambda: homelab.kube_node("m1") is None, what="the powered-off Node to be deleted")
