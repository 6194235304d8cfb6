"""Exercise boots: the node machine's course of one exercise, a restart in the middle, and the group's choice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from actors.fsm import effects as fx
from actors.fsm import events as ev
from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation, derive
from actors.fsm.errors import CannotDecrease, DeleteRefused, InvalidTransition
from actors.fsm.exercise import choose_for_exercise, next_look
from actors.fsm.exercise_record import is_exercising
from actors.fsm.group import (
    MachineView,
    check_delete,
    choose_boots_to_cancel,
    choose_for_scale_up,
    instance_status,
    machine_view,
    target_size,
)
from actors.fsm.node import KubeNodePresence, Machine, MachineConfig, Transition, job_name, step
from schemas.group import Exercise, ExerciseWindow, GroupSpec, Weekday
from schemas.node import (
    ExerciseOutcome,
    ExerciseRecord,
    NodeSnapshot,
    NodeState,
    NodeStatus,
    Operation,
    OperationKind,
    PowerPolicy,
)

NOW = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)  # a Saturday
CONFIG = MachineConfig(namespace="homelab", name="m1", group="workers", kubernetes_node_name="m1", quarantine_after=3)
SNAPSHOT = NodeSnapshot(labels={"kubernetes.io/hostname": "m1"}, capacity={"cpu": "8", "pods": "110"})
READY = ev.NodeReady(provider_id="homelab://homelab/m1", snapshot=SNAPSHOT)
BOOT_JOB = job_name("m1", OperationKind.STARTUP, 1)
STOP_JOB = job_name("m1", OperationKind.SHUTDOWN, 2)
RUNNING = ExerciseRecord(started=NOW - timedelta(minutes=2), outcome=ExerciseOutcome.RUNNING, message="booting")


def _off_for(days: float, **status: object) -> Machine:
    fields: dict[str, object] = {"state": NodeState.SHUTDOWN, "since": NOW - timedelta(days=days)}
    return Machine(config=CONFIG, status=NodeStatus.model_validate(fields | status))


def _exercised(state: NodeState, **status: object) -> Machine:
    """A machine in the middle of an exercise: booting (StartingUp), or checked and powering off (ShuttingDown)."""
    fields: dict[str, object] = {"state": state, "since": NOW - timedelta(minutes=2), "last_exercise": RUNNING}
    presence = KubeNodePresence.ABSENT
    if state is NodeState.STARTING_UP:
        operation = Operation(kind=OperationKind.STARTUP, attempt=1, job_name=BOOT_JOB, started=RUNNING.started)
        fields |= {"operation": operation, "attempts": 1, "operation_tries": 1}
    elif state is NodeState.SHUTTING_DOWN:
        operation = Operation(kind=OperationKind.SHUTDOWN, attempt=2, job_name=STOP_JOB, started=NOW)
        fields |= {"operation": operation, "attempts": 2, "operation_tries": 1, "reason": "PoweringOff"}
        presence = KubeNodePresence.READY
    return Machine(config=CONFIG, status=NodeStatus.model_validate(fields | status), kube_node=presence)


def _run(machine: Machine, *events: ev.Event) -> tuple[Machine, list[fx.Effect]]:
    effects: list[fx.Effect] = []
    for event in events:
        result = step(machine, event, NOW)
        machine = result.machine
        effects += result.effects
    return machine, effects


def _reasons(effects: Sequence[fx.Effect]) -> list[str]:
    return [effect.reason for effect in effects if isinstance(effect, fx.RecordEvent)]


@dataclass(frozen=True)
class Course:
    """One exercise case: where the machine starts, what happens, where it ends and what the record says."""

    machine: Machine
    events: tuple[ev.Event, ...]
    state: NodeState
    outcome: ExerciseOutcome
    reasons: frozenset[str]
    failures: int = 0


COURSES = [
    pytest.param(
        Course(
            _off_for(8),
            (ev.PowerOnRequested(exercise=True),),
            NodeState.STARTING_UP,
            ExerciseOutcome.RUNNING,
            frozenset({"PoweringOn", "ExerciseStarted"}),
        ),
        id="started",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.STARTING_UP),
            (READY,),
            NodeState.SHUTTING_DOWN,
            ExerciseOutcome.RUNNING,
            frozenset({"Booted", "ExerciseChecked", "Draining"}),
        ),
        id="checked-then-powering-off",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.SHUTTING_DOWN),
            (ev.JobSucceeded(OperationKind.SHUTDOWN, STOP_JOB), ev.NodeGone()),
            NodeState.SHUTDOWN,
            ExerciseOutcome.SUCCEEDED,
            frozenset({"PoweredOff", "ExerciseSucceeded"}),
        ),
        id="succeeded",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.STARTING_UP),
            (ev.JobFailed(OperationKind.STARTUP, BOOT_JOB, "BMC unreachable"),),
            NodeState.SHUTDOWN,
            ExerciseOutcome.FAILED,
            frozenset({"BootJobFailed", "ExerciseFailed"}),
            failures=1,
        ),
        id="boot-failed-cooldown",
    ),
    pytest.param(
        Course(
            replace(
                _exercised(NodeState.STARTING_UP, consecutive_failures=2),
                config=replace(CONFIG, boot_timeout_seconds=60),
            ),
            (ev.TimerFired(ev.TimerKind.BOOT_TIMEOUT, f"{BOOT_JOB}:boot-timeout"),),
            NodeState.QUARANTINED,
            ExerciseOutcome.FAILED,
            frozenset({"BootTimedOut", "ExerciseFailed", "Quarantined"}),
            failures=3,
        ),
        id="timed-out-third-failure-quarantined",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.STARTING_UP),
            (ev.PowerOnRequested(), READY),
            NodeState.READY,
            ExerciseOutcome.TAKEN_OVER,
            frozenset({"ExerciseTakenOver", "Booted"}),
        ),
        id="taken-over-by-a-scale-up",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.SHUTTING_DOWN, operation=None, reason="Draining"),
            (ev.PowerOnRequested(), ev.DrainFinished(succeeded=True)),
            NodeState.READY,
            ExerciseOutcome.TAKEN_OVER,
            frozenset({"ExerciseTakenOver"}),
        ),
        id="taken-over-while-drained",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.SHUTTING_DOWN, operation=None, reason="Draining"),
            (ev.DrainFinished(succeeded=False, message="a PodDisruptionBudget"),),
            NodeState.READY,
            ExerciseOutcome.FAILED,
            frozenset({"DrainFailed", "ExerciseFailed"}),
        ),
        id="not-powered-off-again",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.STARTING_UP),
            (ev.PolicyChanged(PowerPolicy.OFF),),
            NodeState.SHUTDOWN,
            ExerciseOutcome.INTERRUPTED,
            frozenset({"BootCancelled", "ExerciseInterrupted"}),
        ),
        id="policy-off-interrupts",
    ),
    pytest.param(
        Course(
            _exercised(NodeState.STARTING_UP),
            (ev.PolicyChanged(PowerPolicy.MAINTENANCE),),
            NodeState.MAINTENANCE,
            ExerciseOutcome.INTERRUPTED,
            frozenset({"MaintenanceStarted", "ExerciseInterrupted"}),
        ),
        id="maintenance-interrupts",
    ),
]


@pytest.mark.parametrize("course", COURSES)
def test_the_course_of_an_exercise(course: Course) -> None:
    machine, effects = _run(course.machine, *course.events)
    assert machine.status.state is course.state
    record = machine.status.last_exercise
    assert record is not None
    assert record.outcome is course.outcome
    assert (record.finished is None) == (course.outcome is ExerciseOutcome.RUNNING)
    assert course.reasons <= set(_reasons(effects))
    assert machine.status.consecutive_failures == course.failures


def test_an_exercise_boot_stores_its_intent_first_and_never_waits_for_a_slot() -> None:
    result = step(_off_for(8), ev.PowerOnRequested(start_now=False, exercise=True), NOW)
    assert isinstance(result.effects[0], fx.PatchStatus)
    assert is_exercising(result.effects[0].status)
    assert any(isinstance(effect, fx.CreateJob) for effect in result.effects)


def test_the_exercised_node_is_tainted_and_never_made_schedulable() -> None:
    _machine, effects = _run(_exercised(NodeState.STARTING_UP), READY)
    kinds = [type(effect) for effect in effects]
    assert fx.TaintForExercise in kinds
    assert fx.Uncordon not in kinds
    assert kinds.index(fx.TaintForExercise) < kinds.index(fx.Drain)


def test_a_takeover_after_ready_makes_the_node_usable() -> None:
    ready = replace(_exercised(NodeState.READY), kube_node=KubeNodePresence.READY)
    result = step(ready, ev.PowerOnRequested(), NOW)
    assert [type(effect) for effect in result.effects][:3] == [fx.Uncordon, fx.RemoveAutoscalerTaints,
                                                                fx.ApplyManagedLabelsAndTaints]
    assert result.machine.status.state is NodeState.READY
    assert not is_exercising(result.machine.status)


def test_too_late_to_take_over_once_the_shutdown_job_runs() -> None:
    powering_off = _exercised(NodeState.SHUTTING_DOWN)
    with pytest.raises(InvalidTransition, match="shutting down"):
        step(powering_off, ev.PowerOnRequested(), NOW)


def test_a_power_on_for_a_machine_not_exercised_changes_nothing() -> None:
    booting = _exercised(NodeState.STARTING_UP, last_exercise=None)
    assert step(booting, ev.PowerOnRequested(), NOW) == Transition(booting)


# --- restart in the middle of an exercise -------------------------------------------------------------------------


def _job(kind: OperationKind, attempt: int, phase: JobPhase) -> JobObservation:
    return JobObservation(job_name("m1", kind, attempt), kind, attempt, phase, created=RUNNING.started)


RESTARTS = [
    pytest.param(
        _exercised(NodeState.STARTING_UP).status,
        [_job(OperationKind.STARTUP, 1, JobPhase.ACTIVE)],
        None,
        NodeState.STARTING_UP,
        ExerciseOutcome.RUNNING,
        id="booting-job-adopted",
    ),
    pytest.param(
        _exercised(NodeState.STARTING_UP).status,
        [_job(OperationKind.STARTUP, 1, JobPhase.SUCCEEDED)],
        KubeNodeObservation(ready=True, provider_id="homelab://homelab/m1", snapshot=SNAPSHOT),
        NodeState.SHUTTING_DOWN,
        ExerciseOutcome.RUNNING,
        id="came-up-while-down-checked-and-powered-off",
    ),
    pytest.param(
        _exercised(NodeState.SHUTTING_DOWN).status,
        [_job(OperationKind.SHUTDOWN, 2, JobPhase.SUCCEEDED)],
        None,
        NodeState.SHUTDOWN,
        ExerciseOutcome.SUCCEEDED,
        id="went-off-while-down",
    ),
    pytest.param(
        _exercised(NodeState.STARTING_UP).status,
        [_job(OperationKind.STARTUP, 1, JobPhase.FAILED)],
        None,
        NodeState.SHUTDOWN,
        ExerciseOutcome.FAILED,
        id="boot-failed-while-down",
    ),
]


@pytest.mark.parametrize(("status", "jobs", "kube_node", "state", "outcome"), RESTARTS)
def test_a_restart_in_the_middle_of_an_exercise_carries_on_from_the_status(
    status: NodeStatus,
    jobs: list[JobObservation],
    kube_node: KubeNodeObservation | None,
    state: NodeState,
    outcome: ExerciseOutcome,
) -> None:
    result = derive(status, CONFIG, jobs, kube_node, NOW)
    assert result.machine.status.state is state
    record = result.machine.status.last_exercise
    assert record is not None
    assert record.outcome is outcome
    created = [effect for effect in result.effects if isinstance(effect, fx.CreateJob)]
    assert all(effect.kind is OperationKind.SHUTDOWN for effect in created)  # never a second exercise boot


# --- the group: hidden from CA, first choice for a scale-up ------------------------------------------------------


def _view(name: str, state: NodeState = NodeState.SHUTDOWN, off_days: float = 8, **fields: object) -> MachineView:
    values: dict[str, object] = {"since": NOW - timedelta(days=off_days)}
    return MachineView(name=name, state=state, provider_id=f"homelab://homelab/{name}", **(values | fields))


EXERCISED = _view("m1", NodeState.STARTING_UP, exercising=True, operation_started=NOW)
SPEC = GroupSpec(max_size=3, exercise=Exercise())


def test_an_exercised_machine_is_invisible_to_ca() -> None:
    views = [EXERCISED, _view("m2", NodeState.READY)]
    assert target_size(views) == 1
    assert instance_status(EXERCISED) is None
    with pytest.raises(DeleteRefused, match="being exercised"):
        check_delete(EXERCISED)
    with pytest.raises(CannotDecrease):
        choose_boots_to_cancel(views, 1)


def test_a_scale_up_takes_the_exercised_machine_first() -> None:
    views = [_view("m0", priority=10), EXERCISED, _view("m2")]
    assert choose_for_scale_up(views, 1, SPEC, NOW) == ("m1",)
    powering_off = replace(EXERCISED, state=NodeState.SHUTTING_DOWN)  # its shutdown Job runs
    assert choose_for_scale_up([_view("m0", priority=10), powering_off], 1, SPEC, NOW) == ("m0",)
    draining = replace(EXERCISED, state=NodeState.SHUTTING_DOWN, operation_started=None)
    assert choose_for_scale_up([_view("m0", priority=10), draining], 1, SPEC, NOW) == ("m1",)


def test_the_view_of_a_machine_follows_its_status() -> None:
    machine = _exercised(NodeState.STARTING_UP)
    assert machine_view(machine).exercising
    assert not machine_view(_off_for(8)).exercising


SATURDAY_NIGHT = ExerciseWindow(days=(Weekday.SAT,), start="02:00", end="06:00")
CHOICES = [
    pytest.param(SPEC, [_view("m1", off_days=8), _view("m2", off_days=9)], NOW, "m2", id="the-longest-off"),
    pytest.param(SPEC, [_view("m1", off_days=6)], NOW, None, id="not-due-yet"),
    pytest.param(SPEC, [EXERCISED, _view("m2", off_days=9)], NOW, None, id="one-at-a-time"),
    pytest.param(
        SPEC, [_view("m1", power_policy=PowerPolicy.OFF), _view("m2", state=NodeState.QUARANTINED)], NOW, None,
        id="only-auto-machines-that-are-off",
    ),
    pytest.param(
        SPEC, [_view("m1", cooldown_until=NOW + timedelta(minutes=5))], NOW, None, id="not-while-cooling-down"
    ),
    pytest.param(
        GroupSpec(max_size=3, max_concurrent_boots=1, exercise=Exercise()),
        [_view("m1"), _view("m2", NodeState.STARTING_UP, operation_started=NOW)],
        NOW,
        None,
        id="no-free-boot-slot",
    ),
    pytest.param(
        SPEC.model_copy(update={"exercise": Exercise(window=SATURDAY_NIGHT)}), [_view("m1")], NOW, "m1",
        id="inside-the-window",
    ),
    pytest.param(
        SPEC.model_copy(update={"exercise": Exercise(window=SATURDAY_NIGHT)}),
        [_view("m1")],
        NOW + timedelta(hours=4),
        None,
        id="outside-the-window",
    ),
    pytest.param(GroupSpec(max_size=3), [_view("m1", off_days=30)], NOW, None, id="not-configured"),
]


@pytest.mark.parametrize(("spec", "views", "now", "chosen"), CHOICES)
def test_which_machine_is_exercised(
    spec: GroupSpec, views: list[MachineView], now: datetime, chosen: str | None
) -> None:
    assert choose_for_exercise(views, spec, now) == chosen


LOOKS = [
    pytest.param(SPEC, [_view("m1", off_days=6)], NOW + timedelta(days=1), id="when-the-first-becomes-due"),
    pytest.param(
        SPEC.model_copy(update={"exercise": Exercise(window=SATURDAY_NIGHT)}),
        [_view("m1", off_days=6)],
        datetime(2026, 3, 14, 2, 0, tzinfo=UTC),
        id="due-outside-the-window-waits-for-its-opening",
    ),
    pytest.param(
        SPEC.model_copy(update={"exercise": Exercise(window=SATURDAY_NIGHT)}),
        [_view("m1", off_days=6.99)],
        NOW + timedelta(days=0.01),
        id="due-inside-the-window",
    ),
    pytest.param(SPEC, [EXERCISED, _view("m2", off_days=1)], None, id="one-running-its-end-is-a-report"),
    pytest.param(SPEC, [_view("m1", NodeState.READY)], None, id="nothing-off"),
]


@pytest.mark.parametrize(("spec", "views", "expected"), LOOKS)
def test_when_the_group_looks_again(spec: GroupSpec, views: list[MachineView], expected: datetime | None) -> None:
    assert next_look(views, spec, NOW) == expected
