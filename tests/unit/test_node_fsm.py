"""The node power machine: every (state, event) cell, then the behaviours a user would notice."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from actors.fsm import effects as fx
from actors.fsm import events as ev
from actors.fsm.errors import InvalidTransition
from actors.fsm.node import (
    IGNORE,
    TRANSITIONS,
    KubeNodePresence,
    Machine,
    MachineConfig,
    Rule,
    Transition,
    cooldown_seconds,
    job_name,
    pending_timers,
    step,
)
from actors.power_port import PowerAction
from schemas.common import ConditionStatus, Metadata
from schemas.group import FailurePolicy, GroupSpec, PowerOffNodePolicy
from schemas.labels import CONDITION_WRITE_FAILED
from schemas.node import (
    JobTemplate,
    Node,
    NodeSnapshot,
    NodeSpec,
    NodeState,
    NodeStatus,
    Operation,
    OperationKind,
    PowerPolicy,
)
from schemas.power import DriverName, PowerState

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = MachineConfig(namespace="homelab", name="m1", group="workers", kubernetes_node_name="m1")
SNAPSHOT = NodeSnapshot(labels={"kubernetes.io/hostname": "m1"}, capacity={"cpu": "8", "pods": "110"})
READY = ev.NodeReady(provider_id="homelab://homelab/m1", snapshot=SNAPSHOT)


def _operation(kind: OperationKind, attempt: int, started: datetime = NOW - timedelta(seconds=60)) -> Operation:
    return Operation(kind=kind, attempt=attempt, job_name=job_name("m1", kind, attempt), started=started)


def machine_in(state: NodeState, **status: object) -> Machine:
    """A typical machine in `state` (the one each row of the cell table starts from)."""
    since = NOW - timedelta(minutes=10)
    config, presence = CONFIG, KubeNodePresence.ABSENT
    fields: dict[str, object] = {"state": state, "since": since}
    if state is NodeState.STARTING_UP:
        fields |= {"operation": _operation(OperationKind.STARTUP, 1), "attempts": 1, "operation_tries": 1}
    elif state is NodeState.READY:
        fields |= {"attempts": 1, "provider_id": "homelab://homelab/m1", "last_ready": SNAPSHOT}
        presence = KubeNodePresence.READY
    elif state is NodeState.SHUTTING_DOWN:
        fields |= {"operation": _operation(OperationKind.SHUTDOWN, 2), "attempts": 2, "operation_tries": 1}
        presence = KubeNodePresence.READY
    elif state is NodeState.BOOT_FAILED:
        fields |= {"attempts": 1, "consecutive_failures": 1, "cooldown_until": NOW + timedelta(seconds=30)}
    elif state is NodeState.QUARANTINED:
        fields |= {"attempts": 3, "consecutive_failures": 3, "cooldown_until": NOW - timedelta(minutes=1)}
    elif state is NodeState.MAINTENANCE:
        config, presence = replace(CONFIG, power_policy=PowerPolicy.MAINTENANCE), KubeNodePresence.READY
    fields |= status
    return Machine(config=config, status=NodeStatus.model_validate(fields), kube_node=presence)


def _current_job(machine: Machine) -> tuple[OperationKind, str]:
    operation = machine.status.operation
    return (operation.kind, operation.job_name) if operation else (OperationKind.STARTUP, "m1-startup-99")


def _timer(machine: Machine) -> tuple[ev.Event, datetime]:
    timers = pending_timers(machine)
    if not timers:
        return ev.TimerFired(ev.TimerKind.BOOT_TIMEOUT, "no-such-timer"), NOW
    return ev.TimerFired(timers[0].kind, timers[0].token), timers[0].deadline


EVENT_FOR: dict[type[ev.Event], Callable[[Machine], tuple[ev.Event, datetime]]] = {
    ev.PowerOnRequested: lambda m: (ev.PowerOnRequested(start_now=True), NOW),
    ev.BootSlotGranted: lambda m: (ev.BootSlotGranted(), NOW),
    ev.PowerOffRequested: lambda m: (ev.PowerOffRequested(drain=False), NOW),
    ev.CancelBoot: lambda m: (ev.CancelBoot(), NOW),
    ev.JobSucceeded: lambda m: (ev.JobSucceeded(*_current_job(m)), NOW),
    ev.JobFailed: lambda m: (ev.JobFailed(*_current_job(m), message="BMC unreachable"), NOW),
    ev.DrainFinished: lambda m: (ev.DrainFinished(succeeded=True), NOW),
    ev.NodeReady: lambda m: (READY, NOW),
    ev.NodeNotReady: lambda m: (ev.NodeNotReady(), NOW),
    ev.NodeGone: lambda m: (ev.NodeGone(), NOW),
    ev.TimerFired: _timer,
    ev.PolicyChanged: lambda m: (ev.PolicyChanged(m.config.power_policy), NOW),
    ev.ResetRequested: lambda m: (ev.ResetRequested("first-reset"), NOW),
    ev.ConfigChanged: lambda m: (ev.ConfigChanged(replace(m.config, boot_timeout_seconds=900)), NOW),
    ev.WriteFailed: lambda m: (ev.WriteFailed("Cordon", 'nodes "m1" is forbidden', permanent=True), NOW),
    ev.PowerCommandSucceeded: lambda m: (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 1, DriverName.IPMI), NOW),
    ev.PowerCommandFailed: lambda m: (
        ev.PowerCommandFailed(PowerAction.POWER_OFF, 2, DriverName.IPMI, "CredentialsRejected"),
        NOW,
    ),
    ev.PowerStateObserved: lambda m: (ev.PowerStateObserved(PowerState.OFF, DriverName.IPMI), NOW),
    ev.PowerReadbackFailed: lambda m: (ev.PowerReadbackFailed("TimedOut", "no answer", DriverName.IPMI), NOW),
}

IGNORED = "ignored"
ILLEGAL = "illegal"
REFUSED = "refused"
"""A legal cell whose rule refuses the typical machine of its state (it acts only on some, e.g. an exercised one)."""
# One row per state: the outcome of each event type, in the order of EVENT_FOR.
CELLS: dict[NodeState, tuple[NodeState | str, ...]] = {
    #                 PowerOn         BootSlot        PowerOff          Cancel           JobSucceeded
    #                 JobFailed       Drain           NodeReady         NodeNotReady     NodeGone
    #                 TimerFired      PolicyChanged   ResetRequested    ConfigChanged    WriteFailed
    #                 PowerCommandSucceeded  PowerCommandFailed  PowerStateObserved  PowerReadbackFailed
    # (these machines are powered by Jobs, so a power command's outcome is never theirs: it changes nothing)
    NodeState.SHUTDOWN: (
        *(NodeState.STARTING_UP, IGNORED, IGNORED, ILLEGAL, IGNORED),
        *(IGNORED, IGNORED, NodeState.READY, NodeState.SHUTDOWN, NodeState.SHUTDOWN),
        *(NodeState.SHUTDOWN, NodeState.SHUTDOWN, NodeState.SHUTDOWN, NodeState.SHUTDOWN),
        NodeState.SHUTDOWN,
        *(IGNORED, IGNORED, NodeState.SHUTDOWN, NodeState.SHUTDOWN),
    ),
    NodeState.STARTING_UP: (
        *(NodeState.STARTING_UP, NodeState.STARTING_UP, NodeState.SHUTDOWN, NodeState.SHUTDOWN, NodeState.STARTING_UP),
        *(NodeState.BOOT_FAILED, IGNORED, NodeState.READY, NodeState.STARTING_UP, NodeState.STARTING_UP),
        *(NodeState.BOOT_FAILED, NodeState.STARTING_UP, NodeState.STARTING_UP, NodeState.STARTING_UP),
        NodeState.STARTING_UP,
        *(NodeState.STARTING_UP, NodeState.STARTING_UP, NodeState.STARTING_UP, NodeState.STARTING_UP),
    ),
    NodeState.READY: (
        *(NodeState.READY, IGNORED, NodeState.SHUTTING_DOWN, ILLEGAL, IGNORED),
        *(IGNORED, IGNORED, NodeState.READY, NodeState.READY, NodeState.SHUTDOWN),
        *(NodeState.READY, NodeState.READY, NodeState.READY, NodeState.READY),
        NodeState.READY,
        *(IGNORED, IGNORED, NodeState.READY, NodeState.READY),
    ),
    NodeState.SHUTTING_DOWN: (
        *(REFUSED, IGNORED, IGNORED, ILLEGAL, NodeState.SHUTTING_DOWN),
        *(
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
        ),
        *(NodeState.SHUTTING_DOWN, NodeState.SHUTTING_DOWN, NodeState.SHUTTING_DOWN, NodeState.SHUTTING_DOWN),
        NodeState.SHUTTING_DOWN,
        *(
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
            NodeState.SHUTTING_DOWN,
        ),
    ),
    NodeState.BOOT_FAILED: (
        *(ILLEGAL, IGNORED, NodeState.SHUTDOWN, NodeState.SHUTDOWN, IGNORED),
        *(IGNORED, IGNORED, NodeState.READY, NodeState.BOOT_FAILED, NodeState.BOOT_FAILED),
        *(NodeState.BOOT_FAILED, NodeState.BOOT_FAILED, NodeState.BOOT_FAILED, NodeState.BOOT_FAILED),
        NodeState.BOOT_FAILED,
        *(IGNORED, IGNORED, NodeState.BOOT_FAILED, NodeState.BOOT_FAILED),
    ),
    NodeState.QUARANTINED: (
        *(ILLEGAL, IGNORED, IGNORED, ILLEGAL, IGNORED),
        *(IGNORED, IGNORED, NodeState.READY, NodeState.QUARANTINED, NodeState.QUARANTINED),
        *(NodeState.QUARANTINED, NodeState.QUARANTINED, NodeState.SHUTDOWN, NodeState.QUARANTINED),
        NodeState.QUARANTINED,
        *(IGNORED, IGNORED, NodeState.QUARANTINED, NodeState.QUARANTINED),
    ),
    NodeState.MAINTENANCE: (
        *(ILLEGAL, IGNORED, ILLEGAL, ILLEGAL, NodeState.MAINTENANCE),
        *(NodeState.MAINTENANCE, IGNORED, NodeState.MAINTENANCE, NodeState.MAINTENANCE, NodeState.MAINTENANCE),
        *(IGNORED, NodeState.MAINTENANCE, NodeState.MAINTENANCE, NodeState.MAINTENANCE),
        NodeState.MAINTENANCE,
        *(NodeState.MAINTENANCE, NodeState.MAINTENANCE, NodeState.MAINTENANCE, NodeState.MAINTENANCE),
    ),
}

CELL_CASES = [
    pytest.param(state, event_type, outcome, id=f"{state.value}-{event_type.__name__}")
    for state, outcomes in CELLS.items()
    for event_type, outcome in zip(EVENT_FOR, outcomes, strict=True)
]


def test_the_cell_table_covers_every_state_and_event() -> None:
    covered = {(case.values[0], case.values[1]) for case in CELL_CASES}
    assert covered == {(state, event) for state in NodeState for event in ev.EVENT_TYPES}


@pytest.mark.parametrize(("state", "event_type", "outcome"), CELL_CASES)
def test_every_cell(state: NodeState, event_type: type[ev.Event], outcome: NodeState | str) -> None:
    machine = machine_in(state)
    event, now = EVENT_FOR[event_type](machine)
    cell = TRANSITIONS.get((state, event_type))
    if outcome in (ILLEGAL, REFUSED):
        assert (cell is None) is (outcome == ILLEGAL)
        with pytest.raises(InvalidTransition) as raised:
            step(machine, event, now)
        assert state.value in str(raised.value)
        assert event_type.__name__ in str(raised.value)
        assert machine == machine_in(state)  # untouched
        return
    result = step(machine, event, now)
    if outcome == IGNORED:
        assert cell is IGNORE
        assert result == Transition(machine)
        return
    assert isinstance(cell, Rule)
    assert result.machine.status.state is outcome
    assert outcome in cell.targets


# --------------------------------------------------------------------------------------------------
# Booting


def _types(transition: Transition) -> list[type[fx.Effect]]:
    return [type(effect) for effect in transition.effects]


def _events(transition: Transition) -> list[tuple[fx.EventType, str]]:
    return [(e.type, e.reason) for e in transition.effects if isinstance(e, fx.RecordEvent)]


def _condition(machine: Machine, type_: str) -> ConditionStatus | None:
    return next((c.status for c in machine.status.conditions if c.type == type_), None)


def test_power_on_creates_the_startup_job_with_a_boot_timeout() -> None:
    result = step(machine_in(NodeState.SHUTDOWN, attempts=4), ev.PowerOnRequested(start_now=True), NOW)
    status = result.machine.status
    assert status.state is NodeState.STARTING_UP
    assert status.attempts == 5
    assert status.operation == Operation(kind=OperationKind.STARTUP, attempt=5, job_name="m1-startup-5", started=NOW)
    # Write-ahead: the command is stored before its Job is created, so a restart in between creates the Job.
    assert result.effects[:2] == (fx.PatchStatus(status), fx.CreateJob(OperationKind.STARTUP, 5, "m1-startup-5"))
    assert fx.StartTimer(ev.TimerKind.BOOT_TIMEOUT, "m1-startup-5:boot-timeout", 600.0) in result.effects


def test_a_queued_power_on_waits_for_its_boot_slot() -> None:
    queued = step(machine_in(NodeState.SHUTDOWN), ev.PowerOnRequested(start_now=False), NOW)
    assert queued.machine.status.state is NodeState.STARTING_UP
    assert queued.machine.status.operation is None
    assert fx.CreateJob not in _types(queued)
    assert pending_timers(queued.machine) == ()

    granted = step(queued.machine, ev.BootSlotGranted(), NOW + timedelta(seconds=5))
    assert fx.CreateJob(OperationKind.STARTUP, 1, "m1-startup-1") in granted.effects
    again = step(granted.machine, ev.BootSlotGranted(), NOW + timedelta(seconds=6))
    assert fx.CreateJob not in _types(again)


@pytest.mark.parametrize(
    ("machine", "why"),
    [
        pytest.param(
            machine_in(NodeState.SHUTDOWN, consecutive_failures=2, cooldown_until=NOW + timedelta(seconds=45)),
            re.escape("in cooldown until 12:00:45 UTC (in 45s) after 2 failed boot(s)"),
            id="cooling-down",
        ),
        pytest.param(
            replace(machine_in(NodeState.SHUTDOWN), config=replace(CONFIG, power_policy=PowerPolicy.OFF)),
            "powerPolicy is Off",
            id="policy-off",
        ),
        pytest.param(machine_in(NodeState.QUARANTINED), "quarantined", id="quarantined"),
        pytest.param(machine_in(NodeState.MAINTENANCE), "in maintenance", id="maintenance"),
        pytest.param(machine_in(NodeState.BOOT_FAILED), "not released it yet", id="boot-failed"),
    ],
)
def test_power_on_is_refused_with_the_reason(machine: Machine, why: str) -> None:
    with pytest.raises(InvalidTransition, match=why):
        step(machine, ev.PowerOnRequested(start_now=True), NOW)


_NODE_WRITES = (fx.Uncordon, fx.RemoveAutoscalerTaints, fx.ApplyManagedLabelsAndTaints, fx.SetProviderID)


def test_booted_makes_the_node_usable_and_forgets_failures() -> None:
    booting = machine_in(NodeState.STARTING_UP, consecutive_failures=2, cooldown_until=NOW - timedelta(minutes=1))
    result = step(booting, ev.NodeReady(provider_id=None, snapshot=SNAPSHOT), NOW)
    status = result.machine.status
    assert status.state is NodeState.READY
    assert (status.consecutive_failures, status.cooldown_until) == (0, None)
    assert status.provider_id == "homelab://homelab/m1"
    assert status.last_ready == SNAPSHOT.model_copy(update={"seen_at": NOW})
    assert _condition(result.machine, "Ready") is ConditionStatus.TRUE
    node_writes = [effect for effect in result.effects if isinstance(effect, _NODE_WRITES)]
    # The stamp goes last: CA counts the member as registered once its providerID matches, and by then the Node
    # must carry the Group's labels and taints, or CA finds no room on it and scales up again.
    assert node_writes == [
        fx.Uncordon(), fx.RemoveAutoscalerTaints(), fx.ApplyManagedLabelsAndTaints(), fx.SetProviderID("homelab://homelab/m1")
    ]
    assert fx.CancelTimer("m1-startup-1:boot-timeout") in result.effects
    assert fx.DeleteJob("m1-startup-1") in result.effects  # still running: never two Jobs at once
    assert (fx.EventType.NORMAL, "Booted") in _events(result)


@pytest.mark.parametrize(
    ("node_provider_id", "spec_provider_id", "recorded", "stamped"),
    [
        pytest.param("pxe://rack1/m1", None, "pxe://rack1/m1", None, id="kubelet-set-it"),
        pytest.param(None, "ipmi://10.0.0.7", "ipmi://10.0.0.7", "ipmi://10.0.0.7", id="spec-override"),
        pytest.param(None, None, "homelab://homelab/m1", "homelab://homelab/m1", id="default"),
    ],
)
def test_provider_id_is_learned_or_stamped(
    node_provider_id: str | None, spec_provider_id: str | None, recorded: str, stamped: str | None
) -> None:
    booting = replace(machine_in(NodeState.STARTING_UP), config=replace(CONFIG, provider_id=spec_provider_id))
    result = step(booting, ev.NodeReady(provider_id=node_provider_id, snapshot=SNAPSHOT), NOW)
    assert result.machine.status.provider_id == recorded
    set_ids = [e.provider_id for e in result.effects if isinstance(e, fx.SetProviderID)]
    assert set_ids == ([stamped] if stamped else [])


def test_a_succeeded_startup_job_waits_for_the_node_and_is_not_deleted() -> None:
    booting = machine_in(NodeState.STARTING_UP)
    waited = step(booting, ev.JobSucceeded(OperationKind.STARTUP, "m1-startup-1"), NOW)
    assert waited.machine.status.state is NodeState.STARTING_UP
    assert "waiting for the Kubernetes Node" in waited.machine.status.message
    ready = step(waited.machine, READY, NOW + timedelta(seconds=30))
    assert fx.DeleteJob not in _types(ready)


@pytest.mark.parametrize(
    ("failures", "seconds"), [(1, 30), (2, 60), (3, 120), (4, 240), (6, 960), (7, 1800), (60, 1800)]
)
def test_cooldown_doubles_up_to_the_cap(failures: int, seconds: float) -> None:
    assert cooldown_seconds(CONFIG, failures) == seconds


@pytest.mark.parametrize(
    ("event", "at", "reason"),
    [
        pytest.param(
            ev.JobFailed(OperationKind.STARTUP, "m1-startup-1", "no WoL reply"), NOW, "BootJobFailed", id="job-failed"
        ),
        pytest.param(
            ev.TimerFired(ev.TimerKind.BOOT_TIMEOUT, "m1-startup-1:boot-timeout"),
            NOW + timedelta(seconds=540),
            "BootTimedOut",
            id="timed-out",
        ),
    ],
)
def test_a_failed_boot_cools_down_and_is_reported(event: ev.Event, at: datetime, reason: str) -> None:
    booting = machine_in(NodeState.STARTING_UP, consecutive_failures=1)
    result = step(booting, event, at)
    status = result.machine.status
    assert status.state is NodeState.BOOT_FAILED
    assert status.reason == reason
    assert status.consecutive_failures == 2
    assert status.cooldown_until == at + timedelta(seconds=60)
    assert _condition(result.machine, "OperationFailed") is ConditionStatus.TRUE
    assert (fx.EventType.WARNING, reason) in _events(result)
    # A failed Job is kept for its logs; a Job still running at the timeout is deleted.
    assert (fx.DeleteJob("m1-startup-1") in result.effects) is (reason == "BootTimedOut")


def _fail_boot(machine: Machine, now: datetime) -> Machine:
    booting = step(machine, ev.PowerOnRequested(start_now=True), now).machine
    operation = booting.status.operation
    assert operation is not None
    return step(booting, ev.JobFailed(OperationKind.STARTUP, operation.job_name, "no reply"), now).machine


def test_quarantine_after_repeated_failed_boots() -> None:
    machine, now = machine_in(NodeState.SHUTDOWN), NOW
    for _ in range(2):
        machine = step(_fail_boot(machine, now), ev.PowerOffRequested(), now).machine
        assert machine.status.state is NodeState.SHUTDOWN
        now = machine.status.cooldown_until or now
    failed = _fail_boot(machine, now)
    released = step(failed, ev.PowerOffRequested(), now)
    assert released.machine.status.state is NodeState.QUARANTINED
    assert _condition(released.machine, "Quarantined") is ConditionStatus.TRUE
    assert (fx.EventType.WARNING, "Quarantined") in _events(released)
    assert released.machine.status.operation is None
    with pytest.raises(InvalidTransition, match=re.escape("set the annotation infra.homecluster.dev/reset")):
        step(released.machine, ev.PowerOnRequested(), now + timedelta(days=1))


def test_cancelling_a_boot_counts_no_failure() -> None:
    result = step(machine_in(NodeState.STARTING_UP), ev.CancelBoot(), NOW)
    assert result.machine.status.state is NodeState.SHUTDOWN
    assert result.machine.status.consecutive_failures == 0
    assert fx.DeleteJob("m1-startup-1") in result.effects
    assert fx.CancelTimer("m1-startup-1:boot-timeout") in result.effects


@pytest.mark.parametrize(
    ("failures_before", "state", "reason"),
    [
        pytest.param(0, NodeState.SHUTDOWN, "CoolingDown", id="first-give-up-cools-down"),
        pytest.param(2, NodeState.QUARANTINED, "Quarantined", id="third-in-a-row-quarantines"),
    ],
)
def test_a_boot_ca_gave_up_on_is_a_failed_boot_released_to_its_cooldown(
    failures_before: int, state: NodeState, reason: str
) -> None:
    # With the real CA: counted as a plain cancel, the same machine was booted again at once under the same instance
    # id, which CA deleted again at once, a power Job every few hundred milliseconds.
    booting = machine_in(NodeState.STARTING_UP, consecutive_failures=failures_before)

    result = step(booting, ev.CancelBoot(given_up=True), NOW)

    status = result.machine.status
    assert (status.state, status.reason) == (state, reason)
    assert status.consecutive_failures == failures_before + 1
    assert status.cooldown_until is not None
    assert status.cooldown_until > NOW
    assert fx.DeleteJob("m1-startup-1") in result.effects
    assert (fx.EventType.WARNING, "BootGivenUp") in _events(result)
    with pytest.raises(InvalidTransition, match=r"cooldown|quarantined"):
        step(result.machine, ev.PowerOnRequested(), NOW + timedelta(seconds=1))


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(ev.JobSucceeded(OperationKind.STARTUP, "m1-startup-0"), id="old-job-succeeded"),
        pytest.param(ev.JobFailed(OperationKind.STARTUP, "m1-startup-0", "late"), id="old-job-failed"),
        pytest.param(ev.JobSucceeded(OperationKind.SHUTDOWN, "m1-startup-1"), id="wrong-kind"),
        pytest.param(ev.TimerFired(ev.TimerKind.BOOT_TIMEOUT, "m1-startup-0:boot-timeout"), id="old-timer"),
    ],
)
def test_stale_job_and_timer_events_are_ignored(event: ev.Event) -> None:
    booting = machine_in(NodeState.STARTING_UP)
    result = step(booting, event, NOW + timedelta(hours=1))
    assert result == Transition(booting)


def test_an_early_timer_is_rearmed_for_the_rest() -> None:
    booting = machine_in(NodeState.STARTING_UP)  # started 60 s ago, 600 s timeout
    result = step(booting, ev.TimerFired(ev.TimerKind.BOOT_TIMEOUT, "m1-startup-1:boot-timeout"), NOW)
    assert result.machine == booting
    assert result.effects == (fx.StartTimer(ev.TimerKind.BOOT_TIMEOUT, "m1-startup-1:boot-timeout", 540.0),)


# --------------------------------------------------------------------------------------------------
# Powering off


def test_power_off_without_drain_starts_the_shutdown_job() -> None:
    result = step(machine_in(NodeState.READY), ev.PowerOffRequested(drain=False), NOW)
    assert result.machine.status.state is NodeState.SHUTTING_DOWN
    assert _types(result)[:3] == [fx.PatchStatus, fx.Cordon, fx.CreateJob]
    assert fx.CreateJob(OperationKind.SHUTDOWN, 2, "m1-shutdown-2") in result.effects


def test_power_off_with_drain_waits_for_the_drain() -> None:
    draining = step(machine_in(NodeState.READY), ev.PowerOffRequested(drain=True), NOW)
    assert _types(draining)[:3] == [fx.PatchStatus, fx.Cordon, fx.Drain]
    assert fx.CreateJob not in _types(draining)
    drained = step(draining.machine, ev.DrainFinished(succeeded=True), NOW + timedelta(seconds=20))
    assert fx.CreateJob(OperationKind.SHUTDOWN, 2, "m1-shutdown-2") in drained.effects


def test_a_failed_drain_returns_to_ready_uncordoned() -> None:
    draining = step(machine_in(NodeState.READY), ev.PowerOffRequested(drain=True), NOW).machine
    result = step(draining, ev.DrainFinished(succeeded=False, message="PDB blocks eviction"), NOW)
    assert result.machine.status.state is NodeState.READY
    assert fx.Uncordon() in result.effects
    assert (fx.EventType.WARNING, "DrainFailed") in _events(result)


@pytest.mark.parametrize(
    ("policy", "why"),
    [(PowerPolicy.ON, "kept on by powerPolicy On")],
)
def test_power_off_is_refused_for_machines_kept_on(policy: PowerPolicy, why: str) -> None:
    machine = replace(machine_in(NodeState.READY), config=replace(CONFIG, power_policy=policy))
    with pytest.raises(InvalidTransition, match=why):
        step(machine, ev.PowerOffRequested(), NOW)


@pytest.mark.parametrize(
    ("node_policy", "node_after_job", "state", "deletes_node"),
    [
        pytest.param(PowerOffNodePolicy.DELETE, ev.NodeNotReady(), NodeState.SHUTDOWN, True, id="delete-notready"),
        pytest.param(PowerOffNodePolicy.KEEP, ev.NodeNotReady(), NodeState.SHUTDOWN, False, id="keep-notready"),
        pytest.param(PowerOffNodePolicy.DELETE, ev.NodeGone(), NodeState.SHUTDOWN, False, id="already-gone"),
    ],
)
def test_shutdown_completes_once_the_node_goes_away(
    node_policy: PowerOffNodePolicy, node_after_job: ev.Event, state: NodeState, deletes_node: bool
) -> None:
    stopping = replace(machine_in(NodeState.SHUTTING_DOWN), config=replace(CONFIG, power_off_node_policy=node_policy))
    waited = step(stopping, ev.JobSucceeded(OperationKind.SHUTDOWN, "m1-shutdown-2"), NOW)
    assert waited.machine.status.state is NodeState.SHUTTING_DOWN  # Node still Ready: wait
    done = step(waited.machine, node_after_job, NOW + timedelta(seconds=40))
    assert done.machine.status.state is state
    assert (fx.DeleteKubeNode() in done.effects) is deletes_node
    assert fx.CancelTimer("m1-shutdown-2:shutdown-timeout") in done.effects


def test_shutdown_is_retried_then_the_machine_returns_to_ready_uncordoned() -> None:
    machine = machine_in(NodeState.SHUTTING_DOWN)  # shutdown_retries = 2: three tries in all
    names = []
    now = NOW
    for _ in range(2):
        operation = machine.status.operation
        assert operation is not None
        names.append(operation.job_name)
        result = step(machine, ev.JobFailed(OperationKind.SHUTDOWN, operation.job_name, "ipmitool: timeout"), now)
        assert result.machine.status.state is NodeState.SHUTTING_DOWN
        assert (fx.EventType.WARNING, "ShutdownRetry") in _events(result)
        machine, now = result.machine, now + timedelta(minutes=1)
    operation = machine.status.operation
    assert operation is not None
    names.append(operation.job_name)
    timers = pending_timers(machine)
    gave_up = step(machine, ev.TimerFired(timers[0].kind, timers[0].token), timers[0].deadline)
    assert names == ["m1-shutdown-2", "m1-shutdown-3", "m1-shutdown-4"]
    assert gave_up.machine.status.state is NodeState.READY
    assert fx.Uncordon() in gave_up.effects
    assert fx.RemoveAutoscalerTaints() in gave_up.effects  # else CA's taint keeps it unschedulable
    assert fx.DeleteJob("m1-shutdown-4") in gave_up.effects  # timed out: still running
    assert _condition(gave_up.machine, "OperationFailed") is ConditionStatus.TRUE
    assert (fx.EventType.WARNING, "ShutdownFailed") in _events(gave_up)


def test_a_shutdown_given_up_with_the_node_gone_counts_as_off() -> None:
    machine = machine_in(NodeState.SHUTTING_DOWN, operation_tries=3)
    machine = replace(machine, kube_node=KubeNodePresence.ABSENT)
    result = step(machine, ev.JobFailed(OperationKind.SHUTDOWN, "m1-shutdown-2", "exit 1"), NOW)
    assert result.machine.status.state is NodeState.SHUTDOWN
    assert (fx.EventType.WARNING, "ShutdownUnconfirmed") in _events(result)


def test_a_succeeded_shutdown_job_with_the_node_still_ready_times_out_like_a_failure() -> None:
    waited = step(machine_in(NodeState.SHUTTING_DOWN), ev.JobSucceeded(OperationKind.SHUTDOWN, "m1-shutdown-2"), NOW)
    timer = pending_timers(waited.machine)[0]
    result = step(waited.machine, ev.TimerFired(timer.kind, timer.token), timer.deadline)
    assert result.machine.status.state is NodeState.SHUTTING_DOWN
    assert fx.CreateJob(OperationKind.SHUTDOWN, 3, "m1-shutdown-3") in result.effects
    assert fx.DeleteJob not in _types(result)  # the succeeded Job is kept
    assert "still Ready" in result.machine.status.message


# --------------------------------------------------------------------------------------------------
# Machines that change by themselves


def test_unready_grace_then_powered_off() -> None:
    ready = machine_in(NodeState.READY)
    blip = step(ready, ev.NodeNotReady(), NOW)
    first = pending_timers(blip.machine)[0]
    assert fx.StartTimer(ev.TimerKind.UNREADY_GRACE, first.token, 120.0) in blip.effects
    recovered = step(blip.machine, READY, NOW + timedelta(seconds=30))
    assert fx.CancelTimer(first.token) in recovered.effects
    again = step(recovered.machine, ev.NodeNotReady(), NOW + timedelta(seconds=60)).machine
    second = pending_timers(again)[0]
    assert second.token != first.token
    assert step(again, ev.TimerFired(first.kind, first.token), first.deadline) == Transition(again)
    dead = step(again, ev.TimerFired(second.kind, second.token), second.deadline)
    assert dead.machine.status.state is NodeState.SHUTDOWN
    assert fx.DeleteKubeNode() in dead.effects
    assert (fx.EventType.WARNING, "NodeUnready") in _events(dead)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        pytest.param(NodeState.SHUTDOWN, "StartedOutsideAutoscaler", id="from-shutdown"),
        pytest.param(NodeState.BOOT_FAILED, "StartedOutsideAutoscaler", id="from-boot-failed"),
        pytest.param(NodeState.QUARANTINED, "StartedOutsideAutoscaler", id="from-quarantined"),
    ],
)
def test_a_machine_started_by_hand_is_adopted(state: NodeState, reason: str) -> None:
    result = step(machine_in(state), READY, NOW)
    assert result.machine.status.state is NodeState.READY
    assert result.machine.status.reason == reason
    assert result.machine.status.consecutive_failures == 0
    assert fx.Uncordon() in result.effects


RELEASED_AT = NOW - timedelta(seconds=30)
"""A boot let go of 30 s before the Node registers, well inside the default bootTimeout of 600 s."""


@pytest.mark.parametrize(
    ("reason", "power_policy", "registered_after", "state_after", "reason_after"),
    [
        pytest.param("BootCancelled", PowerPolicy.AUTO, 30.0, NodeState.SHUTTING_DOWN, "Draining",
                     id="cancelled-boot-comes-up"),
        pytest.param("CoolingDown", PowerPolicy.AUTO, 30.0, NodeState.SHUTTING_DOWN, "Draining",
                     id="released-failed-boot-comes-up"),
        pytest.param("BootCancelled", PowerPolicy.OFF, 30.0, NodeState.SHUTTING_DOWN, "Draining",
                     id="cancelled-by-powerPolicy-Off-comes-up"),
        pytest.param("BootCancelled", PowerPolicy.AUTO, 600.0, NodeState.SHUTTING_DOWN, "Draining",
                     id="at-bootTimeout"),
        pytest.param("BootCancelled", PowerPolicy.AUTO, 601.0, NodeState.READY, "StartedOutsideAutoscaler",
                     id="after-bootTimeout-someone-powered-it-on"),
        pytest.param("BootCancelled", PowerPolicy.ON, 30.0, NodeState.READY, "StartedOutsideAutoscaler",
                     id="now-kept-on-by-powerPolicy-On"),
        pytest.param("StoppedOutsideAutoscaler", PowerPolicy.AUTO, 30.0, NodeState.READY,
                     "StartedOutsideAutoscaler", id="powered-off-by-hand-then-on-again"),
    ],
)
def test_a_boot_ca_let_go_of_that_comes_up_anyway_is_powered_off(
    reason: str, power_policy: PowerPolicy, registered_after: float, state_after: NodeState, reason_after: str
) -> None:
    released = replace(
        machine_in(NodeState.SHUTDOWN, reason=reason, since=RELEASED_AT, attempts=1),
        config=replace(CONFIG, power_policy=power_policy),
    )

    result = step(released, READY, RELEASED_AT + timedelta(seconds=registered_after))

    assert (result.machine.status.state, result.machine.status.reason) == (state_after, reason_after)
    if state_after is NodeState.SHUTTING_DOWN:
        # CA was told the instance is gone: power it off the way the operator powers off any Node it started.
        assert result.effects[:2] == (fx.Cordon(), fx.Drain())
        assert (fx.EventType.NORMAL, "ReleasedBootCameUp") in _events(result)
        assert result.machine.status.provider_id == "homelab://homelab/m1"
        assert fx.Uncordon() not in result.effects


def test_a_released_boot_that_registers_without_a_provider_id_gets_one_while_it_powers_off() -> None:
    released = machine_in(NodeState.SHUTDOWN, reason="BootCancelled", since=RELEASED_AT, attempts=1)

    result = step(released, ev.NodeReady(provider_id=None, snapshot=SNAPSHOT), NOW)

    assert result.machine.status.state is NodeState.SHUTTING_DOWN
    assert fx.SetProviderID("homelab://homelab/m1") in result.effects


def test_a_machine_stopped_by_hand_is_noticed() -> None:
    result = step(machine_in(NodeState.READY), ev.NodeGone(), NOW)
    assert result.machine.status.state is NodeState.SHUTDOWN
    assert result.machine.status.reason == "StoppedOutsideAutoscaler"
    assert result.machine.status.powered_on_seconds == 600.0


def test_ready_refreshes_the_snapshot_only_when_it_changed() -> None:
    ready = machine_in(NodeState.READY)
    assert step(ready, READY, NOW).effects == ()
    relabelled = SNAPSHOT.model_copy(update={"labels": {"kubernetes.io/hostname": "m1", "gpu": "true"}})
    result = step(ready, ev.NodeReady(provider_id="homelab://homelab/m1", snapshot=relabelled), NOW)
    assert result.machine.status.last_ready is not None
    assert result.machine.status.last_ready.labels["gpu"] == "true"
    assert isinstance(result.effects[-1], fx.PatchStatus)


# --------------------------------------------------------------------------------------------------
# Policy, reset, configuration


@pytest.mark.parametrize(
    ("start", "presence", "policy", "state", "expected"),
    [
        pytest.param(
            NodeState.READY, None, PowerPolicy.MAINTENANCE, NodeState.MAINTENANCE, [], id="ready-to-maintenance"
        ),
        pytest.param(
            NodeState.STARTING_UP,
            None,
            PowerPolicy.MAINTENANCE,
            NodeState.MAINTENANCE,
            [fx.CancelTimer("m1-startup-1:boot-timeout")],
            id="booting-to-maintenance-keeps-job",
        ),
        pytest.param(
            NodeState.MAINTENANCE,
            KubeNodePresence.READY,
            PowerPolicy.AUTO,
            NodeState.READY,
            [fx.Uncordon(), fx.RemoveAutoscalerTaints(), fx.ApplyManagedLabelsAndTaints()],
            id="maintenance-over-node-ready",
        ),
        pytest.param(
            NodeState.MAINTENANCE,
            KubeNodePresence.ABSENT,
            PowerPolicy.AUTO,
            NodeState.SHUTDOWN,
            [],
            id="maintenance-over-off",
        ),
        pytest.param(
            NodeState.MAINTENANCE,
            KubeNodePresence.READY,
            PowerPolicy.OFF,
            NodeState.SHUTTING_DOWN,
            [fx.Cordon(), fx.Drain()],
            id="maintenance-to-off-powers-off",
        ),
        pytest.param(
            NodeState.SHUTDOWN,
            None,
            PowerPolicy.ON,
            NodeState.STARTING_UP,
            [fx.CreateJob(OperationKind.STARTUP, 1, "m1-startup-1")],
            id="off-machine-to-on-boots",
        ),
        pytest.param(
            NodeState.READY, None, PowerPolicy.OFF, NodeState.SHUTTING_DOWN, [fx.Cordon(), fx.Drain()], id="on-to-off"
        ),
        pytest.param(
            NodeState.STARTING_UP,
            None,
            PowerPolicy.OFF,
            NodeState.SHUTDOWN,
            [fx.DeleteJob("m1-startup-1")],
            id="booting-to-off-cancels",
        ),
        pytest.param(
            NodeState.BOOT_FAILED, None, PowerPolicy.ON, NodeState.SHUTDOWN, [], id="failed-boot-to-on-released"
        ),
        pytest.param(NodeState.READY, None, PowerPolicy.ON, NodeState.READY, [], id="ready-to-on-nothing"),
        pytest.param(NodeState.QUARANTINED, None, PowerPolicy.ON, NodeState.QUARANTINED, [], id="quarantine-stays"),
    ],
)
def test_policy_changes(
    start: NodeState,
    presence: KubeNodePresence | None,
    policy: PowerPolicy,
    state: NodeState,
    expected: list[fx.Effect],
) -> None:
    machine = machine_in(start)
    if presence is not None:
        machine = replace(machine, kube_node=presence)
    result = step(machine, ev.PolicyChanged(policy), NOW)
    assert result.machine.status.state is state
    assert result.machine.config.power_policy is policy
    for effect in expected:
        assert effect in result.effects
    if start is not NodeState.MAINTENANCE and state is NodeState.MAINTENANCE:
        assert fx.DeleteJob not in _types(result)  # the running Job is left alone


def test_policy_on_retries_a_failed_boot_after_the_cooldown() -> None:
    machine = replace(machine_in(NodeState.STARTING_UP), config=replace(CONFIG, power_policy=PowerPolicy.ON))
    failed = step(machine, ev.JobFailed(OperationKind.STARTUP, "m1-startup-1", "no reply"), NOW)
    assert failed.machine.status.state is NodeState.SHUTDOWN  # released at once: not CA-driven
    timer = pending_timers(failed.machine)[0]
    assert timer.kind is ev.TimerKind.COOLDOWN_EXPIRED
    assert fx.StartTimer(timer.kind, timer.token, 30.0) in failed.effects
    retried = step(failed.machine, ev.TimerFired(timer.kind, timer.token), timer.deadline)
    assert retried.machine.status.state is NodeState.STARTING_UP
    assert fx.CreateJob(OperationKind.STARTUP, 2, "m1-startup-2") in retried.effects


def test_policy_on_powers_a_vanished_machine_on_again() -> None:
    machine = replace(machine_in(NodeState.READY), config=replace(CONFIG, power_policy=PowerPolicy.ON))
    result = step(machine, ev.NodeGone(), NOW)
    assert result.machine.status.state is NodeState.STARTING_UP


def test_policy_off_does_not_loop_on_a_failed_drain() -> None:
    machine = replace(machine_in(NodeState.READY), config=replace(CONFIG, power_policy=PowerPolicy.OFF))
    draining = step(machine, ev.NodeReady(provider_id="homelab://homelab/m1", snapshot=SNAPSHOT), NOW)
    assert draining.machine.status.state is NodeState.SHUTTING_DOWN  # Off converges
    failed = step(draining.machine, ev.DrainFinished(succeeded=False, message="PDB"), NOW)
    assert failed.machine.status.state is NodeState.READY
    # ...and a person setting Off again forces a new attempt.
    auto = step(failed.machine, ev.PolicyChanged(PowerPolicy.AUTO), NOW).machine
    assert step(auto, ev.PolicyChanged(PowerPolicy.OFF), NOW).machine.status.state is NodeState.SHUTTING_DOWN


def test_reset_releases_quarantine_once_per_token() -> None:
    quarantined = step(machine_in(NodeState.BOOT_FAILED, consecutive_failures=3), ev.CancelBoot(), NOW).machine
    assert quarantined.status.state is NodeState.QUARANTINED
    reset = step(quarantined, ev.ResetRequested("2026-03-01"), NOW)
    status = reset.machine.status
    assert (status.state, status.consecutive_failures, status.cooldown_until) == (NodeState.SHUTDOWN, 0, None)
    assert status.handled_reset == "2026-03-01"
    assert _condition(reset.machine, "Quarantined") is ConditionStatus.FALSE
    assert (fx.EventType.NORMAL, "Reset") in _events(reset)
    assert step(reset.machine, ev.ResetRequested("2026-03-01"), NOW) == Transition(reset.machine)
    assert step(reset.machine, ev.PowerOnRequested(), NOW).machine.status.state is NodeState.STARTING_UP


def test_config_change_applies_and_a_policy_change_inside_it_acts() -> None:
    booting = machine_in(NodeState.STARTING_UP)
    longer = step(booting, ev.ConfigChanged(replace(CONFIG, boot_timeout_seconds=900)), NOW)
    token = "m1-startup-1:boot-timeout"
    assert longer.effects == (fx.CancelTimer(token), fx.StartTimer(ev.TimerKind.BOOT_TIMEOUT, token, 840.0))
    off = step(booting, ev.ConfigChanged(replace(CONFIG, power_policy=PowerPolicy.OFF)), NOW)
    assert off.machine.status.state is NodeState.SHUTDOWN
    with pytest.raises(InvalidTransition, match="not this machine"):
        step(booting, ev.ConfigChanged(replace(CONFIG, name="m2")), NOW)


# --------------------------------------------------------------------------------------------------
# Failed Kubernetes writes


def _write_failed_condition(machine: Machine) -> tuple[ConditionStatus, str, str] | None:
    condition = next((c for c in machine.status.conditions if c.type == CONDITION_WRITE_FAILED), None)
    return (condition.status, condition.reason, condition.message) if condition else None


@pytest.mark.parametrize(
    ("state", "failure", "reason", "message"),
    [
        pytest.param(
            NodeState.SHUTTING_DOWN,
            ev.WriteFailed("Cordon", 'nodes "m1" is forbidden', permanent=True),
            "Cordon",
            'Cordon was permanently refused by the Kubernetes API: nodes "m1" is forbidden',
            id="cordon-refused",
        ),
        pytest.param(
            NodeState.READY,
            ev.WriteFailed("SetProviderID", "gave up after 6 tries: 503 Service Unavailable", permanent=False),
            "SetProviderID",
            "SetProviderID is still failing after retries: gave up after 6 tries: 503 Service Unavailable",
            id="provider-id-retries-exhausted",
        ),
        pytest.param(
            NodeState.MAINTENANCE,
            ev.WriteFailed("ApplyManagedLabelsAndTaints", "", permanent=True),
            "ApplyManagedLabelsAndTaints",
            "ApplyManagedLabelsAndTaints was permanently refused by the Kubernetes API",
            id="no-detail",
        ),
        pytest.param(
            NodeState.SHUTDOWN,
            ev.WriteFailed("DeleteKubeNode", "x" * 2000, permanent=True),
            "DeleteKubeNode",
            "DeleteKubeNode was permanently refused by the Kubernetes API: " + "x" * 511 + "…",
            id="long-detail-cut",
        ),
    ],
)
def test_a_failed_write_sets_the_condition_and_records_a_warning(
    state: NodeState, failure: ev.WriteFailed, reason: str, message: str
) -> None:
    machine = machine_in(state)
    result = step(machine, failure, NOW)
    assert result.machine.status.state is state
    assert _write_failed_condition(result.machine) == (ConditionStatus.TRUE, reason, message)
    assert result.effects == (
        fx.RecordEvent(fx.EventType.WARNING, "WriteFailed", message),
        fx.PatchStatus(result.machine.status),
    )
    assert result.machine.status.model_copy(update={"conditions": ()}) == machine.status  # nothing else changes


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(ev.WriteFailed("PatchStatus", "409 Conflict", permanent=False), id="status-write"),
        pytest.param(ev.WriteFailed("RecordEvent", "403 Forbidden", permanent=True), id="event-write"),
    ],
)
@pytest.mark.parametrize("state", [pytest.param(state, id=state.value) for state in NodeState])
def test_a_failed_status_or_event_write_produces_nothing(state: NodeState, failure: ev.WriteFailed) -> None:
    machine = machine_in(state)
    assert step(machine, failure, NOW) == Transition(machine)


def test_a_failed_write_never_triggers_a_policy_move() -> None:
    # policy On, cooldown just over: the next ordinary event would boot it; a failure report must not.
    resting = machine_in(NodeState.SHUTDOWN, cooldown_until=NOW - timedelta(seconds=1), consecutive_failures=1)
    resting = replace(resting, config=replace(CONFIG, power_policy=PowerPolicy.ON))
    assert step(resting, ev.WriteFailed("PatchStatus", "409 Conflict", permanent=False), NOW) == Transition(resting)
    reported = step(resting, ev.WriteFailed("DeleteKubeNode", "403 Forbidden", permanent=True), NOW)
    assert reported.machine.status.state is NodeState.SHUTDOWN
    assert not [effect for effect in reported.effects if isinstance(effect, fx.CreateJob)]


def test_the_same_failure_again_is_not_repeated_but_a_different_one_is() -> None:
    failure = ev.WriteFailed("Cordon", 'nodes "m1" is forbidden', permanent=True)
    first = step(machine_in(NodeState.SHUTTING_DOWN), failure, NOW)
    assert step(first.machine, failure, NOW + timedelta(seconds=5)) == Transition(first.machine)
    retried = ev.WriteFailed("Cordon", "gave up after 6 tries: timeout", permanent=False)
    second = step(first.machine, retried, NOW + timedelta(seconds=5))
    assert _events(second) == [(fx.EventType.WARNING, "WriteFailed")]
    condition = _write_failed_condition(second.machine)
    assert condition is not None
    assert condition[2] == "Cordon is still failing after retries: gave up after 6 tries: timeout"


def test_the_condition_is_cleared_on_the_next_change_of_state() -> None:
    failure = ev.WriteFailed("Uncordon", "403 Forbidden", permanent=True)
    failed = step(machine_in(NodeState.READY), failure, NOW).machine
    later = NOW + timedelta(minutes=5)
    still = step(failed, ev.NodeReady(provider_id="homelab://homelab/m1", snapshot=SNAPSHOT), later).machine
    assert _write_failed_condition(still) == _write_failed_condition(failed)  # same state: kept
    off = step(still, ev.PowerOffRequested(drain=False), later)
    assert off.machine.status.state is NodeState.SHUTTING_DOWN
    assert _write_failed_condition(off.machine) == (
        ConditionStatus.FALSE,
        "StateChanged",
        "cleared on entering ShuttingDown; a later failed write sets it again",
    )
    assert not [e for e in _events(off) if e[1] == "WriteFailed"]
    again = step(off.machine, failure, later)
    assert _write_failed_condition(again.machine) == _write_failed_condition(failed)
    assert _events(again) == [(fx.EventType.WARNING, "WriteFailed")]


def test_a_machine_that_never_failed_a_write_gets_no_such_condition() -> None:
    booted = step(machine_in(NodeState.STARTING_UP), READY, NOW).machine
    assert _write_failed_condition(booted) is None


# --------------------------------------------------------------------------------------------------
# Bookkeeping and names


def test_conditions_are_replaced_never_duplicated_over_cycles() -> None:
    machine, now = machine_in(NodeState.SHUTDOWN), NOW
    for _ in range(3):
        machine = step(machine, ev.PowerOnRequested(), now).machine
        machine = step(machine, READY, now + timedelta(minutes=1)).machine
        machine = step(machine, ev.PowerOffRequested(), now + timedelta(minutes=31)).machine
        operation = machine.status.operation
        assert operation is not None
        machine = step(machine, ev.NodeGone(), now + timedelta(minutes=32)).machine
        machine = step(machine, ev.JobSucceeded(OperationKind.SHUTDOWN, operation.job_name), now).machine
        now += timedelta(hours=1)
    types = [c.type for c in machine.status.conditions]
    assert len(types) == len(set(types))
    assert machine.status.state is NodeState.SHUTDOWN
    # Each cycle: a one-minute boot and 30 minutes Ready (the power-off is confirmed at `now`, taking no time).
    assert machine.status.powered_on_seconds == 3 * 31 * 60


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step(machine_in(NodeState.SHUTDOWN), ev.PowerOnRequested(), datetime(2026, 3, 1, 12, 0))


@pytest.mark.parametrize(
    ("machine_name", "kind", "attempt", "expected"),
    [
        pytest.param("m1", OperationKind.STARTUP, 1, "m1-startup-1", id="short"),
        pytest.param("rack-2.node-7", OperationKind.SHUTDOWN, 12, "rack-2.node-7-shutdown-12", id="dots"),
        pytest.param("a" * 52, OperationKind.STARTUP, 3, "a" * 52 + "-startup-3", id="exactly-63"),
    ],
)
def test_job_names(machine_name: str, kind: OperationKind, attempt: int, expected: str) -> None:
    assert job_name(machine_name, kind, attempt) == expected


def test_long_job_names_are_cut_with_a_stable_hash() -> None:
    first = job_name("x" * 40 + "-a" * 20, OperationKind.SHUTDOWN, 123)
    second = job_name("x" * 40 + "-b" * 20, OperationKind.SHUTDOWN, 123)
    assert len(first) <= 63
    assert len(second) <= 63
    assert first != second
    assert first == job_name("x" * 40 + "-a" * 20, OperationKind.SHUTDOWN, 123)
    assert first.endswith("-shutdown-123")
    assert "--" not in first


def test_machines_events_effects_and_refusals_survive_pickling() -> None:
    booting = step(machine_in(NodeState.SHUTDOWN), ev.PowerOnRequested(), NOW)
    samples: list[object] = [booting, *(EVENT_FOR[event_type](booting.machine)[0] for event_type in EVENT_FOR)]
    samples.append(InvalidTransition(NodeState.QUARANTINED, ev.PowerOnRequested(), "quarantined"))
    samples.append(IGNORE)
    for sample in samples:
        copy = pickle.loads(pickle.dumps(sample))
        assert copy == sample or str(copy) == str(sample)
    assert pickle.loads(pickle.dumps(IGNORE)) is IGNORE


def test_configuration_comes_from_the_node_and_group_specs() -> None:
    template = JobTemplate(image="ghcr.io/example/wol:1")
    node = Node(
        metadata=Metadata(name="m7", namespace="homelab"),
        spec=NodeSpec.model_validate(
            {
                "kubernetes_node_name": "m7.lan",
                "provider_id": "ipmi://10.0.0.7",
                "power_policy": PowerPolicy.ON,
                "startup_job": template,
                "shutdown_job": template,
            }
        ),
    )
    group = GroupSpec(
        max_size=4,
        boot_timeout="15m",
        shutdown_timeout="90s",
        failure_policy=FailurePolicy(quarantine_after=5, cooldown_base="1m", cooldown_cap="1h", shutdown_retries=1),
        power_off_node_policy=PowerOffNodePolicy.KEEP,
    )
    assert MachineConfig.from_resources(node, "workers", group) == MachineConfig(
        namespace="homelab",
        name="m7",
        group="workers",
        kubernetes_node_name="m7.lan",
        power_policy=PowerPolicy.ON,
        provider_id="ipmi://10.0.0.7",
        boot_timeout_seconds=900.0,
        shutdown_timeout_seconds=90.0,
        quarantine_after=5,
        cooldown_base_seconds=60.0,
        cooldown_cap_seconds=3600.0,
        shutdown_retries=1,
        power_off_node_policy=PowerOffNodePolicy.KEEP,
    )


def test_leaving_maintenance_stamps_a_node_that_reregistered_without_provider_id() -> None:
    held = machine_in(NodeState.MAINTENANCE, provider_id="pxe://rack1/m1")
    reregistered = step(held, ev.NodeReady(provider_id=None, snapshot=SNAPSHOT), NOW).machine
    assert reregistered.status.provider_id is None  # recorded as seen, nothing written to the Node
    back = step(reregistered, ev.PolicyChanged(PowerPolicy.AUTO), NOW)
    assert back.machine.status.state is NodeState.READY
    assert back.machine.status.provider_id == "homelab://homelab/m1"
    assert [effect for effect in back.effects if isinstance(effect, _NODE_WRITES)][-1] == fx.SetProviderID(
        "homelab://homelab/m1"
    )


def test_a_released_failed_boot_says_when_it_may_boot_again_in_human_terms() -> None:
    failed = machine_in(NodeState.BOOT_FAILED, consecutive_failures=1, cooldown_until=NOW + timedelta(seconds=102))

    released = step(failed, ev.CancelBoot(), NOW).machine

    assert released.status.state is NodeState.SHUTDOWN
    assert released.status.message == (
        "released after a failed boot; not powered on again before 12:01:42 UTC (in 1m42s)"
    )


def _created_events(transition: Transition) -> list[str]:
    return [e.message for e in transition.effects if isinstance(e, fx.RecordEvent) and "created" in e.message]


def test_the_number_in_a_job_name_is_named_as_the_operation_number_not_a_try() -> None:
    # The Job number counts every power Job of the machine; the try counts this shutdown's Jobs.
    boot = step(machine_in(NodeState.SHUTDOWN, attempts=4), ev.PowerOnRequested(start_now=True), NOW)
    shutting_down = machine_in(NodeState.SHUTTING_DOWN)
    operation = shutting_down.status.operation
    assert operation is not None
    retry = step(shutting_down, ev.JobFailed(OperationKind.SHUTDOWN, operation.job_name, "ipmitool: timeout"), NOW)

    assert _created_events(boot) == ["powering on: startup #5: Job m1-startup-5 created"]
    assert _created_events(retry) == [
        "powering off: shutdown #3: Job m1-shutdown-3 created (try 2 of 3) because shutdown Job m1-shutdown-2 "
        "failed: ipmitool: timeout"
    ]


# --------------------------------------------------------------------------------------------------
# Boot and power-off durations: recorded in the status (they survive restarts) and reported to the shell


def _boot(machine: Machine, took: timedelta) -> Transition:
    booting = step(machine, ev.PowerOnRequested(), NOW).machine
    return step(booting, READY, NOW + took)


def _power_off(machine: Machine, took: timedelta) -> Transition:
    stopping = step(machine, ev.PowerOffRequested(), NOW).machine
    operation = stopping.status.operation
    assert operation is not None
    gone = step(stopping, ev.NodeGone(), NOW + took).machine
    return step(gone, ev.JobSucceeded(OperationKind.SHUTDOWN, operation.job_name), NOW + took)


def test_a_boot_records_how_long_it_took_from_the_power_command_to_node_ready() -> None:
    result = _boot(machine_in(NodeState.SHUTDOWN, recent_boot_seconds=(50.0,)), timedelta(seconds=95.5))
    assert result.machine.status.recent_boot_seconds == (50.0, 95.5)
    assert result.finished == ((OperationKind.STARTUP, 95.5),)
    assert fx.PatchStatus(result.machine.status) in result.effects  # the same write as the state change


def test_a_boot_that_waited_for_a_slot_is_timed_from_its_startup_job() -> None:
    queued = step(machine_in(NodeState.SHUTDOWN), ev.PowerOnRequested(start_now=False), NOW).machine
    granted = step(queued, ev.BootSlotGranted(), NOW + timedelta(minutes=5)).machine
    result = step(granted, READY, NOW + timedelta(minutes=6))
    assert result.machine.status.recent_boot_seconds == (60.0,)


def test_a_confirmed_power_off_records_how_long_it_took() -> None:
    result = _power_off(machine_in(NodeState.READY), timedelta(seconds=42))
    assert result.machine.status.state is NodeState.SHUTDOWN
    assert result.machine.status.recent_shutdown_seconds == (42.0,)
    assert result.finished == ((OperationKind.SHUTDOWN, 42.0),)


def test_only_the_last_ten_durations_are_kept() -> None:
    machine = machine_in(NodeState.SHUTDOWN, recent_boot_seconds=tuple(float(n) for n in range(10)))
    result = _boot(machine, timedelta(seconds=99))
    assert result.machine.status.recent_boot_seconds == (*(float(n) for n in range(1, 10)), 99.0)


@pytest.mark.parametrize(
    ("machine", "event"),
    [
        pytest.param(machine_in(NodeState.SHUTDOWN), READY, id="started outside the autoscaler"),
        pytest.param(machine_in(NodeState.BOOT_FAILED), READY, id="came up after its boot failed"),
        pytest.param(machine_in(NodeState.READY), ev.NodeGone(), id="stopped outside the autoscaler"),
    ],
)
def test_power_changes_the_operator_did_not_command_are_not_timed(machine: Machine, event: ev.Event) -> None:
    result = step(machine, event, NOW)
    assert (result.machine.status.recent_boot_seconds, result.machine.status.recent_shutdown_seconds) == ((), ())
    assert result.finished == ()
