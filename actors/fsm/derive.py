"""Rebuilding a machine after a restart (or a gain of leadership) from what the cluster shows.

Separate from `node` because it answers a different question: not "what happens on this event" but "where
are we, given the last status we wrote, the machine's Jobs and its Kubernetes Node". The answer reuses
`step`: the situation is first reconstructed (adopting a Job we created but did not get to record), then
the outcomes that happened while the operator was down are fed in as ordinary events. So a restart can
never take a path the transition table does not allow.

Guarantees: never a CreateJob for a Job that exists; never a power command (spec.power) sent again for an attempt
the status records (what became of it is found out by the power-state readback, which resumes at once, or by the
timeouts); timers re-armed for the time that remains; a garbled status gives the safest state the observations
allow, with a Warning Event saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from pydantic import ValidationError

from actors.fsm import effects as fx
from actors.fsm import readback
from actors.fsm.events import (
    Event,
    JobFailed,
    JobSucceeded,
    NodeGone,
    NodeNotReady,
    NodeReady,
    PolicyChanged,
    PowerCommandSucceeded,
    TimerFired,
)
from actors.fsm.node import (
    KubeNodePresence,
    Machine,
    MachineConfig,
    Transition,
    pending_timers,
    step,
)
from actors.power_port import PowerAction
from schemas.node import NodeSnapshot, NodeState, NodeStatus, Operation, OperationKind

_TIMER_AND_STATUS_EFFECTS = (fx.StartTimer, fx.CancelTimer, fx.PatchStatus)


class JobPhase(StrEnum):
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobObservation:
    """One power Job of the machine as listed (found by the machine label; kind and attempt from labels)."""

    name: str
    kind: OperationKind
    attempt: int
    phase: JobPhase
    created: datetime | None = None
    """metadata.creationTimestamp: when the operation of an adopted Job began."""
    message: str = ""
    """Why it failed, when it did."""


@dataclass(frozen=True)
class KubeNodeObservation:
    """The machine's Kubernetes Node as listed (pass None when it does not exist)."""

    ready: bool
    provider_id: str | None = None
    snapshot: NodeSnapshot = field(default_factory=NodeSnapshot)


def _read_status(raw: NodeStatus | Mapping[str, object] | None) -> tuple[NodeStatus | None, str | None]:
    """The status, or None and why it cannot be trusted."""
    if raw is None:
        return NodeStatus(), None  # a new Node CR: nothing written yet
    if isinstance(raw, NodeStatus):
        status = raw
    else:
        try:
            status = NodeStatus.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return None, f"{where}: {first['msg']}"
    operation = status.operation
    if operation is None or status.state is NodeState.MAINTENANCE:
        return status, None
    expected = {NodeState.STARTING_UP: OperationKind.STARTUP, NodeState.SHUTTING_DOWN: OperationKind.SHUTDOWN}
    if expected.get(status.state) is not operation.kind:
        return None, f"state {status.state.value} cannot have a {operation.kind.value} operation in flight"
    return status, None


def _salvaged_attempts(raw: object) -> int:
    value = raw.get("attempts") if isinstance(raw, Mapping) else None
    return value if isinstance(value, int) and value >= 0 else 0


def _presence(kube_node: KubeNodeObservation | None) -> KubeNodePresence:
    if kube_node is None:
        return KubeNodePresence.ABSENT
    return KubeNodePresence.READY if kube_node.ready else KubeNodePresence.NOT_READY


def _node_event(kube_node: KubeNodeObservation | None) -> Event:
    if kube_node is None:
        return NodeGone()
    if kube_node.ready:
        return NodeReady(provider_id=kube_node.provider_id, snapshot=kube_node.snapshot)
    return NodeNotReady()


def _adopt_newest_job(machine: Machine, jobs: Sequence[JobObservation], now: datetime) -> Machine:
    """A Job numbered beyond status.attempts was created just before a crash: make it the operation."""
    status = machine.status
    newer = [job for job in jobs if job.attempt > status.attempts]
    if not newer:
        return machine
    job = max(newer, key=lambda candidate: candidate.attempt)
    state = NodeState.STARTING_UP if job.kind is OperationKind.STARTUP else NodeState.SHUTTING_DOWN
    started = job.created or now
    previous = status.operation
    retry = previous is not None and previous.kind is job.kind and status.state is state
    tries = status.operation_tries + 1 if retry else 1
    reason = "PoweringOn" if job.kind is OperationKind.STARTUP else "PoweringOff"
    adopted = status.model_copy(
        update={
            "state": state,
            "since": status.since if status.state is state else started,
            "operation": Operation(kind=job.kind, attempt=job.attempt, job_name=job.name, started=started),
            "attempts": job.attempt,
            "operation_tries": tries,
            "reason": reason,
            "message": f"{job.kind.value} Job {job.name} adopted after a restart",
        }
    )
    return replace(machine, status=adopted, job_finished=False)


@dataclass
class _Replay:
    """Feeds events through `step`, keeping the effects that are not re-derived at the end."""

    machine: Machine
    now: datetime
    effects: list[fx.Effect] = field(default_factory=list)
    finished: list[tuple[OperationKind, float]] = field(default_factory=list)

    def feed(self, event: Event) -> None:
        result = step(self.machine, event, self.now)
        self.machine = result.machine
        self.finished += result.finished  # a boot that completed while the operator was down still counts
        self.effects += [effect for effect in result.effects if not isinstance(effect, _TIMER_AND_STATUS_EFFECTS)]


def derive(
    status: NodeStatus | Mapping[str, object] | None,
    config: MachineConfig,
    jobs: Sequence[JobObservation],
    kube_node: KubeNodeObservation | None,
    now: datetime,
) -> Transition:
    """The machine as it stands at `now`, and the effects that bring the cluster in line. Pure.

    `status` is the Node CR status as read (a NodeStatus, the raw mapping, or None when never written);
    `jobs` are the machine's power Jobs; `kube_node` its Kubernetes Node, or None when there is none.

    Four phases: trust or rebuild the status; reconstruct the machine as it stood when the operator went down;
    replay through `step` what happened since; reconcile the cluster with the result.
    """
    trusted, written, opening = _trusted_status(status, jobs, now)
    machine = _reconstruct(config, trusted, jobs, kube_node, now)
    replay = _Replay(machine, now, opening)
    jobs_by_name = {job.name: job for job in jobs}
    _replay_missed_outcomes(replay, jobs_by_name, kube_node, config)
    effects = _reconcile(replay.machine, replay.effects, jobs, jobs_by_name, written, now)
    return Transition(replay.machine, tuple(effects), tuple(replay.finished))


def _trusted_status(
    status: NodeStatus | Mapping[str, object] | None, jobs: Sequence[JobObservation], now: datetime
) -> tuple[NodeStatus, NodeStatus | None, list[fx.Effect]]:
    """Phase 1: the status to start from; the status the cluster holds now (None when it holds nothing usable, so
    the status is written only if it differs); and the Warning Event when the stored one had to be rebuilt."""
    trusted, distrust = _read_status(status)
    highest_attempt = max((job.attempt for job in jobs), default=0)
    opening: list[fx.Effect] = []
    if trusted is None:
        attempts = max(highest_attempt, _salvaged_attempts(status))
        message = f"status could not be trusted ({distrust}); rebuilt from the Kubernetes Node and Jobs"
        trusted = NodeStatus(
            state=NodeState.SHUTDOWN, since=now, attempts=attempts, reason="StatusRebuilt", message=message
        )
        opening.append(fx.RecordEvent(fx.EventType.WARNING, "StatusRebuilt", message))
    written = trusted if distrust is None and status is not None else None
    # An older status may count fewer attempts than its own operation: never reuse a Job name.
    operation_attempt = trusted.operation.attempt if trusted.operation else 0
    trusted = trusted.model_copy(
        update={"attempts": max(trusted.attempts, operation_attempt), "since": trusted.since or now}
    )
    return trusted, written, opening


def _reconstruct(
    config: MachineConfig,
    trusted: NodeStatus,
    jobs: Sequence[JobObservation],
    kube_node: KubeNodeObservation | None,
    now: datetime,
) -> Machine:
    """Phase 2: the machine as it stood, with a Job created just before a crash adopted and its Node's presence."""
    presence = _presence(kube_node)
    machine = _adopt_newest_job(Machine(config=config, status=trusted), jobs, now)
    recorded = machine.status.operation
    machine = replace(
        machine,
        kube_node=presence,
        not_ready_since=now if presence is KubeNodePresence.NOT_READY else None,
        # A native command's outcome is recorded in the status (`commanded`); a Job's is read from the Job below.
        job_finished=recorded is not None and recorded.driver is not None and recorded.commanded is not None,
    )
    if readback.reads_back(config.power):
        machine = replace(
            machine,
            readback_requested_at=readback.first_readback_after_restart(
                config.name, machine.status.state, now, config.readback_transition_seconds,
                config.readback_steady_seconds,
            ),
        )
    return machine


def _replay_missed_outcomes(
    replay: _Replay,
    jobs_by_name: Mapping[str, JobObservation],
    kube_node: KubeNodeObservation | None,
    config: MachineConfig,
) -> None:
    """Phase 3: feed what happened while the operator was down, as ordinary events: the current Job's outcome,
    the Kubernetes Node as it is, the deadlines that passed, and the power policy."""
    machine = replay.machine
    operation = machine.status.operation
    current_job = jobs_by_name.get(operation.job_name) if operation else None
    if operation is not None and current_job is not None and current_job.kind is operation.kind:
        if current_job.phase is JobPhase.SUCCEEDED:
            replay.feed(JobSucceeded(operation.kind, operation.job_name))
        elif current_job.phase is JobPhase.FAILED:
            replay.feed(JobFailed(operation.kind, operation.job_name, current_job.message))
    elif (
        operation is not None
        and operation.kind is OperationKind.SHUTDOWN
        and machine.status.state is NodeState.SHUTTING_DOWN
        and machine.kube_node is not KubeNodePresence.READY
    ):
        if operation.driver is None:
            # The shutdown Job is gone (cleaned up after it finished) and so is the Node: the power-off worked.
            replay.feed(JobSucceeded(operation.kind, operation.job_name))
        elif not machine.job_finished:
            # The power-off's outcome was not recorded before the restart, and the Node is gone: it was carried
            # out (with a BMC, its readback still has the last word).
            replay.feed(PowerCommandSucceeded(PowerAction.POWER_OFF, operation.attempt, operation.driver))

    replay.feed(_node_event(kube_node))
    # Deadlines that passed while we were down; each firing may arm the next (e.g. a shutdown retry).
    for _ in range(len(NodeState)):
        overdue = [timer for timer in pending_timers(replay.machine) if timer.deadline <= replay.now]
        if not overdue:
            break
        replay.feed(TimerFired(overdue[0].kind, overdue[0].token))
    replay.feed(PolicyChanged(config.power_policy))


def _reconcile(
    final: Machine,
    effects: list[fx.Effect],
    jobs: Sequence[JobObservation],
    jobs_by_name: Mapping[str, JobObservation],
    written: NodeStatus | None,
    now: datetime,
) -> list[fx.Effect]:
    """Phase 4: `effects` (the replay's) plus what brings the cluster in line with `final`: the cordon and drain
    lost with the process, the recorded Job that was never created, no second power operation, the timers for the
    time that remains, and the status when it differs from the stored one."""
    deleted = {effect.job_name for effect in effects if isinstance(effect, fx.DeleteJob)}
    final_operation = final.status.operation
    if final.status.state is NodeState.SHUTTING_DOWN:
        effects.append(fx.Cordon())  # the cordon may have been lost with the process
        if final_operation is None:
            effects.append(fx.Drain())  # the drain ran in the process that died
    if (
        final_operation is not None
        and final_operation.driver is None
        and final_operation.job_name not in jobs_by_name
        and final.status.state is not NodeState.MAINTENANCE
        and not any(isinstance(e, fx.CreateJob) and e.job_name == final_operation.job_name for e in effects)
    ):
        # Recorded but never created (or cleaned up unseen): create it; the adapter adopts it if it appears.
        effects.append(fx.CreateJob(final_operation.kind, final_operation.attempt, final_operation.job_name))
    if final.status.state is not NodeState.MAINTENANCE:
        current_name = final_operation.job_name if final_operation else None
        for job in jobs:
            if job.phase is JobPhase.ACTIVE and job.name != current_name and job.name not in deleted:
                effects.append(fx.DeleteJob(job.name))  # never two power operations at once
    effects += [
        fx.StartTimer(timer.kind, timer.token, max(0.0, (timer.deadline - now).total_seconds()))
        for timer in pending_timers(final)
    ]
    if final.status != written:
        effects.append(fx.PatchStatus(final.status))
    return effects
