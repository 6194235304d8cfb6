"""The power state machine of one physical machine: its state, the transition table and `step`.

Separate from the shells so every behaviour is a pure function that tests drive directly. The rules,
which everything that affects transitions in this file follows:

- A machine is data: `Machine` = the durable `NodeStatus` (persisted as the Node CR status) + its
  `MachineConfig` + non-durable observations (the Kubernetes Node's presence), rebuilt by `derive`.
- `step(machine, event, now)` looks `(state, type(event))` up in `TRANSITIONS`. A missing cell is an illegal
  move: it raises `InvalidTransition` naming the state, the event and why. An `IGNORE` cell returns the
  machine untouched. A `Rule` cell runs its handler, a small pure function. Nothing is mutated, so a
  refusal leaves the machine exactly as it was.
- After a handler, `step` applies the power-policy rules of `POLICY_RULES` until none applies (a machine
  with policy On that lands in Shutdown is powered on again, policy Off powers a Ready machine off, ...).
  `WriteFailed` is the exception: it only reports a failed Kubernetes write, so it never moves the machine.
- Timers are derived, not remembered: `pending_timers(machine)` says which timers a machine in its state
  needs, and `step` starts and cancels timers by comparing that set before and after. Tokens name the
  operation (`<job>:boot-timeout`), so a timer of an older operation is recognised as stale and ignored.
- `step` does the bookkeeping no handler may forget: `since`, powered-on time (`actors.fsm.energy`), the Ready
  and Quarantined conditions, and one `PatchStatus` whenever the status changed. When a command (`COMMANDS`)
  starts a power operation (the machine enters StartingUp or ShuttingDown) it is the first effect: the intent is
  stored before anything is done (write-ahead), so an operator killed in between comes back with the operation
  in the status and `derive` redoes what is missing (it creates the recorded Job, cordons a machine that is
  shutting down), and the group can answer CA as soon as that one write is stored. Otherwise it is the last
  effect: the status records what the effects before it did. That includes a cancelled boot: its Job is deleted
  before `Shutdown` is recorded, because a restart that found `Shutdown` with the Job still running might let
  the machine come up (and be adopted past maxSize), while one that finds `StartingUp` without its Job just
  boots it again.
- No clock, no I/O: `now` (timezone-aware) is an argument.
- A machine with `spec.power` is switched by a `SendPowerCommand` instead of a `CreateJob` (the same operation
  numbering and retry rules), and, when it has a BMC, its power state is read back (`ReadPowerState`, fast while it
  is switched, slow otherwise; `actors.fsm.readback`): a readback Off confirms a power-off, a power-on still read
  Off after the grace is sent again as a new attempt and then fails the boot, a graceful off still read On after
  the BMC's forceOffAfter is followed by a forced one. A failed readback only sets a condition. A command is never
  sent twice for one attempt: after a restart the readback and the timeouts find out what became of it.

The documentation's transition table and diagram are generated from `TRANSITIONS` and `POLICY_RULES`
(`homelab_autoscaler.state_doc`, written by `homelab-autoscaler docs --write docs/`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from actors.fsm import effects as fx
from actors.fsm import exercise_record, readback
from actors.fsm.energy import account_stretch
from actors.fsm.errors import InvalidTransition
from actors.fsm.events import (
    BootSlotGranted,
    CancelBoot,
    ConfigChanged,
    DrainFinished,
    Event,
    JobFailed,
    JobSucceeded,
    NodeGone,
    NodeNotReady,
    NodeReady,
    PolicyChanged,
    PowerCommandFailed,
    PowerCommandSucceeded,
    PowerOffRequested,
    PowerOnRequested,
    PowerReadbackFailed,
    PowerStateObserved,
    ResetRequested,
    TimerFired,
    TimerKind,
    WriteFailed,
)
from actors.power_port import PowerAction
from schemas import labels
from schemas.common import (
    Condition,
    ConditionStatus,
    format_duration,
    human_moment,
    parse_duration,
    set_condition,
)
from schemas.group import GroupSpec, PowerOffNodePolicy
from schemas.node import (
    RECENT_DURATIONS,
    ExerciseOutcome,
    Node,
    NodeSnapshot,
    NodeState,
    NodeStatus,
    Operation,
    OperationKind,
    PowerPolicy,
    PowerReadback,
    default_provider_id,
    kubernetes_node_name,
)
from schemas.power import PowerSpec, PowerState

MAX_JOB_NAME_LENGTH: Final = 63
"""Job names become the `job-name` label of their pods, and label values are at most 63 characters."""


class KubeNodePresence(StrEnum):
    """What the machine's Kubernetes Node looks like right now (observed, never persisted)."""

    ABSENT = "Absent"
    NOT_READY = "NotReady"
    READY = "Ready"


@dataclass(frozen=True)
class MachineConfig:
    """The settings of one machine, from its Node spec and its Group spec."""

    namespace: str
    name: str
    group: str
    kubernetes_node_name: str
    power_policy: PowerPolicy = PowerPolicy.AUTO
    provider_id: str | None = None
    """spec.providerID: the providerID to stamp on a Kubernetes Node that registers without one."""
    boot_timeout_seconds: float = 600.0
    shutdown_timeout_seconds: float = 300.0
    quarantine_after: int = 3
    cooldown_base_seconds: float = 30.0
    cooldown_cap_seconds: float = 1800.0
    shutdown_retries: int = 2
    power_off_node_policy: PowerOffNodePolicy = PowerOffNodePolicy.DELETE
    unready_grace_seconds: float = 120.0
    power: PowerSpec | None = None
    """spec.power: the machine is switched by native drivers instead of Jobs."""
    readback_transition_seconds: float = 5.0
    readback_steady_seconds: float = 300.0
    power_on_grace_seconds: float = 60.0
    power_on_retries: int = 1

    @classmethod
    def from_resources(
        cls, node: Node, group_name: str, group: GroupSpec, unready_grace_seconds: float = 120.0
    ) -> MachineConfig:
        """The configuration of the machine `node`, member of the group `group_name`. Pure."""
        failure = group.failure_policy
        return cls(
            namespace=node.metadata.namespace,
            name=node.metadata.name,
            group=group_name,
            kubernetes_node_name=kubernetes_node_name(node),
            power_policy=node.spec.power_policy,
            provider_id=node.spec.provider_id,
            boot_timeout_seconds=parse_duration(group.boot_timeout),
            shutdown_timeout_seconds=parse_duration(group.shutdown_timeout),
            quarantine_after=failure.quarantine_after,
            cooldown_base_seconds=parse_duration(failure.cooldown_base),
            cooldown_cap_seconds=parse_duration(failure.cooldown_cap),
            shutdown_retries=failure.shutdown_retries,
            power_off_node_policy=group.power_off_node_policy,
            unready_grace_seconds=unready_grace_seconds,
            power=node.spec.power,
            readback_transition_seconds=parse_duration(group.power_readback.transition_interval),
            readback_steady_seconds=parse_duration(group.power_readback.steady_interval),
            power_on_grace_seconds=parse_duration(group.power_readback.power_on_grace),
            power_on_retries=group.power_readback.power_on_retries,
        )


@dataclass(frozen=True)
class Machine:
    """One machine: durable status, configuration and what was last observed of its Kubernetes Node."""

    config: MachineConfig
    status: NodeStatus = field(default_factory=NodeStatus)
    kube_node: KubeNodePresence = KubeNodePresence.ABSENT
    not_ready_since: datetime | None = None
    """When the Kubernetes Node was first seen NotReady in its current NotReady spell."""
    job_finished: bool = False
    """The Job (or native power command) of the operation in flight has succeeded or failed (a Job is then kept)."""
    readback_requested_at: datetime | None = None
    """When the last power-state readback was asked for (the next is due an interval later)."""
    readback_in_flight: bool = False
    """A readback was asked for and not answered yet (no second one is asked for meanwhile)."""


@dataclass(frozen=True)
class Transition:
    """The result of `step`: the new machine and the effects to execute, in order."""

    machine: Machine
    effects: tuple[fx.Effect, ...] = ()
    finished: tuple[tuple[OperationKind, float], ...] = ()
    """Boots and power-offs this transition completed, with their durations in seconds (also appended to the
    status's `recent_*_seconds`): what the shell observes into the duration histograms, without a clock."""


@dataclass(frozen=True)
class PendingTimer:
    """A timer a machine in its current state needs."""

    kind: TimerKind
    token: str
    deadline: datetime


# --------------------------------------------------------------------------------------------------
# Pure helpers other parts call


def job_name(machine_name: str, kind: OperationKind, attempt: int) -> str:
    """`<machine>-<kind>-<attempt>`, at most 63 characters; long machine names keep a stable hash. Pure."""
    suffix = f"-{kind.value}-{attempt}"
    name = machine_name + suffix
    if len(name) <= MAX_JOB_NAME_LENGTH:
        return name
    digest = hashlib.sha256(machine_name.encode()).hexdigest()[:8]
    room = MAX_JOB_NAME_LENGTH - len(suffix) - len(digest) - 1
    # A cut may end on '-' or '.', which would make an invalid DNS name next to the separator.
    return f"{machine_name[:room].rstrip('-.')}-{digest}{suffix}"


def cooldown_seconds(config: MachineConfig, consecutive_failures: int) -> float:
    """min(cap, base * 2**(failures-1)): how long a machine rests after its n-th failed boot in a row. Pure."""
    if consecutive_failures < 1:
        return 0.0
    # Bounded exponent: a float times a huge power of two overflows, and the cap is reached long before.
    doubling = 2 ** min(consecutive_failures - 1, 64)
    return float(min(config.cooldown_cap_seconds, config.cooldown_base_seconds * doubling))


def effective_provider_id(config: MachineConfig, status: NodeStatus) -> str:
    """The providerID CA must see: the one learned from the Node, else spec.providerID, else ours. Pure."""
    return status.provider_id or config.provider_id or default_provider_id(config.namespace, config.name)


def stamped_provider_id(config: MachineConfig) -> str:
    """The providerID written on a Kubernetes Node that registered without one: spec.providerID or ours. Pure."""
    return config.provider_id or default_provider_id(config.namespace, config.name)


def timer_token(owner: str, kind: TimerKind) -> str:
    """A timer token unique to the operation or spell `owner` it guards. Pure."""
    return f"{owner}:{kind.value}"


def pending_timers(machine: Machine) -> tuple[PendingTimer, ...]:
    """The timers a machine in its current state needs, with their deadlines. Pure."""
    return (*_state_timers(machine), *_readback_timer(machine))


def _readback_timer(machine: Machine) -> tuple[PendingTimer, ...]:
    """The next power-state readback of a machine with a BMC, unless one is in flight or a person holds it."""
    config, status = machine.config, machine.status
    if not readback.reads_back(config.power) or machine.readback_in_flight or status.state in readback.UNPOLLED_STATES:
        return ()
    basis, due = readback.next_readback(
        status.state,
        machine.readback_requested_at,
        status.since,
        config.readback_transition_seconds,
        config.readback_steady_seconds,
    )
    if _released_boot_may_come_up(machine, basis):
        # Read as often as a machine being switched: a released boot that powers on is powered off at once.
        due = basis + timedelta(seconds=config.readback_transition_seconds)
    kind = TimerKind.READBACK_POLL
    return (PendingTimer(kind, timer_token(f"{config.name}:{basis.isoformat()}", kind), due),)


def _released_boot_may_come_up(machine: Machine, moment: datetime) -> bool:
    """Whether, at `moment`, a boot CA let go of could still power the machine on (see `released_boot_came_up`)."""
    status = machine.status
    return (
        status.state is NodeState.SHUTDOWN
        and status.reason in RELEASED_BOOT_REASONS
        and status.since is not None
        and moment <= status.since + timedelta(seconds=machine.config.boot_timeout_seconds)
    )


def _state_timers(machine: Machine) -> tuple[PendingTimer, ...]:
    status, config = machine.status, machine.config
    operation = status.operation
    if status.state is NodeState.STARTING_UP and operation and operation.kind is OperationKind.STARTUP:
        deadline = operation.started + timedelta(seconds=config.boot_timeout_seconds)
        return (
            PendingTimer(TimerKind.BOOT_TIMEOUT, timer_token(operation.job_name, TimerKind.BOOT_TIMEOUT), deadline),
        )
    if status.state is NodeState.SHUTTING_DOWN and operation and operation.kind is OperationKind.SHUTDOWN:
        deadline = operation.started + timedelta(seconds=config.shutdown_timeout_seconds)
        kind = TimerKind.SHUTDOWN_TIMEOUT
        return (PendingTimer(kind, timer_token(operation.job_name, kind), deadline),)
    if (
        status.state is NodeState.READY
        and machine.kube_node is KubeNodePresence.NOT_READY
        and machine.not_ready_since is not None
    ):
        kind = TimerKind.UNREADY_GRACE
        owner = f"{config.name}:{machine.not_ready_since.isoformat()}"
        deadline = machine.not_ready_since + timedelta(seconds=config.unready_grace_seconds)
        return (PendingTimer(kind, timer_token(owner, kind), deadline),)
    if (
        status.state is NodeState.SHUTDOWN
        and config.power_policy is PowerPolicy.ON
        and status.cooldown_until is not None
    ):
        kind = TimerKind.COOLDOWN_EXPIRED
        owner = f"{config.name}:{status.cooldown_until.isoformat()}"
        return (PendingTimer(kind, timer_token(owner, kind), status.cooldown_until),)
    return ()


def is_cooling_down(status: NodeStatus, now: datetime) -> bool:
    """Whether a failed boot still keeps the machine from being powered on. Pure."""
    return status.cooldown_until is not None and status.cooldown_until > now


# --------------------------------------------------------------------------------------------------
# Building blocks of the handlers

_AFTER_FAILED_POWER_OFF: Final = frozenset({"ShutdownFailed", "DrainFailed"})
"""Ready reasons after which policy Off does not retry by itself (it would loop on a stuck drain)."""
_UNREPORTED_WRITES: Final = frozenset({fx.PatchStatus.__name__, fx.RecordEvent.__name__})
"""Effects whose failure the shell only logs: reporting it takes a status write and an Event, which could fail
again, and again, forever."""
_WRITE_FAILURE_DETAIL_LIMIT: Final = 512
"""API error texts can carry whole response bodies; the condition and the Event keep their beginning."""


def _update(machine: Machine, **changes: Any) -> Machine:
    return replace(machine, status=machine.status.model_copy(update=changes))


def _enter(machine: Machine, state: NodeState, reason: str, message: str, **changes: Any) -> Machine:
    return _update(machine, state=state, reason=reason, message=message, **changes)


def _without_operation(machine: Machine) -> Machine:
    return replace(_update(machine, operation=None, operation_tries=0), job_finished=False)


def _abandon_job(machine: Machine) -> tuple[fx.Effect, ...]:
    """Delete the operation's Job only while it may still run; a finished Job is kept for inspection."""
    operation = machine.status.operation
    if operation is None or machine.job_finished or operation.driver is not None:
        return ()  # a native power command cannot be called back
    return (fx.DeleteJob(operation.job_name),)


def _with_condition(machine: Machine, now: datetime, type_: str, true: bool, reason: str, message: str) -> Machine:
    status = ConditionStatus.TRUE if true else ConditionStatus.FALSE
    condition = Condition(type=type_, status=status, reason=reason, message=message)
    return _update(machine, conditions=set_condition(machine.status.conditions, condition, now))


def _clear_condition(machine: Machine, now: datetime, type_: str, reason: str, message: str) -> Machine:
    """Set a condition False, but only if it was ever written (no noise on machines that never failed)."""
    if not any(c.type == type_ for c in machine.status.conditions):
        return machine
    return _with_condition(machine, now, type_, False, reason, message)


def _is_current_job(machine: Machine, kind: OperationKind, name: str) -> bool:
    operation = machine.status.operation
    return operation is not None and operation.job_name == name and operation.kind is kind


def _stamped(snapshot: NodeSnapshot, now: datetime) -> NodeSnapshot:
    return snapshot if snapshot.seen_at is not None else snapshot.model_copy(update={"seen_at": now})


def _same_snapshot(left: NodeSnapshot | None, right: NodeSnapshot) -> bool:
    if left is None:
        return False
    return left.model_copy(update={"seen_at": None}) == right.model_copy(update={"seen_at": None})


def _attempts_text(config: MachineConfig, tries: int) -> str:
    return f"try {tries} of {1 + config.shutdown_retries}"


def _created_text(create: fx.CreateJob | fx.SendPowerCommand, driver: str = "") -> str:
    """`shutdown #2: Job nuc-2-shutdown-2 created`. Pure.

    The number in a Job's name counts every power Job the machine has had (`status.attempts`, startups and
    shutdowns alike, so a name is never reused), not the tries of this operation; spelling it `#2` next to the
    name, as the status command's OPERATION column does, keeps `nuc-2-shutdown-2 ... (try 1 of 3)` from reading
    like a second try. The names themselves stay as they are: restarts adopt Jobs in flight by these names.
    """
    if isinstance(create, fx.SendPowerCommand):
        return f"{_KIND_OF_ACTION[create.action].value} #{create.attempt}: {create.action.value} sent by {driver}"
    return f"{create.kind.value} #{create.attempt}: Job {create.job_name} created"


_KIND_OF_ACTION: Final = {
    PowerAction.POWER_ON: OperationKind.STARTUP,
    PowerAction.POWER_OFF: OperationKind.SHUTDOWN,
    PowerAction.FORCE_OFF: OperationKind.SHUTDOWN,
}


def _start_job(
    machine: Machine, kind: OperationKind, now: datetime, tries: int, started_at: datetime | None = None
) -> tuple[Machine, fx.CreateJob | fx.SendPowerCommand]:
    """Start the operation: a Job, or for a machine with spec.power the native command (same numbering)."""
    attempt = machine.status.attempts + 1
    name = job_name(machine.config.name, kind, attempt)
    power = machine.config.power
    driver = None
    if power is not None:
        driver = power.power_on_driver if kind is OperationKind.STARTUP else power.power_off_driver
    operation = Operation(kind=kind, attempt=attempt, job_name=name, started=started_at or now, driver=driver)
    started = replace(
        _update(machine, operation=operation, attempts=attempt, operation_tries=tries), job_finished=False
    )
    if power is None:
        return started, fx.CreateJob(kind=kind, attempt=attempt, job_name=name)
    action = PowerAction.POWER_ON if kind is OperationKind.STARTUP else PowerAction.POWER_OFF
    return started, fx.SendPowerCommand(action, attempt, name)


def _operation_text(operation: Operation) -> str:
    """`startup Job nuc-1-startup-3`, or `power-on #3 by ipmi` for a native operation. Pure."""
    if operation.driver is None:
        return f"{operation.kind.value} Job {operation.job_name}"
    action = PowerAction.POWER_ON if operation.kind is OperationKind.STARTUP else PowerAction.POWER_OFF
    return f"{action.value} #{operation.attempt} by {operation.driver.value}"


def _start_boot(machine: Machine, now: datetime, tries: int = 1, started_at: datetime | None = None) -> Transition:
    started, create = _start_job(machine, OperationKind.STARTUP, now, tries=tries, started_at=started_at)
    message = _created_text(create, _driver_of(started))
    booting = _enter(started, NodeState.STARTING_UP, "PoweringOn", message)
    return Transition(booting, (create, fx.RecordEvent(fx.EventType.NORMAL, "PoweringOn", f"powering on: {message}")))


def _start_shutdown_job(machine: Machine, now: datetime, tries: int, cause: str = "") -> Transition:
    started, create = _start_job(machine, OperationKind.SHUTDOWN, now, tries=tries)
    message = f"{_created_text(create, _driver_of(started))} ({_attempts_text(machine.config, tries)})"
    if cause:
        message += f" because {cause}"
    stopping = _enter(started, NodeState.SHUTTING_DOWN, "PoweringOff", message)
    return Transition(
        stopping, (create, fx.RecordEvent(fx.EventType.NORMAL, "PoweringOff", f"powering off: {message}"))
    )


def _driver_of(machine: Machine) -> str:
    operation = machine.status.operation
    return readback.driver_text(operation.driver if operation is not None else None)


def _begin_power_off(machine: Machine, now: datetime, drain: bool) -> Transition:
    if drain:
        draining = _enter(
            _without_operation(machine), NodeState.SHUTTING_DOWN, "Draining", "draining the Kubernetes Node"
        )
        event = fx.RecordEvent(fx.EventType.NORMAL, "Draining", "draining the Kubernetes Node before power-off")
        return Transition(draining, (fx.Cordon(), fx.Drain(), event))
    started = _start_shutdown_job(_without_operation(machine), now, tries=1)
    return Transition(started.machine, (fx.Cordon(), *started.effects))


def _stamp_missing_provider_id(machine: Machine) -> tuple[Machine, tuple[fx.Effect, ...]]:
    """Back in Ready without a NodeReady event: stamp a providerID if the Node was last seen without one."""
    if machine.status.provider_id or machine.kube_node is KubeNodePresence.ABSENT:
        return machine, ()
    stamped = stamped_provider_id(machine.config)
    return _update(machine, provider_id=stamped), (fx.SetProviderID(stamped),)


def _usable_node_effects(stamp: tuple[fx.Effect, ...]) -> list[fx.Effect]:
    """What makes a member's Kubernetes Node usable, the providerID stamp (if any) last. Pure.

    Cluster Autoscaler counts a member as registered from the moment its Node's providerID matches an instance.
    Stamped before the Group's labels and taints are on the Node, CA's scheduling simulation finds no room on a
    registered member that is missing them and scales the group up again for pods the machine was booted for
    (seen with the real CA). Stamped last, the Node is still an upcoming instance to CA until it is complete.
    """
    return [fx.Uncordon(), fx.RemoveAutoscalerTaints(), fx.ApplyManagedLabelsAndTaints(), *stamp]


def remember_duration(durations: tuple[float, ...], seconds: float) -> tuple[float, ...]:
    """`durations` with `seconds` appended, keeping the last `RECENT_DURATIONS`. Pure."""
    return (*durations, max(0.0, round(seconds, 3)))[-RECENT_DURATIONS:]


def _operation_seconds(machine: Machine, kind: OperationKind, now: datetime) -> float | None:
    """Seconds since the operation in flight's Job was created, if it is a `kind` operation. Pure."""
    operation = machine.status.operation
    if operation is None or operation.kind is not kind:
        return None
    return (now - operation.started).total_seconds()


def _become_ready(
    machine: Machine, event: NodeReady, now: datetime, reason: str, message: str, event_type: fx.EventType
) -> Transition:
    """The machine is on and its Kubernetes Node Ready: make the Node usable and forget past failures.

    A boot the operator started (its startup operation is in flight) is timed from the Job's creation.
    """
    effects: list[fx.Effect] = list(_abandon_job(machine))
    provider_id = event.provider_id or stamped_provider_id(machine.config)
    stamp: tuple[fx.Effect, ...] = () if event.provider_id else (fx.SetProviderID(provider_id),)
    if exercise_record.is_exercising(machine.status):
        # Powered off again at once: tainted so nothing is scheduled on it, and left cordoned if it was.
        effects += [fx.TaintForExercise(), fx.ApplyManagedLabelsAndTaints(), *stamp]
    else:
        effects += _usable_node_effects(stamp)
    took = _operation_seconds(machine, OperationKind.STARTUP, now)
    durations = machine.status.recent_boot_seconds
    ready = _enter(
        _without_operation(machine),
        NodeState.READY,
        reason,
        message,
        consecutive_failures=0,
        cooldown_until=None,
        last_ready=_stamped(event.snapshot, now),
        provider_id=provider_id,
        recent_boot_seconds=durations if took is None else remember_duration(durations, took),
    )
    ready = _clear_condition(ready, now, labels.CONDITION_OPERATION_FAILED, reason, message)
    effects.append(fx.RecordEvent(event_type, reason, message))
    finished = () if took is None else ((OperationKind.STARTUP, max(0.0, round(took, 3))),)
    return Transition(ready, tuple(effects), finished)


def _powered_off(machine: Machine, now: datetime, reason: str, message: str, event_type: fx.EventType) -> Transition:
    """The machine is off: leave the Kubernetes Node as the group asks and wait in Shutdown."""
    effects: list[fx.Effect] = list(_abandon_job(machine))
    if (
        machine.config.power_off_node_policy is PowerOffNodePolicy.DELETE
        and machine.kube_node is not KubeNodePresence.ABSENT
    ):
        effects.append(fx.DeleteKubeNode())
    # Only a power-off the operator commanded and saw confirmed is timed (from its shutdown Job's creation).
    took = _operation_seconds(machine, OperationKind.SHUTDOWN, now) if reason == "PoweredOff" else None
    durations = machine.status.recent_shutdown_seconds
    off = _enter(
        _without_operation(machine),
        NodeState.SHUTDOWN,
        reason,
        message,
        recent_shutdown_seconds=durations if took is None else remember_duration(durations, took),
    )
    if reason == "PoweredOff":
        off = _clear_condition(off, now, labels.CONDITION_OPERATION_FAILED, reason, message)
    effects.append(fx.RecordEvent(event_type, reason, message))
    finished = () if took is None else ((OperationKind.SHUTDOWN, max(0.0, round(took, 3))),)
    return Transition(off, tuple(effects), finished)


def _boot_failed(machine: Machine, now: datetime, reason: str, message: str) -> Transition:
    """Count the failure, start the exponential cooldown and report a failed creation to CA."""
    effects = _abandon_job(machine)
    failures = machine.status.consecutive_failures + 1
    rest = cooldown_seconds(machine.config, failures)
    failed = _enter(
        _without_operation(machine),
        NodeState.BOOT_FAILED,
        reason,
        message,
        consecutive_failures=failures,
        cooldown_until=now + timedelta(seconds=rest),
    )
    failed = _with_condition(failed, now, labels.CONDITION_OPERATION_FAILED, True, reason, message)
    warning = f"{message}; failed boot {failures} in a row, cooling down for {format_duration(rest)}"
    return Transition(failed, (*effects, fx.RecordEvent(fx.EventType.WARNING, reason, warning)))


def _release_failed_boot(machine: Machine, now: datetime) -> Transition:
    """CA (or the policy) let the failed boot go: rest in Shutdown, or in Quarantined after too many."""
    failures = machine.status.consecutive_failures
    if failures >= machine.config.quarantine_after:
        message = (
            f"quarantined after {failures} consecutive failed boots; set the annotation "
            f"{labels.RESET_ANNOTATION} to a new value to release it"
        )
        quarantined = _enter(machine, NodeState.QUARANTINED, "Quarantined", message)
        return Transition(quarantined, (fx.RecordEvent(fx.EventType.WARNING, "Quarantined", message),))
    until = machine.status.cooldown_until
    when = human_moment(until, now) if until else "now"
    message = f"released after a failed boot; not powered on again before {when}"
    return Transition(_enter(machine, NodeState.SHUTDOWN, "CoolingDown", message))


def _cancel_boot(machine: Machine, now: datetime) -> Transition:
    effects = _abandon_job(machine)
    message = "boot cancelled before the machine registered; no failure counted"
    cancelled = _enter(_without_operation(machine), NodeState.SHUTDOWN, "BootCancelled", message)
    return Transition(cancelled, (*effects, fx.RecordEvent(fx.EventType.NORMAL, "BootCancelled", message)))


def _shutdown_failed(machine: Machine, now: datetime, reason: str, message: str) -> Transition:
    """Retry the power-off with a new Job, then give up: back to Ready and schedulable (never left cordoned)."""
    effects = _abandon_job(machine)
    tries = machine.status.operation_tries
    config = machine.config
    if tries < 1 + config.shutdown_retries:
        retried = _start_shutdown_job(_without_operation(machine), now, tries=tries + 1, cause=message)
        warning = fx.RecordEvent(fx.EventType.WARNING, "ShutdownRetry", f"{message}; retrying")
        return Transition(retried.machine, (*effects, warning, *retried.effects))
    gave_up = f"{message}; gave up after {tries} tries"
    if machine.kube_node is KubeNodePresence.ABSENT:
        # The Node is gone, so the machine is most likely off: Ready without a Node would be a lie to CA.
        text = f"{gave_up}; the Kubernetes Node is gone"
        return _powered_off(machine, now, "ShutdownUnconfirmed", text, fx.EventType.WARNING)
    text = f"{gave_up}; the machine stays on and schedulable"
    back, stamp = _stamp_missing_provider_id(
        _enter(_without_operation(machine), NodeState.READY, "ShutdownFailed", text)
    )
    back = _with_condition(back, now, labels.CONDITION_OPERATION_FAILED, True, "ShutdownFailed", text)
    warning = fx.RecordEvent(fx.EventType.WARNING, "ShutdownFailed", text)
    # CA tainted the Node ToBeDeletedByClusterAutoscaler before asking for the power-off; uncordoning alone
    # would leave a Ready machine that nothing can be scheduled on.
    return Transition(back, (*effects, *stamp, fx.Uncordon(), fx.RemoveAutoscalerTaints(), warning))


def _enter_maintenance(machine: Machine, now: datetime) -> Transition:
    message = "powerPolicy Maintenance: the autoscaler leaves this machine alone"
    # A Job still running is left to finish and its operation kept, so its result is still recorded.
    kept = _without_operation(machine) if machine.job_finished else machine
    held = _enter(kept, NodeState.MAINTENANCE, "Maintenance", message)
    return Transition(held, (fx.RecordEvent(fx.EventType.NORMAL, "MaintenanceStarted", message),))


def _leave_maintenance(machine: Machine, now: datetime) -> Transition:
    effects: list[fx.Effect] = list(_abandon_job(machine))
    released = _without_operation(machine)
    policy = machine.config.power_policy.value
    if machine.kube_node is KubeNodePresence.READY:
        message = f"maintenance over (powerPolicy {policy}); the Kubernetes Node is Ready"
        back, stamp = _stamp_missing_provider_id(_enter(released, NodeState.READY, "MaintenanceEnded", message))
        effects += _usable_node_effects(stamp)
    else:
        message = f"maintenance over (powerPolicy {policy}); the Kubernetes Node is not Ready"
        back = _enter(released, NodeState.SHUTDOWN, "MaintenanceEnded", message)
    effects.append(fx.RecordEvent(fx.EventType.NORMAL, "MaintenanceEnded", message))
    return Transition(back, tuple(effects))


# --------------------------------------------------------------------------------------------------
# Exercise boots: boot a machine that was off a long time, check it, power it off again (status.lastExercise)


def _begin_exercise(machine: Machine, now: datetime) -> Transition:
    """Boot for an exercise: never queued (the group starts one only with a free boot slot)."""
    off_since = human_moment(machine.status.since, now) if machine.status.since else "long"
    booting = _start_boot(machine, now)
    started = _update(booting.machine, last_exercise=exercise_record.begun(now))
    message = (
        f"exercise: powering on to check the machine still boots (off since {off_since}); hidden from "
        "Cluster Autoscaler until it is off again"
    )
    return Transition(started, (*booting.effects, fx.RecordEvent(fx.EventType.NORMAL, "ExerciseStarted", message)))


def _take_over_exercise(machine: Machine, event: PowerOnRequested, now: datetime) -> Transition:
    """CA asked for a machine while this one is exercised: it stays on as a normal boot (else: nothing to do).

    Checked and being drained, it is still on: it goes back to Ready (the drain finds nothing to evict on a
    tainted Node, and its late report is ignored in Ready). Once its shutdown Job runs it is too late.
    """
    record = machine.status.last_exercise
    state = machine.status.state
    exercised = record is not None and record.outcome is ExerciseOutcome.RUNNING and not event.exercise
    if state is NodeState.SHUTTING_DOWN and (not exercised or machine.status.operation is not None):
        raise InvalidTransition(state, event, "the machine is shutting down")
    if record is None or not exercised:
        return Transition(machine)
    message = "Cluster Autoscaler asked for a machine: the exercise boot stays on as a normal boot"
    taken = _update(
        machine, last_exercise=exercise_record.concluded(record, ExerciseOutcome.TAKEN_OVER, now, message)
    )
    effects: list[fx.Effect] = []
    if state is NodeState.SHUTTING_DOWN:
        taken, stamp = _stamp_missing_provider_id(_enter(taken, NodeState.READY, "ExerciseTakenOver", message))
        effects += _usable_node_effects(stamp)
    elif state is NodeState.READY:
        effects += _usable_node_effects(())
    effects.append(fx.RecordEvent(fx.EventType.NORMAL, "ExerciseTakenOver", message))
    return Transition(taken, tuple(effects))


def exercise_read_back_on(machine: Machine) -> bool:
    """Whether an exercised machine's power state was read back On since its exercise began; True for a machine
    that cannot be read back (its Kubernetes Node Ready is the whole check). Pure."""
    if not readback.reads_back(machine.config.power):
        return True
    record, observed = machine.status.last_exercise, machine.status.power_readback
    return (
        record is not None
        and observed is not None
        and observed.state is PowerState.ON
        and observed.observed_at >= record.started
    )


def _exercise_due_for_check(machine: Machine, now: datetime) -> bool:
    # Node Ready, and for a machine with a BMC its power read back On: then the check passed.
    return (
        exercise_record.is_exercising(machine.status)
        and _not_after_failed_power_off(machine, now)
        and exercise_read_back_on(machine)
    )


def _exercise_checked(machine: Machine, now: datetime) -> Transition:
    """The exercised machine is Ready (and read back On, with a BMC): the check passed; power it off again (drained,
    in case a pod got on)."""
    record = machine.status.last_exercise
    assert record is not None  # _exercise_due_for_check
    noted = exercise_record.checked(record, now, read_back=readback.reads_back(machine.config.power))
    checked = _update(machine, last_exercise=noted)
    powering_off = _begin_power_off(checked, now, drain=True)
    event = fx.RecordEvent(fx.EventType.NORMAL, "ExerciseChecked", f"exercise: Kubernetes Node {noted.message}")
    return Transition(powering_off.machine, (event, *powering_off.effects))


def _exercising(machine: Machine, now: datetime) -> bool:
    return exercise_record.is_exercising(machine.status)


def _exercise_failed(machine: Machine, now: datetime) -> Transition:
    """The exercise boot failed: counted as a failed boot already; CA never saw it, so release it at once."""
    record = machine.status.last_exercise
    assert record is not None  # _exercising
    message = f"the exercise boot failed: {machine.status.message}"
    failed = _update(machine, last_exercise=exercise_record.concluded(record, ExerciseOutcome.FAILED, now, message))
    released = _release_failed_boot(failed, now)
    warning = fx.RecordEvent(fx.EventType.WARNING, "ExerciseFailed", message)
    return Transition(released.machine, (warning, *released.effects))


_EXERCISE_STATES: Final = frozenset({NodeState.STARTING_UP, NodeState.READY, NodeState.SHUTTING_DOWN})


def _conclude_exercise(machine: Machine, now: datetime) -> Transition:
    """An exercise still Running once the machine settled outside its course gets its outcome. Pure.

    Off after the commanded power-off: succeeded. Back in Ready because the power-off failed: failed (the
    machine is now an ordinary Ready one, visible to CA). Anything else (a policy change, off or on outside the
    autoscaler): interrupted.
    """
    status = machine.status
    record = status.last_exercise
    if record is None or record.outcome is not ExerciseOutcome.RUNNING:
        return Transition(machine)
    # Ready and Auto, it is on course too: the check rule powered it off already, or it waits for its readback.
    back_after_failed_power_off = status.state is NodeState.READY and status.reason in _AFTER_FAILED_POWER_OFF
    on_course = machine.config.power_policy is PowerPolicy.AUTO and status.state in _EXERCISE_STATES
    if on_course and not back_after_failed_power_off:
        return Transition(machine)
    effects: list[fx.Effect] = []
    if status.state is NodeState.SHUTDOWN and status.reason == "PoweredOff":
        outcome, message = ExerciseOutcome.SUCCEEDED, exercise_record.success_message(record)
        event_type, reason = fx.EventType.NORMAL, "ExerciseSucceeded"
    elif status.state is NodeState.READY and status.reason in _AFTER_FAILED_POWER_OFF:
        outcome, message = ExerciseOutcome.FAILED, f"not powered off again: {status.message}"
        event_type, reason = fx.EventType.WARNING, "ExerciseFailed"
        effects.append(fx.RemoveAutoscalerTaints())
    else:
        outcome, message = ExerciseOutcome.INTERRUPTED, f"{status.state.value}: {status.message}"
        event_type, reason = fx.EventType.NORMAL, "ExerciseInterrupted"
        if status.state is NodeState.READY:
            effects += _usable_node_effects(())
    ended = _update(machine, last_exercise=exercise_record.concluded(record, outcome, now, message))
    effects.append(fx.RecordEvent(event_type, reason, f"exercise: {message}"))
    return Transition(ended, tuple(effects))


# --------------------------------------------------------------------------------------------------
# Handlers: one per table cell kind. Each gets the machine with the event's observation already
# recorded (see `_observe`), and returns the handler's own outcome; `step` adds the rest.


def _observe_only(machine: Machine, event: Event, now: datetime) -> Transition:
    return Transition(machine)


def _power_on(machine: Machine, event: PowerOnRequested, now: datetime) -> Transition:
    policy = machine.config.power_policy
    if policy in (PowerPolicy.OFF, PowerPolicy.MAINTENANCE):
        raise InvalidTransition(machine.status.state, event, f"powerPolicy is {policy.value}")
    if is_cooling_down(machine.status, now):
        until = machine.status.cooldown_until
        assert until is not None  # is_cooling_down checked it
        failures = machine.status.consecutive_failures
        raise InvalidTransition(
            machine.status.state,
            event,
            f"in cooldown until {human_moment(until, now)} after {failures} failed boot(s)",
        )
    if event.exercise:
        return _begin_exercise(machine, now)
    if event.start_now:
        return _start_boot(machine, now)
    message = "waiting for a boot slot (the group's maxConcurrentBoots is reached)"
    queued = _enter(_without_operation(machine), NodeState.STARTING_UP, "WaitingForBootSlot", message)
    return Transition(queued, (fx.RecordEvent(fx.EventType.NORMAL, "WaitingForBootSlot", message),))


def _grant_boot_slot(machine: Machine, event: BootSlotGranted, now: datetime) -> Transition:
    if machine.status.operation is not None:
        return Transition(machine)  # already booting: a duplicate grant
    return _start_boot(machine, now)


def _cancel_boot_request(machine: Machine, event: PowerOffRequested | CancelBoot, now: datetime) -> Transition:
    if isinstance(event, CancelBoot) and event.given_up:
        return _boot_given_up(machine, now)
    return _cancel_boot(machine, now)


def _boot_given_up(machine: Machine, now: datetime) -> Transition:
    """CA deleted a creating instance: a failed boot, released at once (cooldown, or quarantine after too many).

    Counted as a plain cancel, the machine was at once the best choice again, CA's next IncreaseSize booted it
    again under the same instance id, and CA, which remembers how long that id has been unregistered, deleted it
    again at once: a loop of a power Job every few hundred milliseconds (seen with the real CA).
    """
    message = "Cluster Autoscaler gave up on the boot: the machine did not register a Ready Kubernetes Node in time"
    failed = _boot_failed(machine, now, "BootGivenUp", message)
    released = _release_failed_boot(failed.machine, now)
    return Transition(released.machine, (*failed.effects, *released.effects), failed.finished)


def _release_request(machine: Machine, event: PowerOffRequested | CancelBoot, now: datetime) -> Transition:
    return _release_failed_boot(machine, now)


def _startup_job_succeeded(machine: Machine, event: JobSucceeded, now: datetime) -> Transition:
    if not _is_current_job(machine, event.kind, event.job_name):
        return Transition(machine)
    message = f"startup Job {event.job_name} succeeded; waiting for the Kubernetes Node to become Ready"
    return Transition(replace(_update(machine, reason="Booting", message=message), job_finished=True))


def _startup_job_failed(machine: Machine, event: JobFailed, now: datetime) -> Transition:
    if not _is_current_job(machine, event.kind, event.job_name):
        return Transition(machine)
    detail = f": {event.message}" if event.message else ""
    finished = replace(machine, job_finished=True)
    return _boot_failed(finished, now, "BootJobFailed", f"startup Job {event.job_name} failed{detail}")


def _booted(machine: Machine, event: NodeReady, now: datetime) -> Transition:
    message = f"Kubernetes Node {machine.config.kubernetes_node_name} is Ready"
    return _become_ready(machine, event, now, "Booted", message, fx.EventType.NORMAL)


def _started_outside(machine: Machine, event: NodeReady, now: datetime) -> Transition:
    was = machine.status.state.value
    message = (
        f"Kubernetes Node {machine.config.kubernetes_node_name} became Ready while the machine was {was}: "
        "started outside the autoscaler"
    )
    return _become_ready(machine, event, now, "StartedOutsideAutoscaler", message, fx.EventType.NORMAL)


RELEASED_BOOT_REASONS: Final = frozenset({"BootCancelled", "CoolingDown"})
"""Shutdown reasons of a boot CA let go of: cancelled before it registered, or released after it failed."""


def released_boot_came_up(machine: Machine, now: datetime) -> bool:
    """Whether a Node Ready now is the late result of a boot CA let go of, which CA wants off. Pure.

    A boot cannot be called back once its power-on went out: the machine may register after the boot was
    cancelled (DecreaseTargetSize, DeleteNodes of a creating instance) or after a failed boot was released. CA
    was told the instance is gone, so adopting the machine would leave it on past what CA asked for (and past
    maxSize when CA refilled the slot). Later than `bootTimeout` after the release, it was powered on by someone.
    """
    return machine.config.power_policy in (PowerPolicy.AUTO, PowerPolicy.OFF) and _released_boot_may_come_up(
        machine, now
    )


def _up_after_release(machine: Machine, event: NodeReady, now: datetime) -> Transition:
    """Adopt a machine that came up by itself, or power off the late result of a boot CA let go of."""
    if not released_boot_came_up(machine, now):
        return _started_outside(machine, event, now)
    provider_id = event.provider_id or stamped_provider_id(machine.config)
    observed = _update(machine, **_observed_changes(machine, event, now, provider_id))
    # The providerID lets CA match the Node to its group (as an instance being deleted) while it powers off.
    stamp: tuple[fx.Effect, ...] = () if event.provider_id else (fx.SetProviderID(provider_id),)
    powering_off = _begin_power_off(observed, now, drain=True)
    message = (
        f"Kubernetes Node {machine.config.kubernetes_node_name} became Ready after its boot was let go of "
        f"({machine.status.reason}); powering it off as Cluster Autoscaler asked"
    )
    notice = fx.RecordEvent(fx.EventType.NORMAL, "ReleasedBootCameUp", message)
    return Transition(powering_off.machine, (*stamp, *powering_off.effects, notice))


def _observed_changes(machine: Machine, event: NodeReady, now: datetime, provider_id: str | None) -> dict[str, Any]:
    """Status fields to update from a Ready Node: its snapshot and providerID, when they changed."""
    changes: dict[str, Any] = {}
    if not _same_snapshot(machine.status.last_ready, event.snapshot):
        changes["last_ready"] = _stamped(event.snapshot, now)
    if provider_id != machine.status.provider_id:
        changes["provider_id"] = provider_id
    return changes


def _refresh_ready(machine: Machine, event: NodeReady, now: datetime) -> Transition:
    provider_id = event.provider_id or stamped_provider_id(machine.config)
    changes = _observed_changes(machine, event, now, provider_id)
    effects = () if event.provider_id else (fx.SetProviderID(provider_id),)
    return Transition(_update(machine, **changes) if changes else machine, effects)


def _record_snapshot(machine: Machine, event: NodeReady, now: datetime) -> Transition:
    # No effects: the Node is being powered off or is in a person's hands. A Node that re-registered
    # without a providerID is recorded as such, so the way back to Ready stamps one.
    changes = _observed_changes(machine, event, now, event.provider_id)
    return Transition(_update(machine, **changes) if changes else machine)


def _stopped_outside(machine: Machine, event: NodeGone, now: datetime) -> Transition:
    was = machine.status.state.value
    message = (
        f"Kubernetes Node {machine.config.kubernetes_node_name} disappeared while {was}: stopped outside the autoscaler"
    )
    return _powered_off(machine, now, "StoppedOutsideAutoscaler", message, fx.EventType.WARNING)


def _power_off(machine: Machine, event: PowerOffRequested, now: datetime) -> Transition:
    policy = machine.config.power_policy
    if policy is PowerPolicy.ON:
        raise InvalidTransition(machine.status.state, event, "kept on by powerPolicy On")
    if policy is PowerPolicy.MAINTENANCE:
        raise InvalidTransition(machine.status.state, event, "powerPolicy is Maintenance")
    return _begin_power_off(machine, now, event.drain)


def _drain_finished(machine: Machine, event: DrainFinished, now: datetime) -> Transition:
    if machine.status.operation is not None:
        return Transition(machine)  # a late report: the power-off already moved on
    if event.succeeded:
        return _start_shutdown_job(machine, now, tries=1)
    detail = f": {event.message}" if event.message else ""
    text = f"drain failed{detail}; the machine stays on and schedulable"
    back, stamp = _stamp_missing_provider_id(_enter(machine, NodeState.READY, "DrainFailed", text))
    back = _with_condition(back, now, labels.CONDITION_OPERATION_FAILED, True, "DrainFailed", text)
    return Transition(back, (*stamp, fx.Uncordon(), fx.RecordEvent(fx.EventType.WARNING, "DrainFailed", text)))


def _shutdown_job_succeeded(machine: Machine, event: JobSucceeded, now: datetime) -> Transition:
    if not _is_current_job(machine, event.kind, event.job_name):
        return Transition(machine)
    finished = replace(machine, job_finished=True)
    if machine.kube_node is KubeNodePresence.READY:
        message = f"shutdown Job {event.job_name} succeeded; waiting for the Kubernetes Node to go NotReady"
        return Transition(_update(finished, reason="PoweringOff", message=message))
    return _powered_off(finished, now, "PoweredOff", f"powered off by Job {event.job_name}", fx.EventType.NORMAL)


def _shutdown_job_failed(machine: Machine, event: JobFailed, now: datetime) -> Transition:
    if not _is_current_job(machine, event.kind, event.job_name):
        return Transition(machine)
    detail = f": {event.message}" if event.message else ""
    finished = replace(machine, job_finished=True)
    return _shutdown_failed(finished, now, "ShutdownJobFailed", f"shutdown Job {event.job_name} failed{detail}")


def _node_down_while_shutting_down(machine: Machine, event: NodeNotReady | NodeGone, now: datetime) -> Transition:
    operation = machine.status.operation
    if operation is not None and machine.job_finished and operation.driver is not None:
        if readback.reads_back(machine.config.power):
            return Transition(machine)  # with a BMC only its readback Off confirms the power-off
        return _powered_off(machine, now, "PoweredOff", f"powered off by {_operation_text(operation)}",
                            fx.EventType.NORMAL)
    if operation is not None and machine.job_finished:
        return _powered_off(machine, now, "PoweredOff", f"powered off by Job {operation.job_name}", fx.EventType.NORMAL)
    if operation is None and machine.kube_node is KubeNodePresence.ABSENT:
        message = f"Kubernetes Node {machine.config.kubernetes_node_name} disappeared during the drain"
        return _powered_off(machine, now, "StoppedOutsideAutoscaler", message, fx.EventType.WARNING)
    return Transition(machine)  # the Job's result decides


def _maintenance_job_finished(machine: Machine, event: JobSucceeded | JobFailed, now: datetime) -> Transition:
    if not _is_current_job(machine, event.kind, event.job_name):
        return Transition(machine)
    outcome = "succeeded" if isinstance(event, JobSucceeded) else "failed"
    message = f"{event.kind.value} Job {event.job_name} {outcome} during maintenance"
    return Transition(_update(_without_operation(machine), message=message))


def _timer_fired(machine: Machine, event: TimerFired, now: datetime) -> Transition:
    due = next((t for t in pending_timers(machine) if t.token == event.token and t.kind is event.kind), None)
    if due is None or now < due.deadline:
        # Stale (an older operation's) or early: an early timer is re-armed by `step`.
        return Transition(machine)
    config = machine.config
    if due.kind is TimerKind.BOOT_TIMEOUT:
        operation = machine.status.operation
        assert operation is not None  # pending_timers only arms it with an operation
        took = format_duration(config.boot_timeout_seconds)
        message = f"not Ready within {took} of {_operation_text(operation)}"
        return _boot_failed(machine, now, "BootTimedOut", message)
    if due.kind is TimerKind.SHUTDOWN_TIMEOUT:
        operation = machine.status.operation
        assert operation is not None
        took = format_duration(config.shutdown_timeout_seconds)
        if operation.driver is not None:
            message = f"{_operation_text(operation)} not confirmed off within {took}"
        elif machine.job_finished:
            message = (
                f"shutdown Job {operation.job_name} succeeded but the Kubernetes Node was still Ready after {took}"
            )
        else:
            message = f"shutdown Job {operation.job_name} did not finish within {took}"
        return _shutdown_failed(machine, now, "ShutdownTimedOut", message)
    if due.kind is TimerKind.UNREADY_GRACE:
        grace = format_duration(config.unready_grace_seconds)
        message = f"Kubernetes Node {config.kubernetes_node_name} NotReady for {grace}: treated as powered off"
        return _powered_off(machine, now, "NodeUnready", message, fx.EventType.WARNING)
    if due.kind is TimerKind.READBACK_POLL:
        asked = replace(machine, readback_requested_at=now, readback_in_flight=True)
        return Transition(asked, (fx.ReadPowerState(machine.status.attempts),))
    return Transition(machine)  # COOLDOWN_EXPIRED: the policy rules power the machine on


def _policy_changed(machine: Machine, event: PolicyChanged, now: datetime) -> Transition:
    previous = machine.config.power_policy
    changed = replace(machine, config=replace(machine.config, power_policy=event.policy))
    if event.policy is PowerPolicy.OFF and previous is not PowerPolicy.OFF and machine.status.state is NodeState.READY:
        # A person just asked for Off: power off even after an earlier failed attempt (the rule would not).
        return _begin_power_off(changed, now, drain=True)
    return Transition(changed)


def _reset(machine: Machine, event: ResetRequested, now: datetime) -> Transition:
    if event.token == machine.status.handled_reset:
        return Transition(machine)
    message = f"reset requested ({labels.RESET_ANNOTATION}={event.token}): failure count and cooldown cleared"
    reset = _update(machine, consecutive_failures=0, cooldown_until=None, handled_reset=event.token)
    reset = _clear_condition(reset, now, labels.CONDITION_QUARANTINED, "Reset", message)
    if machine.status.state is NodeState.QUARANTINED:
        reset = _enter(reset, NodeState.SHUTDOWN, "Reset", message)
    return Transition(reset, (fx.RecordEvent(fx.EventType.NORMAL, "Reset", message),))


def _write_failure_message(event: WriteFailed) -> str:
    how = "was permanently refused by the Kubernetes API" if event.permanent else "is still failing after retries"
    detail = event.message
    if len(detail) > _WRITE_FAILURE_DETAIL_LIMIT:
        detail = detail[: _WRITE_FAILURE_DETAIL_LIMIT - 1] + "…"
    return f"{event.effect} {how}: {detail}" if detail else f"{event.effect} {how}"


def _write_failed(machine: Machine, event: WriteFailed, now: datetime) -> Transition:
    """Make a failed Kubernetes write visible on the Node resource: a condition, and a Warning Event once."""
    if event.effect in _UNREPORTED_WRITES:
        return Transition(machine)
    message = _write_failure_message(event)
    current = next((c for c in machine.status.conditions if c.type == labels.CONDITION_WRITE_FAILED), None)
    if (
        current is not None
        and current.status is ConditionStatus.TRUE
        and (current.reason, current.message) == (event.effect, message)
    ):
        return Transition(machine)  # already said; a repeat would only add noise to `kubectl describe`
    failed = _with_condition(machine, now, labels.CONDITION_WRITE_FAILED, True, event.effect, message)
    return Transition(failed, (fx.RecordEvent(fx.EventType.WARNING, "WriteFailed", message),))


def _config_changed(machine: Machine, event: ConfigChanged, now: datetime) -> Transition:
    new, old = event.config, machine.config
    if (new.namespace, new.name) != (old.namespace, old.name):
        raise InvalidTransition(
            machine.status.state, event, f"the configuration is for {new.namespace}/{new.name}, not this machine"
        )
    updated = replace(machine, config=replace(new, power_policy=old.power_policy))
    if new.power_policy is old.power_policy:
        return Transition(updated)
    return _policy_changed(updated, PolicyChanged(new.power_policy), now)


# --------------------------------------------------------------------------------------------------
# Native power (spec.power): command outcomes and readbacks

_READBACK_DETAIL_LIMIT: Final = 512


def _is_current_command(machine: Machine, action: PowerAction, attempt: int) -> bool:
    operation = machine.status.operation
    return (
        operation is not None
        and operation.driver is not None
        and operation.attempt == attempt
        and operation.kind is _KIND_OF_ACTION.get(action)
    )


def _power_command_succeeded(machine: Machine, event: PowerCommandSucceeded, now: datetime) -> Transition:
    operation = machine.status.operation
    if operation is None or not _is_current_command(machine, event.action, event.attempt):
        return Transition(machine)  # late: an older attempt, or an operation that already ended
    driver = readback.driver_text(event.driver)
    if event.action is PowerAction.FORCE_OFF:
        message = f"power cut by {driver} (force-off #{operation.attempt}); waiting for the readback to say Off"
        return Transition(_update(machine, reason="ForcingOff", message=message))
    done = replace(_update(machine, operation=operation.model_copy(update={"commanded": now})), job_finished=True)
    what = f"{event.action.value} #{operation.attempt} done by {driver}"
    if event.action is PowerAction.POWER_ON:
        message = f"{what}; waiting for the Kubernetes Node to become Ready"
        return Transition(_update(done, reason="Booting", message=message))
    if readback.reads_back(machine.config.power):
        bmc = readback.driver_text(machine.config.power.readback_driver if machine.config.power else None)
        return Transition(_update(done, reason="PoweringOff", message=f"{what}; waiting for {bmc} to read it Off"))
    if machine.kube_node is KubeNodePresence.READY:
        message = f"{what}; waiting for the Kubernetes Node to go NotReady"
        return Transition(_update(done, reason="PoweringOff", message=message))
    return _powered_off(done, now, "PoweredOff", f"powered off by {_operation_text(operation)}", fx.EventType.NORMAL)


def _power_command_failed(machine: Machine, event: PowerCommandFailed, now: datetime) -> Transition:
    if not _is_current_command(machine, event.action, event.attempt):
        return Transition(machine)
    detail = event.message[:_READBACK_DETAIL_LIMIT]
    text = f"{event.action.value} #{event.attempt} by {readback.driver_text(event.driver)} failed ({event.failure})"
    text += f": {detail}" if detail else ""
    finished = replace(machine, job_finished=True)
    if event.action is PowerAction.POWER_ON:
        return _boot_failed(finished, now, "PowerOnFailed", text)
    return _shutdown_failed(finished, now, "PowerOffFailed", text)


def _maintenance_command_finished(
    machine: Machine, event: PowerCommandSucceeded | PowerCommandFailed, now: datetime
) -> Transition:
    if not _is_current_command(machine, event.action, event.attempt):
        return Transition(machine)
    outcome = "done" if isinstance(event, PowerCommandSucceeded) else f"failed ({event.failure})"
    message = f"{event.action.value} #{event.attempt} {outcome} during maintenance"
    return Transition(_update(_without_operation(machine), message=message))


def _power_state_observed(machine: Machine, event: PowerStateObserved, now: datetime) -> Transition:
    """Record the readback (clearing PowerReadbackFailing), then act on it as the machine's state says."""
    previous = machine.status.power_readback
    observed = replace(
        _update(machine, power_readback=PowerReadback(state=event.state, observed_at=now, driver=event.driver)),
        readback_in_flight=False,
    )
    observed = _clear_readback_failing(observed, now, event)
    state = machine.status.state
    if state is NodeState.STARTING_UP:
        return _readback_while_booting(observed, event, now)
    if state is NodeState.SHUTTING_DOWN:
        return _readback_while_shutting_down(observed, event, now)
    if event.state is PowerState.ON and released_boot_came_up(machine, now):
        return _power_off_released_boot(observed, event, now)
    was_on = previous is not None and previous.state is PowerState.ON
    if event.state is PowerState.ON and not was_on and state in _BELIEVED_OFF:
        # The adoption rules act when its Kubernetes Node becomes Ready (NodeReady), exactly as without a BMC.
        message = (
            f"{event.driver.value} reads the machine On while it is {state.value}: powered on outside the autoscaler; "
            "it is adopted when its Kubernetes Node becomes Ready"
        )
        return Transition(observed, (fx.RecordEvent(fx.EventType.NORMAL, "PoweredOnOutsideAutoscaler", message),))
    return Transition(observed)


_BELIEVED_OFF: Final = frozenset({NodeState.SHUTDOWN, NodeState.BOOT_FAILED, NodeState.QUARANTINED})


def _power_off_released_boot(machine: Machine, event: PowerStateObserved, now: datetime) -> Transition:
    """A boot CA let go of reads On: power it off now, whether it is still booting or hung before registering.

    Without a BMC only a registering Node shows such a machine (`_up_after_release`); with one, a machine that
    hangs in firmware or never starts its kubelet would otherwise stay on, drawing power, with CA believing it gone.
    A Ready Node is left to that rule, which drains it first.
    """
    if machine.kube_node is KubeNodePresence.READY:
        return Transition(machine)
    cause = (
        f"{event.driver.value} reads it On after its boot was let go of ({machine.status.reason}) and its "
        "Kubernetes Node is not Ready; Cluster Autoscaler asked for it gone"
    )
    powering_off = _start_shutdown_job(_without_operation(machine), now, tries=1, cause=cause)
    # One Event naming why, in place of the generic PoweringOff one.
    command = tuple(effect for effect in powering_off.effects if not isinstance(effect, fx.RecordEvent))
    notice = fx.RecordEvent(fx.EventType.NORMAL, "ReleasedBootPoweredOn", f"powering it off: {cause}")
    return Transition(powering_off.machine, (*command, notice))


def _clear_readback_failing(machine: Machine, now: datetime, event: PowerStateObserved) -> Machine:
    current = next(
        (c for c in machine.status.conditions if c.type == labels.CONDITION_POWER_READBACK_FAILING), None
    )
    if current is None or current.status is not ConditionStatus.TRUE:
        return machine
    message = f"{event.driver.value} reads the power state again"
    return _with_condition(machine, now, labels.CONDITION_POWER_READBACK_FAILING, False, "ReadBack", message)


def _readback_while_booting(machine: Machine, event: PowerStateObserved, now: datetime) -> Transition:
    """On: keep waiting for the Node. Off after the grace: send the power-on again, then fail the boot."""
    operation = machine.status.operation
    if operation is None or operation.driver is None:
        return Transition(machine)  # queued for a boot slot: nothing was sent yet
    config = machine.config
    if event.state is PowerState.ON:
        if machine.status.reason == "PoweringOn" or machine.status.reason == "Booting":
            message = f"{event.driver.value} reads it On; waiting for the Kubernetes Node to become Ready"
            return Transition(_update(machine, reason="PoweredOn", message=message))
        return Transition(machine)
    sent = operation.commanded or operation.started
    if now < sent + timedelta(seconds=config.power_on_grace_seconds):
        return Transition(machine)
    grace = format_duration(config.power_on_grace_seconds)
    text = f"{event.driver.value} still reads it Off {grace} after {_operation_text(operation)}"
    tries = machine.status.operation_tries
    if tries < 1 + config.power_on_retries:
        # A new attempt (never the same one twice); the boot keeps its start, so bootTimeout bounds all attempts.
        retried = _start_boot(_without_operation(machine), now, tries=tries + 1, started_at=operation.started)
        warning = fx.RecordEvent(fx.EventType.WARNING, "PowerOnRetry", f"{text}; sending it again")
        return Transition(retried.machine, (warning, *retried.effects))
    return _boot_failed(machine, now, "PowerOnNotObserved", f"{text} ({tries} tries)")


def _readback_while_shutting_down(machine: Machine, event: PowerStateObserved, now: datetime) -> Transition:
    """Off: the power-off is confirmed. Still On after the BMC's forceOffAfter: cut the power, once."""
    operation = machine.status.operation
    if operation is None or operation.driver is None:
        return Transition(machine)  # draining, or a Job powers it off: the Job's rules decide
    if event.state is PowerState.OFF:
        message = f"{event.driver.value} reads it Off after {_operation_text(operation)}"
        return _powered_off(machine, now, "PoweredOff", message, fx.EventType.NORMAL)
    power = machine.config.power
    force_after = readback.force_off_after_seconds(power)
    commanded = operation.commanded
    if (
        force_after is None
        or power is None
        or power.force_off_driver is None
        or commanded is None
        or operation.forced_off is not None
        or now < commanded + timedelta(seconds=force_after)
    ):
        return Transition(machine)
    forced = operation.model_copy(update={"forced_off": now})
    message = (
        f"{event.driver.value} still reads it On {format_duration(force_after)} after {_operation_text(operation)}; "
        f"cutting the power (force-off by {power.force_off_driver.value})"
    )
    cut = _update(machine, operation=forced, reason="ForcingOff", message=message)
    return Transition(
        cut,
        (
            fx.SendPowerCommand(PowerAction.FORCE_OFF, operation.attempt, operation.job_name),
            fx.RecordEvent(fx.EventType.WARNING, "ForcingOff", message),
        ),
    )


def _power_readback_failed(machine: Machine, event: PowerReadbackFailed, now: datetime) -> Transition:
    """Make a failed readback visible (a condition, and a Warning Event once per new failure); never a move."""
    answered = replace(machine, readback_in_flight=False)
    detail = event.message[:_READBACK_DETAIL_LIMIT]
    message = f"{readback.driver_text(event.driver)} could not read the power state ({event.failure})"
    message += f": {detail}" if detail else ""
    current = next((c for c in answered.status.conditions if c.type == labels.CONDITION_POWER_READBACK_FAILING), None)
    if (
        current is not None
        and current.status is ConditionStatus.TRUE
        and (current.reason, current.message) == (event.failure, message)
    ):
        return Transition(answered)
    failing = _with_condition(answered, now, labels.CONDITION_POWER_READBACK_FAILING, True, event.failure, message)
    return Transition(failing, (fx.RecordEvent(fx.EventType.WARNING, "PowerReadbackFailed", message),))


# --------------------------------------------------------------------------------------------------
# The transition table


HandlerFunction = Callable[[Machine, Any, datetime], Transition]


@dataclass(frozen=True)
class Rule:
    """A legal (state, event) cell: its handler, every state it may lead to, and what it does."""

    handler: HandlerFunction
    targets: tuple[NodeState, ...]
    summary: str

    def __call__(self, machine: Machine, event: Event, now: datetime) -> Transition:
        return self.handler(machine, event, now)


class _Ignore:
    """The marker of a legal event that changes nothing in that state (idempotent or late)."""

    _instance: _Ignore | None = None

    def __new__(cls) -> _Ignore:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "IGNORE"

    def __reduce__(self) -> str:
        return "IGNORE"


IGNORE: Final = _Ignore()

_OBSERVE_SUMMARY: Final = "record the Kubernetes Node's presence"


def _stay(state: NodeState, summary: str = _OBSERVE_SUMMARY) -> Rule:
    return Rule(_observe_only, (state,), summary)


_READBACK_TARGETS: Final = {
    NodeState.STARTING_UP: (NodeState.STARTING_UP, NodeState.BOOT_FAILED),
    NodeState.SHUTTING_DOWN: (NodeState.SHUTTING_DOWN, NodeState.SHUTDOWN),
}
_READBACK_SUMMARIES: Final = {
    NodeState.STARTING_UP: "record the readback; Off powerOnGrace after the power-on: send it again as a new attempt"
    " (powerOnRetries), then failed boot",
    NodeState.SHUTTING_DOWN: "record the readback; Off: powered off (Node deleted with policy Delete); still On"
    " forceOffAfter after a graceful off: force-off, once",
    NodeState.SHUTDOWN: "record the readback; On: a Normal Event, adopted by the NodeReady rules",
    NodeState.BOOT_FAILED: "record the readback; On: a Normal Event, adopted by the NodeReady rules",
    NodeState.QUARANTINED: "record the readback; On: a Normal Event, adopted by the NodeReady rules",
}


def _common_cells(state: NodeState) -> dict[tuple[NodeState, type[Event]], Rule | _Ignore]:
    """Cells every state shares: policy, reset, configuration and write-failure reports are never refused."""
    policy_targets = (state, NodeState.SHUTTING_DOWN) if state is NodeState.READY else (state,)
    reset_targets = (NodeState.QUARANTINED, NodeState.SHUTDOWN) if state is NodeState.QUARANTINED else (state,)
    policy_summary = "store the policy; the policy rules act on it"
    if state is NodeState.READY:
        policy_summary = "store the policy; a change to Off powers off with drain, even after a failed attempt"
    return {
        (state, PolicyChanged): Rule(_policy_changed, policy_targets, policy_summary),
        (state, ResetRequested): Rule(
            _reset,
            reset_targets,
            "a new token clears failures and cooldown"
            + ("; leave quarantine for Shutdown" if state is NodeState.QUARANTINED else "")
            + "; a handled token is ignored",
        ),
        (state, ConfigChanged): Rule(
            _config_changed, policy_targets, "apply the new settings; a different powerPolicy is a PolicyChanged"
        ),
        (state, PowerStateObserved): Rule(
            _power_state_observed,
            _READBACK_TARGETS.get(state, (state,)),
            _READBACK_SUMMARIES.get(state, "record the readback (PowerReadbackFailing cleared)"),
        ),
        (state, PowerReadbackFailed): Rule(
            _power_readback_failed,
            (state,),
            "set the PowerReadbackFailing condition (reason: the failure) and record a Warning once; no move",
        ),
        (state, WriteFailed): Rule(
            _write_failed,
            (state,),
            "set the KubernetesWriteFailed condition and record a WriteFailed Warning (not again for the same"
            " failure; nothing at all for a failed status or Event write)",
        ),
    }


TRANSITIONS: Final[dict[tuple[NodeState, type[Event]], Rule | _Ignore]] = {
    # Shutdown: powered off and available.
    (NodeState.SHUTDOWN, PowerOnRequested): Rule(
        _power_on,
        (NodeState.STARTING_UP,),
        "start the startup Job (or queue for a boot slot); refused while cooling down or with powerPolicy"
        " Off/Maintenance",
    ),
    (NodeState.SHUTDOWN, BootSlotGranted): IGNORE,
    (NodeState.SHUTDOWN, PowerOffRequested): IGNORE,
    (NodeState.SHUTDOWN, JobSucceeded): IGNORE,
    (NodeState.SHUTDOWN, JobFailed): IGNORE,
    (NodeState.SHUTDOWN, DrainFinished): IGNORE,
    (NodeState.SHUTDOWN, NodeReady): Rule(
        _up_after_release,
        (NodeState.READY, NodeState.SHUTTING_DOWN),
        "adopt a machine started outside the autoscaler; power off one whose cancelled or released boot came up"
        " within bootTimeout",
    ),
    (NodeState.SHUTDOWN, NodeNotReady): _stay(NodeState.SHUTDOWN),
    (NodeState.SHUTDOWN, NodeGone): _stay(NodeState.SHUTDOWN),
    (NodeState.SHUTDOWN, TimerFired): Rule(
        _timer_fired,
        (NodeState.SHUTDOWN,),
        "cooldown over: the policy rules boot a powerPolicy On machine again; readback due: read the power state",
    ),
    (NodeState.SHUTDOWN, PowerCommandSucceeded): IGNORE,
    (NodeState.SHUTDOWN, PowerCommandFailed): IGNORE,
    **_common_cells(NodeState.SHUTDOWN),
    # StartingUp: queued for a boot slot, or the startup Job runs / the machine boots.
    (NodeState.STARTING_UP, PowerOnRequested): Rule(
        _take_over_exercise,
        (NodeState.STARTING_UP,),
        "an exercise boot becomes a normal boot (CA asked for a machine); otherwise nothing (already booting)",
    ),
    (NodeState.STARTING_UP, BootSlotGranted): Rule(
        _grant_boot_slot, (NodeState.STARTING_UP,), "a queued machine starts its startup Job (duplicate grants ignored)"
    ),
    (NodeState.STARTING_UP, PowerOffRequested): Rule(
        _cancel_boot_request, (NodeState.SHUTDOWN,), "cancel the boot: delete the running Job; no failure counted"
    ),
    (NodeState.STARTING_UP, CancelBoot): Rule(
        _cancel_boot_request,
        (NodeState.SHUTDOWN, NodeState.QUARANTINED),
        "cancel the boot: delete the running Job; no failure counted, unless CA gave it up (DeleteNodes): then a "
        "failed boot, released to its cooldown",
    ),
    (NodeState.STARTING_UP, JobSucceeded): Rule(
        _startup_job_succeeded,
        (NodeState.STARTING_UP,),
        "note the Job finished; wait for the Kubernetes Node (stale Jobs ignored)",
    ),
    (NodeState.STARTING_UP, JobFailed): Rule(
        _startup_job_failed,
        (NodeState.BOOT_FAILED,),
        "failed boot: count it, cool down, report to CA (stale Jobs ignored)",
    ),
    (NodeState.STARTING_UP, DrainFinished): IGNORE,
    (NodeState.STARTING_UP, NodeReady): Rule(
        _booted, (NodeState.READY,), "booted: providerID, uncordon, managed labels and taints, failures cleared"
    ),
    (NodeState.STARTING_UP, NodeNotReady): _stay(NodeState.STARTING_UP, "registered, not Ready yet: keep waiting"),
    (NodeState.STARTING_UP, NodeGone): _stay(NodeState.STARTING_UP),
    (NodeState.STARTING_UP, TimerFired): Rule(
        _timer_fired,
        (NodeState.STARTING_UP, NodeState.BOOT_FAILED),
        "boot timeout: failed boot (stale timers ignored); readback due: read the power state",
    ),
    (NodeState.STARTING_UP, PowerCommandSucceeded): Rule(
        _power_command_succeeded,
        (NodeState.STARTING_UP,),
        "note the power-on was sent; wait for the Kubernetes Node (older attempts ignored)",
    ),
    (NodeState.STARTING_UP, PowerCommandFailed): Rule(
        _power_command_failed,
        (NodeState.STARTING_UP, NodeState.BOOT_FAILED),
        "failed boot naming the failure (e.g. CredentialsRejected): count it, cool down, report to CA (older"
        " attempts ignored)",
    ),
    **_common_cells(NodeState.STARTING_UP),
    # Ready: on, and a Ready Kubernetes Node.
    (NodeState.READY, PowerOnRequested): Rule(
        _take_over_exercise,
        (NodeState.READY,),
        "an exercised machine becomes a normal one: uncordoned, exercise taint removed; otherwise nothing",
    ),
    (NodeState.READY, BootSlotGranted): IGNORE,
    (NodeState.READY, PowerOffRequested): Rule(
        _power_off,
        (NodeState.SHUTTING_DOWN,),
        "cordon, then drain or start the shutdown Job; refused with powerPolicy On/Maintenance",
    ),
    (NodeState.READY, JobSucceeded): IGNORE,
    (NodeState.READY, JobFailed): IGNORE,
    (NodeState.READY, DrainFinished): IGNORE,
    (NodeState.READY, NodeReady): Rule(
        _refresh_ready, (NodeState.READY,), "refresh the recorded Node snapshot and providerID when they changed"
    ),
    (NodeState.READY, NodeNotReady): _stay(NodeState.READY, "start the unready grace timer"),
    (NodeState.READY, NodeGone): Rule(_stopped_outside, (NodeState.SHUTDOWN,), "stopped outside the autoscaler"),
    (NodeState.READY, TimerFired): Rule(
        _timer_fired,
        (NodeState.READY, NodeState.SHUTDOWN),
        "unready grace over: treated as powered off (Node deleted with policy Delete); readback due: read the power"
        " state",
    ),
    (NodeState.READY, PowerCommandSucceeded): IGNORE,
    (NodeState.READY, PowerCommandFailed): IGNORE,
    **_common_cells(NodeState.READY),
    # ShuttingDown: draining, or the shutdown Job runs, or waiting for the Node to go away.
    (NodeState.SHUTTING_DOWN, PowerOnRequested): Rule(
        _take_over_exercise,
        (NodeState.READY,),
        "an exercised machine being drained stays on, Ready and uncordoned (CA asked for a machine); refused "
        "otherwise (shutting down)",
    ),
    (NodeState.SHUTTING_DOWN, BootSlotGranted): IGNORE,
    (NodeState.SHUTTING_DOWN, PowerOffRequested): IGNORE,
    (NodeState.SHUTTING_DOWN, JobSucceeded): Rule(
        _shutdown_job_succeeded,
        (NodeState.SHUTTING_DOWN, NodeState.SHUTDOWN),
        "off once the Node is NotReady or gone (deleted with policy Delete), else wait",
    ),
    (NodeState.SHUTTING_DOWN, JobFailed): Rule(
        _shutdown_job_failed,
        (NodeState.SHUTTING_DOWN, NodeState.READY, NodeState.SHUTDOWN),
        "retry with a new Job, then give up: Ready and uncordoned (Shutdown if the Node is gone)",
    ),
    (NodeState.SHUTTING_DOWN, DrainFinished): Rule(
        _drain_finished,
        (NodeState.SHUTTING_DOWN, NodeState.READY),
        "drained: start the shutdown Job; drain failed: Ready, uncordoned",
    ),
    (NodeState.SHUTTING_DOWN, NodeReady): Rule(
        _record_snapshot,
        (NodeState.SHUTTING_DOWN,),
        "record the Node snapshot (kept current in case the power-off fails)",
    ),
    (NodeState.SHUTTING_DOWN, NodeNotReady): Rule(
        _node_down_while_shutting_down,
        (NodeState.SHUTTING_DOWN, NodeState.SHUTDOWN),
        "off if the Job already succeeded",
    ),
    (NodeState.SHUTTING_DOWN, NodeGone): Rule(
        _node_down_while_shutting_down,
        (NodeState.SHUTTING_DOWN, NodeState.SHUTDOWN),
        "off if the Job already succeeded, or if the Node vanished during the drain",
    ),
    (NodeState.SHUTTING_DOWN, TimerFired): Rule(
        _timer_fired,
        (NodeState.SHUTTING_DOWN, NodeState.READY, NodeState.SHUTDOWN),
        "shutdown timeout: retry, then give up like a failed Job; readback due: read the power state",
    ),
    (NodeState.SHUTTING_DOWN, PowerCommandSucceeded): Rule(
        _power_command_succeeded,
        (NodeState.SHUTTING_DOWN, NodeState.SHUTDOWN),
        "with a BMC: wait for its readback Off; without (SSH): off once the Node is NotReady or gone",
    ),
    (NodeState.SHUTTING_DOWN, PowerCommandFailed): Rule(
        _power_command_failed,
        (NodeState.SHUTTING_DOWN, NodeState.READY, NodeState.SHUTDOWN),
        "like a failed shutdown Job: retry as a new attempt, then give up (Ready and uncordoned)",
    ),
    **_common_cells(NodeState.SHUTTING_DOWN),
    # BootFailed: the last boot failed; CA sees a failed creation until it lets the machine go.
    (NodeState.BOOT_FAILED, BootSlotGranted): IGNORE,
    (NodeState.BOOT_FAILED, PowerOffRequested): Rule(
        _release_request,
        (NodeState.SHUTDOWN, NodeState.QUARANTINED),
        "released by CA: Shutdown (cooling down), or Quarantined after too many",
    ),
    (NodeState.BOOT_FAILED, CancelBoot): Rule(
        _release_request,
        (NodeState.SHUTDOWN, NodeState.QUARANTINED),
        "released by CA: Shutdown (cooling down), or Quarantined after too many",
    ),
    (NodeState.BOOT_FAILED, JobSucceeded): IGNORE,
    (NodeState.BOOT_FAILED, JobFailed): IGNORE,
    (NodeState.BOOT_FAILED, DrainFinished): IGNORE,
    (NodeState.BOOT_FAILED, NodeReady): Rule(_started_outside, (NodeState.READY,), "it came up after all: adopt it"),
    (NodeState.BOOT_FAILED, NodeNotReady): _stay(NodeState.BOOT_FAILED),
    (NodeState.BOOT_FAILED, NodeGone): _stay(NodeState.BOOT_FAILED),
    (NodeState.BOOT_FAILED, TimerFired): Rule(
        _timer_fired, (NodeState.BOOT_FAILED,), "readback due: read the power state"
    ),
    (NodeState.BOOT_FAILED, PowerCommandSucceeded): IGNORE,
    (NodeState.BOOT_FAILED, PowerCommandFailed): IGNORE,
    **_common_cells(NodeState.BOOT_FAILED),
    # Quarantined: never chosen until a person resets it.
    (NodeState.QUARANTINED, BootSlotGranted): IGNORE,
    (NodeState.QUARANTINED, PowerOffRequested): IGNORE,
    (NodeState.QUARANTINED, JobSucceeded): IGNORE,
    (NodeState.QUARANTINED, JobFailed): IGNORE,
    (NodeState.QUARANTINED, DrainFinished): IGNORE,
    (NodeState.QUARANTINED, NodeReady): Rule(
        _started_outside, (NodeState.READY,), "started by a person: adopt it, quarantine cleared"
    ),
    (NodeState.QUARANTINED, NodeNotReady): _stay(NodeState.QUARANTINED),
    (NodeState.QUARANTINED, NodeGone): _stay(NodeState.QUARANTINED),
    (NodeState.QUARANTINED, TimerFired): Rule(
        _timer_fired, (NodeState.QUARANTINED,), "readback due: read the power state"
    ),
    (NodeState.QUARANTINED, PowerCommandSucceeded): IGNORE,
    (NodeState.QUARANTINED, PowerCommandFailed): IGNORE,
    **_common_cells(NodeState.QUARANTINED),
    # Maintenance: out of the autoscaler's hands.
    (NodeState.MAINTENANCE, BootSlotGranted): IGNORE,
    (NodeState.MAINTENANCE, JobSucceeded): Rule(
        _maintenance_job_finished, (NodeState.MAINTENANCE,), "record that the Job left running finished"
    ),
    (NodeState.MAINTENANCE, JobFailed): Rule(
        _maintenance_job_finished, (NodeState.MAINTENANCE,), "record that the Job left running finished"
    ),
    (NodeState.MAINTENANCE, DrainFinished): IGNORE,
    (NodeState.MAINTENANCE, NodeReady): Rule(
        _record_snapshot, (NodeState.MAINTENANCE,), "record the Node snapshot only"
    ),
    (NodeState.MAINTENANCE, NodeNotReady): _stay(NodeState.MAINTENANCE),
    (NodeState.MAINTENANCE, NodeGone): _stay(NodeState.MAINTENANCE),
    (NodeState.MAINTENANCE, TimerFired): IGNORE,
    (NodeState.MAINTENANCE, PowerCommandSucceeded): Rule(
        _maintenance_command_finished, (NodeState.MAINTENANCE,), "record that the power command left running finished"
    ),
    (NodeState.MAINTENANCE, PowerCommandFailed): Rule(
        _maintenance_command_finished, (NodeState.MAINTENANCE,), "record that the power command left running finished"
    ),
    **_common_cells(NodeState.MAINTENANCE),
}
"""(state, event type) → what happens. Cells not listed are illegal and raise InvalidTransition."""

_ILLEGAL_REASONS: Final[dict[tuple[NodeState, type[Event]], str]] = {
    (NodeState.BOOT_FAILED, PowerOnRequested): "its last boot failed and CA has not released it yet",
    (NodeState.QUARANTINED, PowerOnRequested): "quarantined after repeated failed boots",
    (NodeState.MAINTENANCE, PowerOnRequested): "in maintenance (powerPolicy Maintenance)",
    (NodeState.MAINTENANCE, PowerOffRequested): "in maintenance (powerPolicy Maintenance)",
}


def _why_illegal(machine: Machine, event: Event) -> str:
    state = machine.status.state
    reason = _ILLEGAL_REASONS.get((state, type(event)))
    if reason is not None and state is NodeState.QUARANTINED:
        failures = machine.status.consecutive_failures
        return f"{reason} ({failures}); set the annotation {labels.RESET_ANNOTATION} to a new value to release it"
    if reason is not None:
        return reason
    if isinstance(event, CancelBoot):
        return "only a boot that is starting or has failed can be cancelled"
    return f"{type(event).__name__} has no meaning in state {state.value}"


# --------------------------------------------------------------------------------------------------
# Power-policy rules, applied after every accepted event until none applies


PolicyMove = Callable[[Machine, datetime], Transition]


@dataclass(frozen=True)
class PolicyRule:
    """When the machine's policy and state match (and `applies` agrees), make `move`."""

    policies: tuple[PowerPolicy, ...]
    states: tuple[NodeState, ...]
    move: PolicyMove
    targets: tuple[NodeState, ...]
    summary: str
    applies: Callable[[Machine, datetime], bool] = lambda machine, now: True

    def matches(self, machine: Machine, now: datetime) -> bool:
        return (
            machine.config.power_policy in self.policies
            and machine.status.state in self.states
            and self.applies(machine, now)
        )


def _not_after_failed_power_off(machine: Machine, now: datetime) -> bool:
    return machine.status.reason not in _AFTER_FAILED_POWER_OFF


def _cooldown_over(machine: Machine, now: datetime) -> bool:
    return not is_cooling_down(machine.status, now)


def _power_off_with_drain(machine: Machine, now: datetime) -> Transition:
    return _begin_power_off(machine, now, drain=True)


_ALL_BUT_MAINTENANCE: Final = tuple(state for state in NodeState if state is not NodeState.MAINTENANCE)
_NOT_MAINTENANCE_POLICIES: Final = (PowerPolicy.AUTO, PowerPolicy.ON, PowerPolicy.OFF)

POLICY_RULES: Final[tuple[PolicyRule, ...]] = (
    PolicyRule(
        (PowerPolicy.MAINTENANCE,),
        _ALL_BUT_MAINTENANCE,
        _enter_maintenance,
        (NodeState.MAINTENANCE,),
        "enter maintenance: timers stop, a running Job is left alone",
    ),
    PolicyRule(
        _NOT_MAINTENANCE_POLICIES,
        (NodeState.MAINTENANCE,),
        _leave_maintenance,
        (NodeState.READY, NodeState.SHUTDOWN),
        "leave maintenance: Ready (uncordoned) if the Node is Ready, else Shutdown; a Job still running is deleted",
    ),
    PolicyRule(
        (PowerPolicy.AUTO,),
        (NodeState.READY,),
        _exercise_checked,
        (NodeState.SHUTTING_DOWN,),
        "exercise checked (the Node is Ready): power off again with drain (not again after a failed power-off)",
        _exercise_due_for_check,
    ),
    PolicyRule(
        (PowerPolicy.AUTO,),
        (NodeState.BOOT_FAILED,),
        _exercise_failed,
        (NodeState.SHUTDOWN, NodeState.QUARANTINED),
        "exercise boot failed: CA never saw it, so release it at once (cooldown, or quarantine after too many)",
        _exercising,
    ),
    PolicyRule(
        (PowerPolicy.ON, PowerPolicy.OFF),
        (NodeState.BOOT_FAILED,),
        _release_failed_boot,
        (NodeState.SHUTDOWN, NodeState.QUARANTINED),
        "not driven by CA: release the failed boot at once",
    ),
    PolicyRule((PowerPolicy.OFF,), (NodeState.STARTING_UP,), _cancel_boot, (NodeState.SHUTDOWN,), "cancel the boot"),
    PolicyRule(
        (PowerPolicy.OFF,),
        (NodeState.READY,),
        _power_off_with_drain,
        (NodeState.SHUTTING_DOWN,),
        "power off with drain (not again by itself after a failed power-off)",
        _not_after_failed_power_off,
    ),
    PolicyRule(
        (PowerPolicy.ON,),
        (NodeState.SHUTDOWN,),
        _start_boot,
        (NodeState.STARTING_UP,),
        "power on as soon as any cooldown is over (a cooldown-expired timer waits for it)",
        _cooldown_over,
    ),
)
"""What the power policy does by itself, checked in this order after every accepted event."""

_SETTLE_LIMIT: Final = len(POLICY_RULES) + 1


def settle(machine: Machine, now: datetime) -> Transition:
    """Apply `POLICY_RULES` until none matches. Pure."""
    effects: list[fx.Effect] = []
    for _ in range(_SETTLE_LIMIT):
        rule = next((r for r in POLICY_RULES if r.matches(machine, now)), None)
        if rule is None:
            return Transition(machine, tuple(effects))
        moved = rule.move(machine, now)
        machine = moved.machine
        effects += moved.effects
    raise AssertionError(f"power policy rules do not settle for {machine.status.state}")  # a bug in the rules


# --------------------------------------------------------------------------------------------------
# step


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")


def _observe(machine: Machine, event: Event, now: datetime) -> Machine:
    """Record what a Kubernetes Node event says about the Node, whatever the state."""
    if isinstance(event, NodeReady):
        return replace(machine, kube_node=KubeNodePresence.READY, not_ready_since=None)
    if isinstance(event, NodeGone):
        return replace(machine, kube_node=KubeNodePresence.ABSENT, not_ready_since=None)
    if isinstance(event, NodeNotReady):
        since = machine.not_ready_since if machine.kube_node is KubeNodePresence.NOT_READY else None
        return replace(machine, kube_node=KubeNodePresence.NOT_READY, not_ready_since=since or now)
    return machine


def _bookkeep(before: Machine, after: Machine, now: datetime) -> Machine:
    """Stamp what every change of state implies: since, powered-on time, the conditions that follow the state."""
    old, new = before.status, after.status
    if new.since is None:
        after = _update(after, since=now)
    if new.state is old.state:
        return after
    # The powered-on stretch the old state was in (booting, Ready, shutting down) is closed and added to the totals
    # energy accounting reads, in this same write: accounting never writes the status on its own.
    after = _update(after, since=now, **account_stretch(old, now))
    reason = new.reason or new.state.value
    after = _with_condition(after, now, labels.CONDITION_READY, new.state is NodeState.READY, reason, new.message)
    if new.state is NodeState.QUARANTINED:
        after = _with_condition(after, now, labels.CONDITION_QUARANTINED, True, "Quarantined", new.message)
    elif old.state is NodeState.QUARANTINED:
        after = _with_condition(after, now, labels.CONDITION_QUARANTINED, False, reason, new.message)
    # A failed write belongs to what the machine was doing then; a new state is a fresh start.
    cleared = f"cleared on entering {new.state.value}; a later failed write sets it again"
    return _clear_condition(after, now, labels.CONDITION_WRITE_FAILED, "StateChanged", cleared)


def _timer_effects(before: Machine, after: Machine, now: datetime, fired: str | None) -> tuple[fx.Effect, ...]:
    """Cancel the timers the old state needed and the new does not; start the new ones."""
    old = {t.token: t for t in pending_timers(before) if t.token != fired}  # a fired timer is already gone
    new = {t.token: t for t in pending_timers(after)}
    cancels = [fx.CancelTimer(token) for token, t in old.items() if new.get(token) != t]
    starts = [
        fx.StartTimer(t.kind, token, max(0.0, (t.deadline - now).total_seconds()))
        for token, t in new.items()
        if old.get(token) != t
    ]
    return (*cancels, *starts)


COMMANDS: Final = (PowerOnRequested, BootSlotGranted, PowerOffRequested, CancelBoot)
"""Events that are commands (from the group, on behalf of CA)."""
_OPERATION_STATES: Final = frozenset({NodeState.STARTING_UP, NodeState.SHUTTING_DOWN})


def step(machine: Machine, event: Event, now: datetime) -> Transition:
    """The machine after `event` at `now`, and the effects to execute in order. Pure.

    Raises InvalidTransition (machine unchanged) when the event is not allowed in the machine's state.
    """
    _require_aware(now)
    cell = TRANSITIONS.get((machine.status.state, type(event)))
    if cell is None:
        raise InvalidTransition(machine.status.state, event, _why_illegal(machine, event))
    if isinstance(cell, _Ignore):
        return Transition(machine)
    handled = cell(_observe(machine, event, now), event, now)
    if isinstance(event, WriteFailed | PowerReadbackFailed):
        # Only a report: the state stays, so no policy rule, state bookkeeping or timer can be due because of it
        # (and a failed status write stays free of effects even when a policy rule has just become due).
        settled, final = Transition(handled.machine), handled.machine
    else:
        settled = settle(handled.machine, now)
        ended = _conclude_exercise(settled.machine, now)
        settled = Transition(ended.machine, (*settled.effects, *ended.effects), settled.finished)
        final = _bookkeep(machine, settled.machine, now)
    fired = event.token if isinstance(event, TimerFired) else None
    effects = (*handled.effects, *settled.effects, *_timer_effects(machine, final, now, fired))
    if final.status != machine.status:
        write = fx.PatchStatus(final.status)
        write_ahead = isinstance(event, COMMANDS) and final.status.state in _OPERATION_STATES
        effects = (write, *effects) if write_ahead else (*effects, write)
    return Transition(final, effects, (*handled.finished, *settled.finished))
