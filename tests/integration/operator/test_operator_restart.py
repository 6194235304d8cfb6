"""Killing the operator at any moment loses nothing: a new one resumes every machine from the cluster.

The original project kept each transition in a goroutine and left machines stuck in `startingup` after a restart.
Here the operator is killed (no writes finished, nothing released) with one machine in each state of its power
state machine, a new operator starts from the same cluster, and the machine must carry on to where it was going:
no power Job is ever created twice (counted in the API), and CA sees the same target and instances throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from tests.support.operator_homelab import CREATING, RUNNING, Homelab, RunningOperator, simulated
from tests.support.polling import wait_for

INSTANCE = "homelab://homelab/m1"


def _job_finished(homelab: Homelab, name: str) -> bool:
    for job in homelab.jobs("m1"):
        if job["metadata"]["name"] == name:
            conditions = (job.get("status") or {}).get("conditions") or []
            return any(condition.get("type") == "Complete" for condition in conditions)
    return False


def _starting_with_job_running(homelab: Homelab, ca: RunningOperator) -> None:
    ca.increase_size(1)
    wait_for(lambda: homelab.job_names("m1") == ["m1-startup-1"], what="the startup Job")
    homelab.wait_state("m1", "StartingUp")


def _starting_with_status_unwritten(homelab: Homelab, ca: RunningOperator) -> None:
    # The crash window between creating a Job and recording it: every status write fails until the kill.
    homelab.fake.faults.fail("patch", "nodes/status", name="m1", count=1000, code=500)
    with pytest.raises(grpc.RpcError) as answer:
        ca.increase_size(1)
    # Not stored, so CA is not told OK: "may or may not have happened" is the truth.
    assert answer.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: homelab.job_names("m1") == ["m1-startup-1"], what="the startup Job")
    assert homelab.state("m1") == "Shutdown"


def _starting_with_job_done_node_not_ready(homelab: Homelab, ca: RunningOperator) -> None:
    ca.increase_size(1)
    wait_for(lambda: _job_finished(homelab, "m1-startup-1"), what="the startup Job to succeed")
    assert homelab.kube_node("m1") is None, "the machine must still be booting"


def _ready(homelab: Homelab, ca: RunningOperator) -> None:
    ca.increase_size(1)
    homelab.wait_state("m1", "Ready")


def _shutting_down(homelab: Homelab, ca: RunningOperator) -> None:
    _ready(homelab, ca)
    ca.delete_nodes(INSTANCE, names=["m1"])
    wait_for(lambda: homelab.job_names("m1", "shutdown") == ["m1-shutdown-2"], what="the shutdown Job")
    homelab.wait_state("m1", "ShuttingDown")


def _boot_failed(homelab: Homelab, ca: RunningOperator) -> None:
    ca.increase_size(1)
    homelab.wait_state("m1", "BootFailed")


@dataclass(frozen=True)
class Scenario:
    drive: Callable[[Homelab, RunningOperator], None]
    machine: dict[str, Any]
    """Simulated machine settings (boot time, faults)."""
    job_seconds: float
    state_after: str
    jobs_after: list[str]
    instances_after: list[int] = field(default_factory=list)
    """CA's instance states once the new operator has resumed (before any further request)."""
    target_after: int = 0


SCENARIOS = [
    pytest.param(
        Scenario(_starting_with_status_unwritten, {}, 1.5, "Ready", ["m1-startup-1"], [RUNNING], 1),
        id="StartingUp-job-created-status-not-written",
    ),
    pytest.param(
        Scenario(_starting_with_job_done_node_not_ready, {"boot_seconds": 2.0}, 0.05, "Ready", ["m1-startup-1"],
                 [RUNNING], 1),
        id="StartingUp-job-succeeded-node-not-ready",
    ),
    pytest.param(Scenario(_ready, {}, 0.05, "Ready", ["m1-startup-1"], [RUNNING], 1), id="Ready"),
    pytest.param(
        Scenario(_shutting_down, {}, 1.0, "Shutdown", ["m1-shutdown-2", "m1-startup-1"], [], 0),
        id="ShuttingDown-job-running",
    ),
    pytest.param(
        Scenario(_boot_failed, {"fail_boot": True}, 0.05, "BootFailed", ["m1-startup-1"], [CREATING], 1),
        id="BootFailed",
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_killed_operator_is_replaced_without_losing_or_repeating_anything(
    homelab: Homelab, scenario: Scenario
) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1", **scenario.machine), job_seconds=scenario.job_seconds)
    first = homelab.start_operator()
    scenario.drive(homelab, first)

    homelab.stop_operator(first, kill=True)
    homelab.fake.faults.clear()
    second = homelab.start_operator()

    homelab.wait_state("m1", scenario.state_after)
    wait_for(
        lambda: [instance.status.instanceState for instance in second.nodes()] == scenario.instances_after,
        what=f"CA to see {scenario.instances_after}",
    )
    assert second.target_size() == scenario.target_after
    assert homelab.created_jobs("m1") == scenario.jobs_after
    if scenario.state_after == "Ready":
        node = homelab.kube_node("m1")
        assert node is not None
        assert node["spec"]["providerID"] == INSTANCE
        assert not node["spec"].get("unschedulable")
    if scenario.state_after == "Shutdown":
        wait_for(lambda: homelab.kube_node("m1") is None, what="the powered-off Node to be deleted")


def test_a_machine_resumed_after_a_restart_still_obeys_ca(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1"))
    first = homelab.start_operator()
    _ready(homelab, first)
    homelab.stop_operator(first, kill=True)

    second = homelab.start_operator()
    second.delete_nodes(INSTANCE, names=["m1"])

    homelab.wait_state("m1", "Shutdown")
    assert homelab.created_jobs("m1") == ["m1-shutdown-2", "m1-startup-1"]
    second.increase_size(1)
    homelab.wait_state("m1", "Ready")
    assert homelab.created_jobs("m1") == ["m1-shutdown-2", "m1-startup-1", "m1-startup-3"]


@dataclass(frozen=True)
class Answered:
    prepare: Callable[[Homelab, RunningOperator], None]
    ask: Callable[[RunningOperator], None]
    stored_at_answer: str
    state_after: str
    jobs_after: list[str]
    target_after: int


def _nothing(homelab: Homelab, ca: RunningOperator) -> None:
    pass


ANSWERED = [
    pytest.param(
        Answered(_nothing, lambda ca: ca.increase_size(1), "StartingUp", "Ready", ["m1-startup-1"], 1),
        id="IncreaseSize",
    ),
    pytest.param(
        Answered(_ready, lambda ca: ca.delete_nodes(INSTANCE, names=["m1"]), "ShuttingDown", "Shutdown",
                 ["m1-shutdown-2", "m1-startup-1"], 0),
        id="DeleteNodes",
    ),
]


@pytest.mark.parametrize("case", ANSWERED)
def test_what_ca_was_told_is_stored_when_it_hears_it_and_survives_a_kill_right_then(
    homelab: Homelab, case: Answered
) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1"), job_seconds=0.5)
    first = homelab.start_operator()
    case.prepare(homelab, first)
    # A slow API: the status write takes half a second, far longer than the rest of the call.
    homelab.fake.faults.delay("patch", "nodes/status", name="m1", seconds=0.5)

    case.ask(first)

    assert homelab.state("m1") == case.stored_at_answer
    homelab.stop_operator(first, kill=True)
    homelab.fake.faults.clear()
    second = homelab.start_operator()
    assert second.target_size() == case.target_after
    homelab.wait_state("m1", case.state_after)
    assert homelab.created_jobs("m1") == case.jobs_after
