"""Properties of the power machine under random event sequences, checked against a simulated world.

The world applies the machine's effects (Jobs, timers, the Kubernetes Node, the written status) and turns
random happenings (a Job finishes, the Node appears, CA asks, time passes) into events. After every step the
world must agree with the machine, and a restart (`derive` from the world) must rebuild the same machine.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.fsm import effects as fx
from actors.fsm import events as ev
from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation, derive
from actors.fsm.errors import CannotDecrease, InvalidTransition, NotEnoughMachines
from actors.fsm.exercise_record import is_exercising
from actors.fsm.group import MachineView, choose_boots_to_cancel, choose_for_scale_up, target_size
from actors.fsm.node import (
    POLICY_RULES,
    TRANSITIONS,
    Machine,
    MachineConfig,
    Rule,
    pending_timers,
    step,
)
from schemas.group import GroupSpec, PowerOffNodePolicy
from schemas.node import NodeSnapshot, NodeState, PowerPolicy

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SNAPSHOTS = (
    NodeSnapshot(labels={"kubernetes.io/hostname": "m1"}, capacity={"cpu": "8"}),
    NodeSnapshot(labels={"kubernetes.io/hostname": "m1", "gpu": "yes"}, capacity={"cpu": "8"}),
)
HOLDS_AN_OPERATION = {NodeState.STARTING_UP, NodeState.SHUTTING_DOWN, NodeState.MAINTENANCE}


@dataclass
class World:
    """The cluster as the machine's effects left it."""

    now: datetime
    status: Any = None
    jobs: dict[str, JobObservation] = field(default_factory=dict)
    node: KubeNodeObservation | None = None
    timers: dict[str, tuple[ev.TimerKind, datetime]] = field(default_factory=dict)
    """token → (kind, deadline); a deadline that had already passed when armed is the arming time."""
    draining: bool = False
    created: list[str] = field(default_factory=list)

    def fire_due_timers(self) -> list[ev.Event]:
        """Like the ticker: every timer whose deadline has come fires, earliest first."""
        due = sorted((deadline, token, kind) for token, (kind, deadline) in self.timers.items() if deadline <= self.now)
        for _, token, _ in due:
            del self.timers[token]
        return [ev.TimerFired(kind, token) for _, token, kind in due]

    def apply(self, effects: tuple[fx.Effect, ...]) -> list[ev.Event]:
        """Execute effects in order; return the events the cluster sends back at once."""
        follow_ups: list[ev.Event] = []
        for effect in effects:
            if isinstance(effect, fx.CreateJob):
                active = [job.name for job in self.jobs.values() if job.phase is JobPhase.ACTIVE]
                assert not active, f"{effect.job_name} created while {active} still runs"
                assert effect.job_name not in self.created, f"Job name {effect.job_name} reused"
                self.created.append(effect.job_name)
                self.jobs[effect.job_name] = JobObservation(
                    effect.job_name, effect.kind, effect.attempt, JobPhase.ACTIVE, created=self.now
                )
            elif isinstance(effect, fx.DeleteJob):
                self.jobs.pop(effect.job_name, None)
            elif isinstance(effect, fx.PatchStatus):
                self.status = effect.status
            elif isinstance(effect, fx.SetProviderID) and self.node is not None and not self.node.provider_id:
                self.node = replace(self.node, provider_id=effect.provider_id)
            elif isinstance(effect, fx.DeleteKubeNode) and self.node is not None:
                self.node = None
                follow_ups.append(ev.NodeGone())
            elif isinstance(effect, fx.Drain):
                self.draining = True
            elif isinstance(effect, fx.StartTimer):
                self.timers[effect.token] = (effect.kind, self.now + timedelta(seconds=effect.after_seconds))
            elif isinstance(effect, fx.CancelTimer):
                self.timers.pop(effect.token, None)
        return follow_ups + self.fire_due_timers()


Action = tuple[Any, ...]
_POWER_AND_WORLD: st.SearchStrategy[Action] = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([1, 30, 100, 200, 400, 700, 2000])),
    st.tuples(st.just("power_on"), st.booleans()),
    st.tuples(st.just("exercise")),
    st.tuples(st.just("grant")),
    st.tuples(st.just("power_off"), st.booleans()),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("job_finishes"), st.booleans()),
    st.tuples(st.just("drain_done"), st.booleans()),
    st.tuples(st.just("node_ready"), st.booleans(), st.sampled_from(SNAPSHOTS)),
    st.tuples(st.just("node_not_ready")),
    st.tuples(st.just("node_gone")),
    # The writer's report of a Kubernetes write that failed, including the status and Event writes themselves.
    st.tuples(
        st.just("write_fails"),
        st.sampled_from(["Cordon", "Uncordon", "SetProviderID", "DeleteKubeNode", "PatchStatus", "RecordEvent"]),
        st.sampled_from(["403 Forbidden", "gave up after 6 tries: 503"]),
        st.booleans(),
    ),
)
_PEOPLE: st.SearchStrategy[Action] = st.one_of(
    st.tuples(st.just("policy"), st.sampled_from(list(PowerPolicy))),
    st.tuples(st.just("reset"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("config"), st.sampled_from([60.0, 600.0])),
)
# People act rarely; CA and the machines act all the time. Without the weighting, histories spend their
# length toggling the policy and rarely reach a failed boot or a shutdown retry.
ACTIONS: st.SearchStrategy[Action] = st.sampled_from([0] * 9 + [1]).flatmap(
    lambda pick: _PEOPLE if pick else _POWER_AND_WORLD
)
CONFIGS = st.builds(
    MachineConfig,
    namespace=st.just("homelab"),
    name=st.just("m1"),
    group=st.just("workers"),
    kubernetes_node_name=st.just("m1"),
    power_policy=st.sampled_from(
        [PowerPolicy.AUTO, PowerPolicy.AUTO, PowerPolicy.ON, PowerPolicy.OFF, PowerPolicy.MAINTENANCE]
    ),
    cooldown_base_seconds=st.sampled_from([0.0, 30.0]),
    unready_grace_seconds=st.sampled_from([0.0, 120.0]),
    shutdown_retries=st.integers(0, 2),
    quarantine_after=st.integers(1, 3),
    power_off_node_policy=st.sampled_from(list(PowerOffNodePolicy)),
)


def events_for(action: Action, world: World, machine: Machine) -> list[ev.Event]:
    """What the world tells the machine when `action` happens (it updates the world first)."""
    name = action[0]
    if name == "advance":
        world.now += timedelta(seconds=action[1])
        return world.fire_due_timers()
    if name == "power_on":
        return [ev.PowerOnRequested(start_now=action[1])]
    if name == "exercise":
        return [ev.PowerOnRequested(exercise=True)]
    if name == "grant":
        return [ev.BootSlotGranted()]
    if name == "power_off":
        return [ev.PowerOffRequested(drain=action[1])]
    if name == "cancel":
        return [ev.CancelBoot()]
    if name == "job_finishes":
        active = [job for job in world.jobs.values() if job.phase is JobPhase.ACTIVE]
        if not active:
            return []
        job = active[0]
        if action[1]:
            world.jobs[job.name] = replace(job, phase=JobPhase.SUCCEEDED)
            return [ev.JobSucceeded(job.kind, job.name)]
        world.jobs[job.name] = replace(job, phase=JobPhase.FAILED, message="exit 1")
        return [ev.JobFailed(job.kind, job.name, "exit 1")]
    if name == "drain_done":
        if not world.draining:
            return []
        world.draining = False
        return [ev.DrainFinished(succeeded=action[1])]
    if name == "node_ready":
        provider = world.node.provider_id if world.node else None
        provider = provider or ("pxe://m1" if action[1] else None)
        world.node = KubeNodeObservation(ready=True, provider_id=provider, snapshot=action[2])
        return [ev.NodeReady(provider_id=provider, snapshot=action[2])]
    if name == "node_not_ready":
        previous = world.node or KubeNodeObservation(ready=False)
        world.node = replace(previous, ready=False)
        return [ev.NodeNotReady()]
    if name == "node_gone":
        world.node = None
        return [ev.NodeGone()]
    if name == "write_fails":
        return [ev.WriteFailed(action[1], action[2], permanent=action[3])]
    if name == "policy":
        return [ev.PolicyChanged(action[1])]
    if name == "reset":
        return [ev.ResetRequested(action[1])]
    return [ev.ConfigChanged(replace(machine.config, boot_timeout_seconds=action[1]))]


def explained_targets(rule: Rule) -> set[NodeState]:
    """States a cell may end in: its own targets, then whatever the policy rules make of them."""
    reachable = set(rule.targets)
    while True:
        more = {t for p in POLICY_RULES if reachable & set(p.states) for t in p.targets} - reachable
        if not more:
            return reachable
        reachable |= more


def check_agreement(machine: Machine, world: World) -> None:
    status = machine.status
    assert world.status == status, "every change of status is written"
    operation = status.operation
    assert operation is None or status.state in HOLDS_AN_OPERATION
    if operation is not None:
        assert operation.job_name in world.jobs
    active = {job.name for job in world.jobs.values() if job.phase is JobPhase.ACTIVE}
    assert active <= ({operation.job_name} if operation else set()), "never two power operations at once"
    assert status.attempts == len(world.created)
    if is_exercising(status):
        assert status.state in (NodeState.STARTING_UP, NodeState.SHUTTING_DOWN), "an exercise runs its course only"
        assert machine.config.power_policy is PowerPolicy.AUTO  # (Ready, awaiting a readback: test_native_power_fsm)
    types = [condition.type for condition in status.conditions]
    assert len(types) == len(set(types))
    expected_timers = {timer.token: timer for timer in pending_timers(machine)}
    assert world.timers.keys() == expected_timers.keys(), "timers started and cancelled exactly as needed"
    for token, (kind, deadline) in world.timers.items():
        assert kind is expected_timers[token].kind
        assert deadline >= expected_timers[token].deadline  # later only when it had already passed
    if status.state is NodeState.QUARANTINED or machine.config.power_policy is PowerPolicy.OFF:
        try:
            asked = step(machine, ev.PowerOnRequested(), world.now)
        except InvalidTransition:
            return
        assert not [e for e in asked.effects if isinstance(e, fx.CreateJob)], "a quarantined/Off machine booted"
        assert asked.machine.status.state is not NodeState.STARTING_UP


def check_restart(machine: Machine, world: World) -> None:
    jobs = list(world.jobs.values())
    rebuilt = derive(world.status, machine.config, jobs, world.node, world.now)
    assert rebuilt.machine.status == machine.status
    assert rebuilt.machine.kube_node is machine.kube_node
    assert rebuilt.machine.job_finished == machine.job_finished
    existing = set(world.jobs)
    assert not [e for e in rebuilt.effects if isinstance(e, fx.CreateJob) and e.job_name in existing]
    assert not [e for e in rebuilt.effects if isinstance(e, fx.CreateJob | fx.DeleteJob | fx.PatchStatus)]
    restarted = {e.token for e in rebuilt.effects if isinstance(e, fx.StartTimer)}
    needed = {t.token for t in pending_timers(machine) if t.kind is not ev.TimerKind.UNREADY_GRACE}
    assert needed <= restarted


PROPER_NOUNS = (
    "Kubernetes", "Cluster Autoscaler", "Group", "Node", "Job",
    # Effect names, as a failed write names the effect (`Cordon is still failing after retries: ...`).
    *(effect.__name__ for effect in typing.get_args(fx.Effect)),
)
"""Names that keep their capital at the start of an Event message; every other first word is lower case."""


def event_message_is_in_house_style(message: str) -> bool:
    """One capitalisation for every Event: the first word in lower case, like the status messages it repeats."""
    return message[:1].islower() or message.startswith(PROPER_NOUNS)


@pytest.mark.parametrize(
    ("message", "ok"),
    [
        pytest.param("powering on: startup Job m1-startup-1 created", True, id="lower"),
        pytest.param("Kubernetes Node m1 is Ready", True, id="proper-noun"),
        pytest.param("Powering on: startup Job m1-startup-1 created", False, id="capitalised"),
    ],
)
def test_the_event_style_rule(message: str, ok: bool) -> None:
    assert event_message_is_in_house_style(message) is ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=CONFIGS, actions=st.lists(ACTIONS, min_size=15, max_size=60))
def test_random_histories_keep_the_world_and_a_restart_in_agreement(
    config: MachineConfig, actions: list[Action]
) -> None:
    world = World(now=START)
    first = derive(None, config, [], None, START)  # how a new machine starts
    machine = first.machine
    assert not world.apply(first.effects)
    for action in actions:
        pending = events_for(action, world, machine)
        while pending:
            event = pending.pop(0)
            cell = TRANSITIONS.get((machine.status.state, type(event)))
            try:
                result = step(machine, event, world.now)
            except InvalidTransition:
                continue  # refused: nothing changed, nothing to apply
            if isinstance(cell, Rule):
                assert result.machine.status.state in explained_targets(cell), "the documented table explains the move"
            if isinstance(event, ev.WriteFailed):
                assert result.machine.status.state is machine.status.state, "a failed write never moves the machine"
                if event.effect in ("PatchStatus", "RecordEvent"):
                    assert result.effects == (), "a failed status or Event write must not start another write"
            machine = result.machine
            for effect in result.effects:
                if isinstance(effect, fx.RecordEvent):
                    assert event_message_is_in_house_style(effect.message), effect.message
            pending += world.apply(result.effects)
        # Checked once the cluster's answers (a fired timer, a deleted Node) have been delivered.
        check_agreement(machine, world)
        check_restart(machine, world)


# --------------------------------------------------------------------------------------------------
# Group policy

VIEWS = st.builds(
    MachineView,
    name=st.sampled_from([f"m{i}" for i in range(12)]),
    state=st.sampled_from(list(NodeState)),
    provider_id=st.just("homelab://homelab/m"),
    power_policy=st.sampled_from(list(PowerPolicy)),
    priority=st.integers(0, 3),
    cooldown_until=st.one_of(st.none(), st.sampled_from([START - timedelta(seconds=1), START + timedelta(seconds=1)])),
    registered=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    machines=st.lists(VIEWS, max_size=12, unique_by=lambda view: view.name),
    delta=st.integers(1, 5),
    max_size=st.integers(0, 12),
)
def test_scale_up_never_picks_a_forbidden_machine_nor_passes_max(
    machines: list[MachineView], delta: int, max_size: int
) -> None:
    try:
        chosen = choose_for_scale_up(machines, delta, GroupSpec(max_size=max_size), START)
    except NotEnoughMachines:
        return
    assert len(chosen) == delta
    by_name = {machine.name: machine for machine in machines}
    for name in chosen:
        machine = by_name[name]
        assert machine.state is NodeState.SHUTDOWN
        assert machine.power_policy is PowerPolicy.AUTO
        assert machine.cooldown_until is None or machine.cooldown_until <= START
    assert target_size(machines) + delta <= max_size


@settings(max_examples=200, deadline=None)
@given(machines=st.lists(VIEWS, max_size=12, unique_by=lambda view: view.name), count=st.integers(1, 4))
def test_a_decrease_never_touches_a_registered_node(machines: list[MachineView], count: int) -> None:
    try:
        chosen = choose_boots_to_cancel(machines, count)
    except CannotDecrease:
        return
    by_name = {machine.name: machine for machine in machines}
    assert all(not by_name[name].registered for name in chosen)
    assert all(by_name[name].state in (NodeState.STARTING_UP, NodeState.BOOT_FAILED) for name in chosen)
