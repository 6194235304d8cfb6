"""The operator stops while a startup Job runs; a new one finishes the boot without powering the machine on twice.

The new operator knows nothing but the cluster: the Node resource's status, the running Job and (soon) the
Kubernetes Node. It must adopt the Job rather than create another, and carry the boot through to Ready. Both ways
an operator goes away are covered: a graceful stop (SIGTERM) and a crash (nothing finished, nothing released).
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import RUNNING, E2eHomelab, slow_job

from schemas.node import OperationKind

STARTUP_JOB = "m1-startup-1"


@pytest.mark.parametrize(
    "kill",
    [pytest.param(False, id="stopped"), pytest.param(True, id="crashed")],
)
def test_a_new_operator_completes_the_boot_with_the_same_startup_job(homelab: E2eHomelab, kill: bool) -> None:
    group_id = homelab.group_id
    homelab.add_group(max_size=1)
    homelab.add_machine("m1", startup=slow_job(homelab.pace.slow_job_seconds))
    homelab.start_simulator(job_seconds=homelab.pace.slow_job_seconds)
    first = homelab.start_operator()
    first.increase_size(1, group_id=group_id)
    homelab.wait(lambda: _running(homelab.job(STARTUP_JOB)), "the startup Job to run")
    homelab.wait_state("m1", "StartingUp")

    homelab.stop_operator(first, kill=kill)

    if not _running(homelab.job(STARTUP_JOB)):
        pytest.fail(f"the startup Job finished while the operator stopped; raise Pace.slow_job_seconds "
                    f"({homelab.pace.slow_job_seconds} s) for this cluster")
    second = homelab.start_operator()

    assert second.target_size(group_id) == 1  # the target CA set survives in the Group's status
    status = homelab.wait_state("m1", "Ready")
    node = homelab.kube_node("m1")
    assert node is not None
    assert node["spec"]["providerID"] == homelab.instance_id("m1") == status["providerID"]
    assert not node["spec"].get("unschedulable")
    homelab.wait(lambda: [(item.id, item.status.instanceState) for item in second.nodes(group_id)]
                 == [(homelab.instance_id("m1"), RUNNING)], "CA to see the machine running")
    assert homelab.created_jobs("m1") == [STARTUP_JOB]  # adopted, never created again
    assert homelab.created_jobs(operation=OperationKind.SHUTDOWN) == []
    assert status["attempts"] == 1
    events = homelab.wait(lambda: "Booted" in (counts := homelab.event_counts("m1")) and counts, "the Booted Event")
    assert events["PoweringOn"] == 1, "the machine was told to power on once"
    assert homelab.simulator is not None
    assert homelab.simulator.machine("m1").boots == 1, "the machine itself powered on once"


def _running(job: dict[str, Any] | None) -> bool:
    """Created and not finished: a pod runs (or is about to) and no terminal condition is set."""
    if job is None:
        return False
    status = job.get("status") or {}
    finished = any(
        condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True"
        for condition in status.get("conditions") or ()
    )
    return bool(status.get("active")) and not finished
