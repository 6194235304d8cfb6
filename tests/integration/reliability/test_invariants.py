"""The invariant checker catches each broken promise, stays quiet when all hold, and a real operator run holds them.

The first table starts from one hand-made homelab in which every promise holds (API objects and read model
snapshots written out by hand), breaks exactly one thing per case, and expects exactly the invariants that thing
breaks, with a message naming the culprit. Look-alikes that are fine (finished Jobs, a Node kept on purpose, a
machine a person powered on) must not be reported. Then the real operator runs against the fake API with simulated
machines, through scale-ups, a scale-down, a cancelled boot, a machine powered on by hand and a crash, and must
converge with nothing reported, read from the fake's store and over HTTP alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.fsm.group import InstanceState, InstanceView
from actors.read_model import GroupSnapshot, MachineSnapshot
from protos import externalgrpc_pb2 as externalgrpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.node import NodeState, PowerPolicy
from sim.invariants import (
    ClusterObjects,
    Invariant,
    Observation,
    check_invariants,
    objects_from_api,
    objects_from_store,
    unsettled_machines,
    wait_converged,
)
from tests.support.operator_homelab import GROUP, GROUP_ID, NAMESPACE, Homelab, simulated
from tests.support.polling import wait_for

_INSTANCE_STATES = {
    NodeState.STARTING_UP: InstanceState.CREATING,
    NodeState.READY: InstanceState.RUNNING,
    NodeState.SHUTTING_DOWN: InstanceState.DELETING,
}


def provider_id(name: str) -> str:
    return f"homelab://{NAMESPACE}/{name}"


@dataclass
class Scene:
    """A homelab written out by hand: the API objects and what the read model says, each editable by a case.

    As built: group `workers` (maxSize 3) with m1 Ready (its Node Ready, startup Job finished), m2 Shutdown, and
    m3 StartingUp (its startup Job running and named by its operation); the target is 2 everywhere.
    """

    group: dict[str, Any]
    machines: dict[str, dict[str, Any]]
    jobs: list[dict[str, Any]]
    kube_nodes: dict[str, dict[str, Any]]
    model_states: dict[str, NodeState]
    model_provider_ids: dict[str, str]
    model_target: int = 2
    model_has_group: bool = True
    model_extra_machines: list[str] = field(default_factory=list)
    instance_ids: dict[str, str] = field(default_factory=dict)
    """Instance ids CA is told, where they differ from the machine's provider id."""

    @classmethod
    def consistent(cls) -> Scene:
        scene = cls(
            group={
                "apiVersion": GROUP_VERSION, "kind": "Group",
                "metadata": {"name": GROUP, "namespace": NAMESPACE},
                "spec": {"maxSize": 3},
                "status": {"targetSize": 2},
            },
            machines={},
            jobs=[],
            kube_nodes={},
            model_states={},
            model_provider_ids={},
        )
        scene.add_machine("m1", NodeState.READY, reason="Booted")
        scene.add_machine("m2", NodeState.SHUTDOWN)
        scene.add_machine("m3", NodeState.STARTING_UP, job="m3-startup-1")
        scene.add_kube_node("m1")
        scene.add_job("m1-startup-1", "m1", finished="Complete")
        scene.add_job("m3-startup-1", "m3")
        return scene

    def add_machine(self, name: str, state: NodeState, *, job: str | None = None, reason: str = "") -> None:
        status: dict[str, Any] = {"state": state.value, "reason": reason}
        if job is not None:
            status["operation"] = {"kind": "startup", "attempt": 1, "jobName": job, "started": "2030-01-01T00:00:00Z"}
        if state is NodeState.READY:
            status["providerID"] = provider_id(name)
        self.machines[name] = {
            "apiVersion": GROUP_VERSION, "kind": "Node",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {label_names.GROUP_LABEL: GROUP}},
            "spec": {},
            "status": status,
        }
        self.model_states[name] = state
        self.model_provider_ids[name] = provider_id(name)

    def add_kube_node(self, name: str, *, ready: bool = True, provider: str | None = None) -> None:
        self.kube_nodes[name] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name},
            "spec": {"providerID": provider_id(name) if provider is None else provider},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }

    def add_job(self, name: str, machine: str, *, finished: str | None = None, deleting: bool = False) -> None:
        kind, attempt = name.rsplit("-", 2)[1:]
        metadata: dict[str, Any] = {
            "name": name, "namespace": NAMESPACE,
            "labels": {
                label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
                label_names.MACHINE_LABEL: machine,
                label_names.OPERATION_LABEL: kind,
                label_names.ATTEMPT_LABEL: attempt,
            },
        }
        if deleting:
            metadata["deletionTimestamp"] = "2030-01-01T00:00:00Z"
        conditions = [{"type": finished, "status": "True"}] if finished else []
        self.jobs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
                          "status": {"conditions": conditions}})

    def objects(self) -> ClusterObjects:
        return ClusterObjects(
            groups=(self.group,),
            machines=tuple(self.machines.values()),
            jobs=tuple(self.jobs),
            kube_nodes=tuple(self.kube_nodes.values()),
        )

    def snapshots(self) -> tuple[GroupSnapshot, ...]:
        if not self.model_has_group:
            return ()
        machines = [
            MachineSnapshot(
                name=name,
                namespace=NAMESPACE,
                kubernetes_node_name=name,
                provider_id=self.model_provider_ids.get(name, provider_id(name)),
                state=state,
                power_policy=PowerPolicy.AUTO,
                instance=self._instance(name, state),
            )
            for name, state in sorted({**self.model_states, **dict.fromkeys(self.model_extra_machines,
                                                                             NodeState.SHUTDOWN)}.items())
        ]
        return (
            GroupSnapshot(
                id=GROUP_ID, namespace=NAMESPACE, name=GROUP, min_size=0,
                max_size=int(self.group["spec"]["maxSize"]), target_size=self.model_target,
                machines=tuple(machines),
            ),
        )

    def _instance(self, name: str, state: NodeState) -> InstanceView | None:
        listed = _INSTANCE_STATES.get(state)
        if listed is None:
            return None
        return InstanceView(self.instance_ids.get(name, self.model_provider_ids.get(name, provider_id(name))), listed)


Break = Callable[[Scene], None]


def _status_target(target: int) -> Break:
    def change(scene: Scene) -> None:
        scene.group["status"]["targetSize"] = target
    return change


def _state_in_model(name: str, state: NodeState) -> Break:
    def change(scene: Scene) -> None:
        scene.model_states[name] = state
    return change


def _only_the_model_starts_m2(scene: Scene) -> None:
    scene.model_states["m2"] = NodeState.STARTING_UP
    scene.model_target = 3


def _machine_only_in_api(scene: Scene) -> None:
    scene.add_machine("m4", NodeState.SHUTDOWN)
    del scene.model_states["m4"]


def _machine_only_in_model(scene: Scene) -> None:
    scene.model_extra_machines.append("m9")


def _machine_moved_out_of_the_group(scene: Scene) -> None:
    scene.machines["m2"]["metadata"]["labels"][label_names.GROUP_LABEL] = "elsewhere"


def _group_only_in_api(scene: Scene) -> None:
    scene.model_has_group = False


def _job(name: str, machine: str, **options: Any) -> Break:
    def change(scene: Scene) -> None:
        scene.add_job(name, machine, **options)
    return change


def _operation_names_another_job(scene: Scene) -> None:
    scene.machines["m3"]["status"]["operation"]["jobName"] = "m3-startup-0"


def _max_size(size: int) -> Break:
    def change(scene: Scene) -> None:
        scene.group["spec"]["maxSize"] = size
    return change


def _a_window_allows_more(scene: Scene) -> None:
    scene.group["spec"]["maxSize"] = 1
    scene.group["spec"]["schedules"] = [{"name": "busy", "days": ["Mon"], "start": "08:00", "end": "18:00",
                                        "maxSize": 3}]


def _adopted_beyond_max(scene: Scene) -> None:
    scene.group["spec"]["maxSize"] = 1
    scene.machines["m1"]["status"]["reason"] = "StartedOutsideAutoscaler"


def _model_provider_id(name: str, value: str) -> Break:
    def change(scene: Scene) -> None:
        scene.model_provider_ids[name] = value
    return change


def _api_provider_id(name: str, value: str) -> Break:
    def change(scene: Scene) -> None:
        scene.machines[name]["status"]["providerID"] = value
    return change


def _instance_id(name: str, value: str) -> Break:
    def change(scene: Scene) -> None:
        scene.instance_ids[name] = value
    return change


def _kube_node(name: str, **options: Any) -> Break:
    def change(scene: Scene) -> None:
        scene.add_kube_node(name, **options)
    return change


def _no_kube_node(name: str) -> Break:
    def change(scene: Scene) -> None:
        del scene.kube_nodes[name]
    return change


def _keep_powered_off_nodes(scene: Scene) -> None:
    scene.group["spec"]["powerOffNodePolicy"] = "Keep"
    scene.add_kube_node("m2")


def _unwritten_status(scene: Scene) -> None:
    del scene.machines["m2"]["status"]


CASES = [
    # The broken promise, one per case, and the words the report must contain.
    pytest.param(_state_in_model("m1", NodeState.SHUTTING_DOWN), {Invariant.STATE_AGREES},
                 "m1 is Ready in the API but ShuttingDown", id="state-differs"),
    pytest.param(_machine_only_in_api, {Invariant.STATE_AGREES}, "m4 (Shutdown in the API) is missing",
                 id="machine-missing-from-read-model"),
    pytest.param(_machine_only_in_model, {Invariant.STATE_AGREES}, "m9 is in the read model of homelab/workers but "
                 "has no Node resource", id="machine-missing-from-api"),
    pytest.param(_machine_moved_out_of_the_group, {Invariant.STATE_AGREES}, "its group label says elsewhere",
                 id="machine-in-the-wrong-group"),
    pytest.param(_status_target(1), {Invariant.TARGET_AGREES}, "Group status.targetSize is 1",
                 id="recorded-target-differs"),
    pytest.param(_only_the_model_starts_m2, {Invariant.STATE_AGREES, Invariant.TARGET_AGREES},
                 "the read model's target is 3, Group status.targetSize is 2, its machines' states add up to 2",
                 id="state-and-target-differ"),
    pytest.param(_group_only_in_api, {Invariant.TARGET_AGREES, Invariant.STATE_AGREES},
                 "group homelab/workers is in the API but not in the read model", id="group-missing-from-read-model"),
    pytest.param(_job("m2-startup-1", "m2"), {Invariant.JOB_HAS_OPERATION},
                 "Job m2-startup-1 is still running for machine homelab/m2, which is in no operation (Shutdown)",
                 id="job-for-a-machine-in-no-operation"),
    pytest.param(_operation_names_another_job, {Invariant.JOB_HAS_OPERATION}, "whose operation runs Job m3-startup-0",
                 id="job-not-the-operations"),
    pytest.param(_job("ghost-startup-1", "ghost"), {Invariant.JOB_HAS_OPERATION}, "which has no Node resource",
                 id="job-for-an-unknown-machine"),
    pytest.param(_job("m3-shutdown-2", "m3"), {Invariant.ONE_ACTIVE_JOB, Invariant.JOB_HAS_OPERATION},
                 "has 2 power Jobs running at once: m3-shutdown-2, m3-startup-1", id="two-active-jobs"),
    pytest.param(_max_size(1), {Invariant.TARGET_WITHIN_MAX}, "exceeds maxSize 1: the read model's target 2",
                 id="target-beyond-max"),
    pytest.param(_model_provider_id("m2", provider_id("m1")), {Invariant.UNIQUE_PROVIDER_ID},
                 "machines homelab/m1, homelab/m2 share the provider id homelab://homelab/m1 in the read model",
                 id="provider-id-shared-in-read-model"),
    pytest.param(_api_provider_id("m2", provider_id("m1")), {Invariant.UNIQUE_PROVIDER_ID},
                 "share the provider id homelab://homelab/m1 in the API", id="provider-id-shared-in-api"),
    pytest.param(_kube_node("m1", provider="k3s://m1"), {Invariant.READY_NODE_PROVIDER_ID},
                 "Kubernetes Node m1 has providerID k3s://m1 but CA is told homelab://homelab/m1",
                 id="ready-node-with-another-provider-id"),
    pytest.param(_kube_node("m1", provider=""), {Invariant.READY_NODE_PROVIDER_ID}, "has providerID (none)",
                 id="ready-node-without-provider-id"),
    pytest.param(_no_kube_node("m1"), {Invariant.READY_NODE_PROVIDER_ID}, "Ready machine homelab/m1 has no "
                 "Kubernetes Node m1", id="ready-machine-without-node"),
    pytest.param(_instance_id("m1", "homelab://elsewhere/m1"), {Invariant.READY_NODE_PROVIDER_ID},
                 "listed to CA as homelab://elsewhere/m1", id="instance-id-not-the-provider-id"),
    pytest.param(_kube_node("m2"), {Invariant.POWERED_OFF_NODE_GONE},
                 "homelab/m2 is Shutdown (powerOffNodePolicy Delete) but its Kubernetes Node m2 is Ready",
                 id="powered-off-machine-with-ready-node"),
]


@pytest.mark.parametrize(("change", "expected", "words"), CASES)
def test_each_broken_promise_is_reported_with_its_culprit(change: Break, expected: set[Invariant], words: str) -> None:
    scene = Scene.consistent()
    change(scene)

    violations = check_invariants(scene.objects(), scene.snapshots())

    assert {violation.invariant for violation in violations} == expected
    assert any(words in str(violation) for violation in violations), [str(v) for v in violations]


def _m2_exercised(scene: Scene) -> None:
    """m2 boots for an exercise: on, with a running Job, yet no part of the target CA or the status sees."""
    scene.add_machine("m2", NodeState.STARTING_UP, job="m2-startup-1")
    scene.machines["m2"]["status"]["lastExercise"] = {"started": "2030-01-01T00:00:00Z", "outcome": "Running"}
    scene.add_job("m2-startup-1", "m2")


FINE = [
    pytest.param(lambda scene: None, id="as-built"),
    pytest.param(_job("m2-startup-1", "m2", finished="Complete"), id="finished-job-of-an-idle-machine"),
    pytest.param(_job("m2-startup-1", "m2", finished="Failed"), id="failed-job-of-an-idle-machine"),
    pytest.param(_job("m3-shutdown-0", "m3", deleting=True), id="job-being-deleted-beside-the-running-one"),
    pytest.param(_keep_powered_off_nodes, id="powered-off-node-kept-on-purpose"),
    pytest.param(_kube_node("m2", ready=False), id="powered-off-node-not-ready"),
    pytest.param(_adopted_beyond_max, id="machine-powered-on-by-hand-beyond-max"),
    pytest.param(_a_window_allows_more, id="a-schedule-window-allows-more-than-spec-max"),
    pytest.param(_unwritten_status, id="status-never-written-means-shutdown"),
    pytest.param(_m2_exercised, id="a-machine-being-exercised-is-no-target"),
]


@pytest.mark.parametrize("change", FINE)
def test_look_alikes_of_broken_promises_are_not_reported(change: Break) -> None:
    scene = Scene.consistent()
    change(scene)

    assert [str(violation) for violation in check_invariants(scene.objects(), scene.snapshots())] == []


# --- waiting for convergence -----------------------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _observations(*scenes: Scene) -> Callable[[], Observation]:
    remaining: Iterator[Scene] = iter(scenes)
    last: list[Scene] = []

    def observe() -> Observation:
        scene = next(remaining, None) or last[0]
        last[:] = [scene]
        return scene.objects(), scene.snapshots()

    return observe


def _broken(change: Break) -> Scene:
    scene = Scene.consistent()
    change(scene)
    return scene


def _settled() -> Scene:
    scene = Scene.consistent()
    scene.machines["m3"]["status"] = {"state": "Shutdown"}
    scene.model_states["m3"] = NodeState.SHUTDOWN
    scene.jobs[-1]["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    scene.group["status"]["targetSize"] = scene.model_target = 1
    return scene


def test_wait_converged_returns_once_every_promise_holds_and_nothing_moves() -> None:
    clock = Clock()
    observe = _observations(_broken(_status_target(1)), Scene.consistent(), _settled())

    result = wait_converged(observe, timeout=5.0, poll_seconds=0.5, clock=clock, sleep=clock.sleep)

    assert result.converged
    assert result.seconds == 1.0  # two polls: one promise broken, then m3 still starting up
    assert result.describe() == "converged in 1.00 s"


def test_wait_converged_gives_up_at_the_deadline_saying_what_was_wrong() -> None:
    clock = Clock()
    observe = _observations(_broken(_status_target(1)))

    result = wait_converged(observe, timeout=2.0, poll_seconds=0.5, clock=clock, sleep=clock.sleep)

    assert not result.converged
    assert result.seconds == 2.0
    assert [violation.invariant for violation in result.violations] == [Invariant.TARGET_AGREES]
    assert result.unsettled == ("homelab/m3",)
    assert "still moving: homelab/m3" in result.describe()


def test_without_settled_a_machine_on_its_way_is_not_waited_for() -> None:
    clock = Clock()

    result = wait_converged(_observations(Scene.consistent()), timeout=2.0, settled=False, clock=clock,
                            sleep=clock.sleep)

    assert result.converged
    assert result.seconds == 0.0
    assert unsettled_machines(Scene.consistent().objects()) == ["homelab/m3"]


# --- a real operator run ---------------------------------------------------------------------------------------


def _observer(homelab: Homelab, *, over_http: bool = False) -> Callable[[], Observation]:
    def observe() -> Observation:
        operator = homelab.operators[-1].operator
        if over_http:
            objects = objects_from_api(homelab.api_client, NAMESPACE)
        else:
            objects = objects_from_store(homelab.fake.store, NAMESPACE)
        return objects, operator.read_model.groups()

    return observe


def _assert_converged(homelab: Homelab) -> None:
    for over_http in (False, True):
        result = wait_converged(_observer(homelab, over_http=over_http), timeout=15.0)
        assert result.converged, result.describe()


def test_a_real_run_through_scaling_a_cancel_a_hand_powered_machine_and_a_crash_keeps_every_promise(
    homelab: Homelab,
) -> None:
    homelab.add_group(max_size=3)
    names = ["m1", "m2", "m3", "m4"]
    for name in names:
        homelab.add_machine(name)
    simulator = homelab.simulate(*(simulated(name, boot_seconds=0.3) for name in names), job_seconds=0.1)
    ca = homelab.start_operator()
    _assert_converged(homelab)

    ca.increase_size(2)
    _assert_converged(homelab)
    running = [instance.id for instance in ca.nodes()]
    ca.delete_nodes(running[0], names=[running[0].rpartition("/")[2]])
    ca.increase_size(1)
    ca.stub.NodeGroupDecreaseTargetSize(externalgrpc.NodeGroupDecreaseTargetSizeRequest(id=GROUP_ID, delta=-1))
    # A machine never powered on: one whose boot was just cancelled would be powered off again when it comes up.
    idle = next(name for name in names if homelab.state(name) == "Shutdown" and not homelab.created_jobs(name))
    simulator.machine(idle).power_on_unexpectedly()
    wait_for(lambda: homelab.state(idle) == "Ready", what=f"{idle} to be adopted")
    _assert_converged(homelab)

    ca.increase_size(1)
    homelab.stop_operator(ca, kill=True)
    homelab.start_operator()
    _assert_converged(homelab)


def test_a_read_model_out_of_step_with_the_api_is_caught(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1", boot_seconds=0.2), job_seconds=0.05)
    ca = homelab.start_operator()
    ca.increase_size(1)
    _assert_converged(homelab)

    # Someone else rewrites the recorded state; the operator ignores status it did not write, so it disagrees.
    machine = homelab.machine("m1")
    status = copy.deepcopy(machine["status"])
    status["state"] = "Shutdown"
    homelab.fake.store.patch(GROUP_VERSION, "nodes", "m1", {"status": status}, NAMESPACE, subresource="status")
    objects, snapshots = _observer(homelab)()

    found = {violation.invariant for violation in check_invariants(objects, snapshots)}
    assert Invariant.STATE_AGREES in found
    assert Invariant.TARGET_AGREES in found
