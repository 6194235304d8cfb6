"""The user scenarios, as one table: each a named case of a homelab and steps, each step what happens and what
a user then sees.

Every scenario runs on whatever cluster the session has (tests/e2e/test_scenarios.py): on the fake API the suite
starts (`--e2e-fake`), and on a real control plane (`--e2e-control-plane`) or any cluster a kubeconfig names. A
step's `sees` reads only what `kubectl` shows (the Node and Group resources, Jobs, Kubernetes Nodes, Events) and
what CA is told over gRPC, so it holds on every cluster; its `on_fake` adds checks that need the fake's store or
request log (the order writes reached the API, that no Job was even attempted twice), run only there.

A plain module beside e2e_support.py (conftest files are not importable by name).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from e2e_support import CREATING, DELETING, GROUP, POOL_LABEL, RUNNING, SIMULATED_TAINT, E2eHomelab, RunningOperator

from protos import externalgrpc_pb2 as externalgrpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.node import OperationKind
from sim.fakeapi import FakeApiServer
from tests.support.operator_homelab import RequestLog

STARTUP = OperationKind.STARTUP
SHUTDOWN = OperationKind.SHUTDOWN


@dataclass
class Run:
    """One scenario under way: its homelab, the operator CA talks to now, and (on the fake) the store and requests."""

    homelab: E2eHomelab
    ca: RunningOperator
    fake: FakeApiServer | None
    requests: RequestLog
    """Every request that reached the fake API since the scenario started (empty elsewhere)."""

    @property
    def group_id(self) -> str:
        return self.homelab.group_id

    def instance_id(self, machine: str) -> str:
        return self.homelab.instance_id(machine)

    def store(self) -> FakeApiServer:
        assert self.fake is not None, "store-level checks run only on the fake"
        return self.fake


Action = Callable[[Run], None]


def nothing(run: Run) -> None:
    """A step that only looks."""


@dataclass(frozen=True)
class Step:
    does: str
    """What happens, in words: names the step when it fails."""
    act: Action
    sees: Action
    """What a user then sees through kubectl and CA's gRPC view: checked on every cluster."""
    on_fake: Action = nothing
    """What the fake's store and request log show besides: checked only where the suite runs the fake."""


@dataclass(frozen=True)
class Machine:
    name: str
    priority: int = 0
    fail_boot: bool = False
    slow_startup: bool = False
    """Its startup Job runs long enough (Pace.slow_job_seconds) to stop and restart the operator meanwhile."""


@dataclass(frozen=True)
class Scenario:
    name: str
    max_size: int
    machines: tuple[Machine, ...]
    steps: tuple[Step, ...]
    quarantine_after: int = 3
    slow_jobs: bool = False
    """The simulator, where it plays the Job controller, takes Pace.slow_job_seconds per Job."""


# --- what every scenario's steps share ------------------------------------------------------------------------


def job_condition(job: dict[str, Any] | None, condition_type: str) -> str | None:
    status = (job or {}).get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == condition_type:
            return str(condition.get("status"))
    return None


def running(job: dict[str, Any] | None) -> bool:
    """Created and not finished: a pod runs (or is about to) and no terminal condition is set."""
    if job is None:
        return False
    finished = "True" in (job_condition(job, "Complete"), job_condition(job, "Failed"))
    return bool((job.get("status") or {}).get("active")) and not finished


def instance_states(run: Run) -> list[tuple[str, int]]:
    return [(instance.id, instance.status.instanceState) for instance in run.ca.nodes(run.group_id)]


def failed_instance(run: Run, machine: str) -> externalgrpc.Instance | None:
    instance = run.ca.instance(run.instance_id(machine), run.group_id)
    return instance if instance is not None and instance.status.errorInfo.errorCode else None


def accepted(run: Run) -> bool:
    """Whether CA's `IncreaseSize(1)` is taken (False while every machine is cooling down)."""
    try:
        run.ca.increase_size(1, group_id=run.group_id)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return False
    return True


def group_counting(run: Run, *, ready: int) -> dict[str, Any] | None:
    group = run.homelab.group()
    return group if (group.get("status") or {}).get("readyCount") == ready else None


def no_job_attempted_twice(run: Run) -> None:
    """Store level: every Job create that reached the API made a new Job (none was even tried twice)."""
    posts = [json.loads(body)["metadata"]["name"] for _, _, body in run.requests.matching("POST", "/jobs")]
    assert sorted(posts) == run.homelab.created_jobs()


def booted_and_running(run: Run, machine: str) -> dict[str, Any]:
    """The machine is Ready, its Kubernetes Node carries CA's instance id, and CA sees it running."""
    homelab = run.homelab
    status = homelab.wait_state(machine, "Ready")
    node = homelab.kube_node(machine)
    assert node is not None, f"the booted machine {machine}'s Kubernetes Node must exist"
    assert node["spec"]["providerID"] == run.instance_id(machine) == status["providerID"]
    assert not node["spec"].get("unschedulable")
    homelab.wait(lambda: (run.instance_id(machine), RUNNING) in instance_states(run), f"CA to see {machine} running")
    return status


# --- scale-up -------------------------------------------------------------------------------------------------

OUR_JOB_LABELS = (
    label_names.MANAGED_BY_LABEL,
    label_names.MACHINE_LABEL,
    label_names.GROUP_LABEL,
    label_names.OPERATION_LABEL,
    label_names.ATTEMPT_LABEL,
)


def nothing_asked_yet(run: Run) -> None:
    assert run.ca.target_size(run.group_id) == 0
    assert run.ca.nodes(run.group_id) == []


def increase_by_one(run: Run) -> None:
    run.ca.increase_size(1, group_id=run.group_id)


def highest_priority_gets_one_labelled_job(run: Run) -> None:
    homelab = run.homelab
    assert run.ca.target_size(run.group_id) == 1  # at once: CA must never see the target lag its own request
    (job,) = homelab.wait(lambda: homelab.jobs("m2"), "the startup Job of the higher-priority machine")
    assert {name: job["metadata"]["labels"].get(name) for name in OUR_JOB_LABELS} == {
        label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
        label_names.MACHINE_LABEL: "m2",
        label_names.GROUP_LABEL: GROUP,
        label_names.OPERATION_LABEL: "startup",
        label_names.ATTEMPT_LABEL: "1",
    }
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", "m2", homelab.machine("m2")["metadata"]["uid"])
    assert instance_states(run) in (
        [(run.instance_id("m2"), CREATING)],
        [(run.instance_id("m2"), RUNNING)],  # a fast cluster may have finished the boot already
    )
    # The Job recorder's watch may see the Job a moment after a GET does; then it must have seen that one alone.
    homelab.wait(lambda: "m2-startup-1" in homelab.created_jobs(), "the Job recorder to see the startup Job")
    assert homelab.created_jobs() == ["m2-startup-1"]


def ca_sees_it_created_first(run: Run) -> None:
    # The fake's machine boots for longer after its Job than this step takes: CA must see it being created.
    assert instance_states(run) == [(run.instance_id("m2"), CREATING)]
    stored = run.store().store.get(GROUP_VERSION, "nodes", "m2", run.homelab.namespace)
    assert stored["status"]["state"] == "StartingUp"


def first_machine_ready_with_group_labels(run: Run) -> None:
    homelab = run.homelab
    booted_and_running(run, "m2")
    node = homelab.kube_node("m2")
    assert node is not None
    assert node["metadata"]["labels"][label_names.GROUP_LABEL] == GROUP
    assert node["metadata"]["labels"][POOL_LABEL] == GROUP
    assert SIMULATED_TAINT in node["spec"].get("taints", [])
    assert instance_states(run) == [(run.instance_id("m2"), RUNNING)]
    assert homelab.state("m1") == "Shutdown"
    homelab.wait(lambda: {"PoweringOn", "Booted"} <= homelab.event_counts("m2").keys(), "the power-on Events")
    (scale_up,) = homelab.wait(
        lambda: [event for event in homelab.group_events() if event.get("reason") == "ScaleUp"],
        "the ScaleUp Event on the Group",
    )
    assert scale_up["message"] == "Cluster Autoscaler asked for 1 more: powering on m2 (target 0 → 1)"
    homelab.wait(lambda: group_counting(run, ready=1), "the Group status to count one Ready machine")


def both_machines_running(run: Run) -> None:
    homelab = run.homelab
    assert run.ca.target_size(run.group_id) == 2
    booted_and_running(run, "m1")
    homelab.wait(lambda: [state for _, state in instance_states(run)] == [RUNNING, RUNNING],
                 "CA to see both machines running")
    provider_ids = {str((homelab.kube_node(name) or {}).get("spec", {}).get("providerID")) for name in ("m1", "m2")}
    assert {instance_id for instance_id, _ in instance_states(run)} == provider_ids == {
        run.instance_id("m1"), run.instance_id("m2")
    }
    assert homelab.created_jobs(operation=STARTUP) == ["m1-startup-1", "m2-startup-1"]  # one each, none twice
    assert homelab.created_jobs(operation=SHUTDOWN) == []
    group = homelab.wait(lambda: group_counting(run, ready=2), "the Group status to count two Ready machines")
    assert group["status"]["targetSize"] == 2


SCALE_UP = Scenario(
    "scale-up",
    max_size=2,
    machines=(Machine("m1"), Machine("m2", priority=10)),
    steps=(
        Step("the operator starts", nothing, nothing_asked_yet),
        Step("CA asks for one machine", increase_by_one, highest_priority_gets_one_labelled_job,
             on_fake=ca_sees_it_created_first),
        Step("the machine boots", nothing, first_machine_ready_with_group_labels),
        Step("CA asks for one more", increase_by_one, both_machines_running, on_fake=no_job_attempted_twice),
    ),
)


# --- scale-down -----------------------------------------------------------------------------------------------


def m1_up(run: Run) -> None:
    increase_by_one(run)
    booted_and_running(run, "m1")


def ca_deletes_m1(run: Run) -> None:
    run.ca.delete_nodes(run.instance_id("m1"), group_id=run.group_id, names=[run.homelab.kube_node_name("m1")])


def m1_cordoned_powered_off_and_removed(run: Run) -> None:
    homelab = run.homelab
    assert run.ca.target_size(run.group_id) == 0  # at once, before the machine is off
    assert instance_states(run) in ([(run.instance_id("m1"), DELETING)], [])
    status = homelab.wait_state("m1", "Shutdown")
    assert status["reason"] == "PoweredOff"
    homelab.wait(lambda: homelab.kube_node("m1") is None, "the powered-off machine's Kubernetes Node to be deleted")
    assert run.ca.nodes(run.group_id) == []
    (shutdown_job,) = homelab.created_jobs("m1", SHUTDOWN)
    assert shutdown_job == "m1-shutdown-2"  # the machine's second power operation
    node_then = homelab.kube_node_when_created(shutdown_job)
    assert node_then is not None, "the Node must still exist when the shutdown Job is created"
    assert node_then["spec"].get("unschedulable") is True, "the Node must be cordoned before the shutdown Job exists"
    job = homelab.job(shutdown_job)
    assert job is not None, "a finished power Job is kept for inspection"
    assert job["metadata"]["labels"][label_names.OPERATION_LABEL] == "shutdown"
    assert job_condition(job, "Complete") == "True"
    assert homelab.created_jobs("m1") == ["m1-shutdown-2", "m1-startup-1"]  # nothing created twice
    homelab.wait(lambda: {"PoweringOff", "PoweredOff"} <= homelab.event_counts("m1").keys(), "the power-off Events")
    group = homelab.wait(lambda: group_counting(run, ready=0), "the Group status to count nothing on")
    assert group["status"]["targetSize"] == 0
    assert group["status"]["machines"].get("Shutdown") == 1


def cordon_written_before_the_shutdown_job(run: Run) -> None:
    kube_node_path = f"/api/v1/nodes/{run.homelab.kube_node_name('m1')}"
    cordons = [
        entry for entry in run.requests.matching("PATCH", kube_node_path)
        if json.loads(entry[2] or b"{}").get("spec", {}).get("unschedulable") is True
    ]
    shutdown_posts = [entry for entry in run.requests.matching("POST", "/jobs") if b'"shutdown"' in entry[2]]
    assert cordons, "the Node must be cordoned"
    assert len(shutdown_posts) == 1, "one shutdown Job create, never retried"
    assert run.requests.entries.index(cordons[0]) < run.requests.entries.index(shutdown_posts[0])
    no_job_attempted_twice(run)


SCALE_DOWN = Scenario(
    "scale-down",
    max_size=1,
    machines=(Machine("m1"),),
    steps=(
        Step("CA asks for a machine and it boots", m1_up, nothing),
        Step("CA deletes it", ca_deletes_m1, m1_cordoned_powered_off_and_removed,
             on_fake=cordon_written_before_the_shutdown_job),
    ),
)


# --- failed boots: cooldown, quarantine, reset ------------------------------------------------------------------


def first_boot_failed(run: Run) -> None:
    homelab = run.homelab
    failed = homelab.wait(lambda: failed_instance(run, "m1"), "CA to see the failed creation")
    assert failed.status.instanceState == CREATING
    assert failed.status.errorInfo.errorCode == "BootFailed"
    assert failed.status.errorInfo.errorMessage
    status = homelab.wait_state("m1", "BootFailed")  # CA may see the failure a moment before the status lands
    conditions = {condition["type"]: condition["status"] for condition in status["conditions"]}
    assert conditions[label_names.CONDITION_OPERATION_FAILED] == "True"
    job = homelab.job("m1-startup-1")
    assert job is not None, "a finished power Job is kept for inspection"
    assert job_condition(job, "Failed") == "True"
    homelab.wait(lambda: "BootJobFailed" in homelab.event_counts("m1"), "the BootJobFailed Event")
    assert homelab.kube_node("m1") is None, "a machine that never booted has no Kubernetes Node"


def ca_gives_up_on_m1(run: Run) -> None:
    run.ca.delete_nodes(run.instance_id("m1"), group_id=run.group_id)  # CA answers a failed creation so


def cooling_down_and_refused(run: Run) -> None:
    homelab = run.homelab
    cooling = homelab.wait_state("m1", "Shutdown")
    assert cooling["consecutiveFailures"] == 1
    assert cooling["cooldownUntil"]
    assert run.ca.target_size(run.group_id) == 0
    assert run.ca.nodes(run.group_id) == []
    with pytest.raises(grpc.RpcError) as refused:
        increase_by_one(run)  # the only machine is cooling down: nothing to power on
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert homelab.created_jobs("m1", STARTUP) == ["m1-startup-1"]


def wait_out_the_cooldown(run: Run) -> None:
    run.homelab.wait(lambda: accepted(run), "the cooldown to end")


def second_boot_failed(run: Run) -> None:
    homelab = run.homelab
    homelab.wait(lambda: homelab.created_jobs("m1", STARTUP) == ["m1-startup-1", "m1-startup-2"],
                 "the second attempt's startup Job")
    homelab.wait(lambda: failed_instance(run, "m1"), "CA to see the second failed creation")
    homelab.wait_state("m1", "BootFailed")
    assert homelab.created_jobs("m1") == ["m1-startup-1", "m1-startup-2"]  # one Job per attempt, nothing else
    assert homelab.kube_node("m1") is None


def quarantined_until_reset(run: Run) -> None:
    homelab = run.homelab
    quarantined = homelab.wait_state("m1", "Quarantined")
    conditions = {condition["type"]: condition["status"] for condition in quarantined["conditions"]}
    assert conditions[label_names.CONDITION_QUARANTINED] == "True"
    homelab.wait(lambda: "Quarantined" in homelab.event_counts("m1"), "the Quarantined Event")
    assert run.ca.nodes(run.group_id) == []
    with pytest.raises(grpc.RpcError) as refused:
        increase_by_one(run)  # never chosen again while quarantined
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert homelab.created_jobs("m1") == ["m1-startup-1", "m1-startup-2"]


def a_person_resets_m1(run: Run) -> None:
    run.homelab.reset("m1", "fixed-psu")


def available_again(run: Run) -> None:
    homelab = run.homelab
    reset = homelab.wait_state("m1", "Shutdown")
    assert reset["consecutiveFailures"] == 0
    increase_by_one(run)  # chosen again: the next (failing) boot starts
    homelab.wait(lambda: homelab.created_jobs("m1") == ["m1-startup-1", "m1-startup-2", "m1-startup-3"],
                 "a third startup Job after the reset")


FAILED_BOOTS = Scenario(
    "failed-boots",
    max_size=1,
    machines=(Machine("m1", fail_boot=True),),
    quarantine_after=2,
    steps=(
        Step("CA asks for the machine and its boot fails", increase_by_one, first_boot_failed),
        Step("CA deletes the failed instance", ca_gives_up_on_m1, cooling_down_and_refused),
        Step("the cooldown ends and CA asks again; the boot fails again", wait_out_the_cooldown, second_boot_failed),
        Step("CA deletes it again", ca_gives_up_on_m1, quarantined_until_reset, on_fake=no_job_attempted_twice),
        Step("a person resets the machine", a_person_resets_m1, available_again),
    ),
)


# --- the operator goes away mid-boot ----------------------------------------------------------------------------

RESTART_STARTUP_JOB = "m1-startup-1"


def startup_job_running(run: Run) -> None:
    run.homelab.wait(lambda: running(run.homelab.job(RESTART_STARTUP_JOB)), "the startup Job to run")
    run.homelab.wait_state("m1", "StartingUp")


def replace_operator(*, kill: bool) -> Action:
    def replace(run: Run) -> None:
        homelab = run.homelab
        homelab.stop_operator(run.ca, kill=kill)
        if not running(homelab.job(RESTART_STARTUP_JOB)):
            pytest.fail(f"the startup Job finished while the operator stopped; raise Pace.slow_job_seconds "
                        f"({homelab.pace.slow_job_seconds} s) for this cluster")
        run.ca = homelab.start_operator()
    return replace


def boot_completed_with_the_same_job(run: Run) -> None:
    homelab = run.homelab
    assert run.ca.target_size(run.group_id) == 1  # the target CA set survives in the Group's status
    status = booted_and_running(run, "m1")
    assert instance_states(run) == [(run.instance_id("m1"), RUNNING)]
    assert homelab.created_jobs("m1") == [RESTART_STARTUP_JOB]  # adopted, never created again
    assert homelab.created_jobs(operation=SHUTDOWN) == []
    assert status["attempts"] == 1
    events = homelab.wait(lambda: "Booted" in (counts := homelab.event_counts("m1")) and counts, "the Booted Event")
    assert events["PoweringOn"] == 1, "the machine was told to power on once"
    assert homelab.simulator is not None
    assert homelab.simulator.machine("m1").boots == 1, "the machine itself powered on once"


def restart_mid_boot(name: str, *, kill: bool) -> Scenario:
    return Scenario(
        name,
        max_size=1,
        machines=(Machine("m1", slow_startup=True),),
        slow_jobs=True,
        steps=(
            Step("CA asks for the machine", increase_by_one, startup_job_running),
            Step("the operator is killed (a crash)" if kill else "the operator is stopped (SIGTERM)",
                 replace_operator(kill=kill), boot_completed_with_the_same_job, on_fake=no_job_attempted_twice),
        ),
    )


SCENARIOS: tuple[Scenario, ...] = (
    SCALE_UP,
    SCALE_DOWN,
    FAILED_BOOTS,
    restart_mid_boot("restart-mid-boot-stopped", kill=False),
    restart_mid_boot("restart-mid-boot-crashed", kill=True),
)
