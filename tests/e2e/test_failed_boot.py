"""A boot that fails: CA sees a failed creation, the machine cools down, and is tried again only afterwards.

On a real cluster the startup Job's container exits 1 (no pod retry); where the simulator plays the Job controller
it fails the Job itself. Either way the machine never powers on, so no Kubernetes Node may appear.
"""

from __future__ import annotations

import grpc
import pytest
from e2e_support import CREATING, E2eHomelab, RunningOperator, failing_job

from protos import externalgrpc_pb2 as externalgrpc
from schemas import labels as label_names
from schemas.node import OperationKind

STARTUP = OperationKind.STARTUP


def test_a_failed_boot_is_reported_then_cooled_down_before_the_next_try(homelab: E2eHomelab) -> None:
    group_id = homelab.group_id
    homelab.add_group(max_size=1)
    homelab.add_machine("m1", startup=failing_job(), fail_boot=True)
    homelab.start_simulator()
    ca = homelab.start_operator()
    instance_id = homelab.instance_id("m1")

    ca.increase_size(1, group_id=group_id)

    failed = homelab.wait(lambda: _failed_instance(ca, group_id, instance_id), "CA to see the failed creation")
    assert failed.status.instanceState == CREATING
    assert failed.status.errorInfo.errorCode == "BootFailed"
    assert failed.status.errorInfo.errorMessage
    status = homelab.wait_state("m1", "BootFailed")
    conditions = {condition["type"]: condition["status"] for condition in status["conditions"]}
    assert conditions[label_names.CONDITION_OPERATION_FAILED] == "True"
    job = homelab.job("m1-startup-1")
    assert job is not None, "a finished power Job is kept for inspection"
    assert _job_condition(job, "Failed") == "True"
    homelab.wait(lambda: "BootJobFailed" in homelab.event_counts("m1"), "the BootJobFailed Event")
    assert homelab.kube_node("m1") is None, "a machine that never booted has no Kubernetes Node"

    ca.delete_nodes(instance_id, group_id=group_id)  # CA gives up on a failed creation by deleting it

    cooling = homelab.wait_state("m1", "Shutdown")
    assert cooling["consecutiveFailures"] == 1
    assert cooling["cooldownUntil"]
    assert ca.target_size(group_id) == 0
    assert ca.nodes(group_id) == []
    with pytest.raises(grpc.RpcError) as refused:
        ca.increase_size(1, group_id=group_id)  # the only machine is cooling down: nothing to power on
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert homelab.created_jobs("m1", STARTUP) == ["m1-startup-1"]

    homelab.wait(lambda: _accepted(ca, group_id), "the cooldown to end")

    homelab.wait(lambda: homelab.created_jobs("m1", STARTUP) == ["m1-startup-1", "m1-startup-2"],
                 "the second attempt's startup Job")
    homelab.wait(lambda: _failed_instance(ca, group_id, instance_id), "CA to see the second failed creation")
    assert homelab.created_jobs("m1") == ["m1-startup-1", "m1-startup-2"]  # one Job per attempt, nothing else
    assert homelab.kube_node("m1") is None


def _failed_instance(ca: RunningOperator, group_id: str, instance_id: str) -> externalgrpc.Instance | None:
    instance = ca.instance(instance_id, group_id)
    return instance if instance is not None and instance.status.errorInfo.errorCode else None


def _accepted(ca: RunningOperator, group_id: str) -> bool:
    try:
        ca.increase_size(1, group_id=group_id)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return False
    return True


def _job_condition(job: dict[str, object], condition_type: str) -> str | None:
    status = job.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    for condition in conditions or ():
        if condition.get("type") == condition_type:
            return str(condition.get("status"))
    return None
