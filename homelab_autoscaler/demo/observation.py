"""What the demo sees at one moment, what changed since the moment before, and the history of a whole run.

Pure data and pure functions (plus `History`, an accumulator that does no I/O), separate from the scenario that
fetches the data, so the live display, the one-line-per-change log, the scenario's goals and the final summary all
read the same facts and can be tested with hand-made observations.

An `Observation` has two sides, read one right after the other: what Cluster Autoscaler is told over gRPC (each
group's target and instances) and what `kubectl` would show (Group and Node resources as status rows, Kubernetes
Nodes, power Jobs). Comparing the two is the point of the demo: every instance id CA sees must be a registered
Node's providerID, byte for byte.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from homelab_autoscaler.status_view import (
    MachineColumn,
    MachineRow,
    StatusView,
    human_age,
    operation_text,
    seconds_between,
)
from schemas import labels as label_names
from schemas.node import NodeState


class ChangeKind(StrEnum):
    STEP = "step"
    """The scenario began or finished a step."""
    CALL = "call"
    """The stand-in for CA called a mutating RPC."""
    TARGET = "target"
    """A group's target size as CA reads it."""
    INSTANCE = "instance"
    """An instance as CA reads it (creating, running, deleting, with or without an error)."""
    STATE = "state"
    """A machine's power state in its Node resource."""
    JOB = "job"
    """A power Job was created or finished."""
    NODE = "node"
    """A Kubernetes Node registered, got its providerID, was cordoned or was deleted."""
    READBACK = "readback"
    """A natively powered machine's BMC read a different power state back."""


@dataclass(frozen=True)
class InstanceSeen:
    """One instance of NodeGroupNodes."""

    id: str
    state: str
    """`running`, `creating`, `deleting` (the enum names without the `instance` prefix)."""
    error_code: str = ""
    error_message: str = ""

    @property
    def text(self) -> str:
        return f"{self.state} + error {self.error_code}" if self.error_code else self.state


@dataclass(frozen=True)
class GroupSeen:
    """One node group as CA reads it: NodeGroups, then NodeGroupTargetSize and NodeGroupNodes."""

    id: str
    min_size: int
    max_size: int
    target: int
    instances: tuple[InstanceSeen, ...] = ()

    def instance(self, instance_id: str) -> InstanceSeen | None:
        return next((instance for instance in self.instances if instance.id == instance_id), None)


@dataclass(frozen=True)
class KubeNodeSeen:
    """A Kubernetes Node (core/v1), as kubectl shows it, plus the group CA is told it belongs to."""

    name: str
    provider_id: str
    ready: bool
    unschedulable: bool
    group_id: str = ""
    """NodeGroupForNode's answer for it ("" when no group, or not asked)."""


@dataclass(frozen=True)
class JobSeen:
    """A power Job of the operator."""

    name: str
    machine: str
    operation: str
    outcome: str
    """`running`, `succeeded` or `failed`."""


@dataclass(frozen=True)
class Observation:
    """Everything seen in one round of the demo's loop."""

    elapsed: float
    """Seconds since the scenario began (monotonic)."""
    now: datetime
    """Wall-clock time of the round (aware), for ages and cooldowns."""
    groups: tuple[GroupSeen, ...]
    view: StatusView
    kube_nodes: Mapping[str, KubeNodeSeen]
    jobs: tuple[JobSeen, ...]

    def group(self, group_id: str) -> GroupSeen | None:
        return next((group for group in self.groups if group.id == group_id), None)

    def machine(self, name: str) -> MachineRow | None:
        return next((machine for machine in self.view.machines if machine.name == name), None)

    def kube_node(self, name: str) -> KubeNodeSeen | None:
        return self.kube_nodes.get(name)


@dataclass(frozen=True)
class Change:
    """One thing that happened, for the log and the live view's tail."""

    elapsed: float
    kind: ChangeKind
    subject: str
    text: str
    detail: str = ""
    """A longer explanation (a step's), shown on its own line where there is room."""


@dataclass(frozen=True)
class Check:
    """One thing a scenario step waits for, and whether it is seen yet."""

    text: str
    done: bool


@dataclass(frozen=True)
class StepStatus:
    """The step being played, for the live view."""

    number: int
    total: int
    title: str
    explanation: str
    started_at: float
    checks: tuple[Check, ...] = ()
    columns: tuple[MachineColumn, ...] = ()
    """The machine table's columns the step is about, kept before any other on a narrow terminal."""


# --- reading raw API objects -------------------------------------------------------------------------------------


def kube_node_seen(raw: Mapping[str, Any], group_id: str = "") -> KubeNodeSeen:
    """A Kubernetes Node's parts the demo shows. Pure."""
    metadata = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    conditions = (raw.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions if isinstance(c, Mapping))
    return KubeNodeSeen(
        name=str(metadata.get("name") or ""),
        provider_id=str(spec.get("providerID") or ""),
        ready=ready,
        unschedulable=bool(spec.get("unschedulable")),
        group_id=group_id,
    )


def job_seen(raw: Mapping[str, Any]) -> JobSeen | None:
    """A power Job's parts the demo shows, or None for any other Job. Pure."""
    metadata = raw.get("metadata") or {}
    job_labels = metadata.get("labels") or {}
    machine = job_labels.get(label_names.MACHINE_LABEL)
    operation = job_labels.get(label_names.OPERATION_LABEL)
    if not machine or not operation:
        return None
    status = raw.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or () if isinstance(c, Mapping)}
    if conditions.get("Complete") == "True" or conditions.get("SuccessCriteriaMet") == "True":
        outcome = "succeeded"
    elif conditions.get("Failed") == "True" or conditions.get("FailureTarget") == "True":
        outcome = "failed"
    else:
        outcome = "running"
    return JobSeen(str(metadata.get("name") or ""), str(machine), str(operation), outcome)


# --- what changed ------------------------------------------------------------------------------------------------


def changes_between(previous: Observation | None, current: Observation) -> list[Change]:
    """What a person watching would want to be told about, from one observation to the next. Pure.

    Within one round the changes come in causal order: CA's target; power Jobs that finished; power states read
    back (a machine read On registers later, one read Off has its Node deleted because of it); the Kubernetes Node
    (registered, cordoned, deleted); the machine's state; power Jobs that were created; last, what CA now reads of
    the instance. Against no previous observation only the starting point is described (each node group).
    """
    at = current.elapsed
    if previous is None:
        return [
            Change(at, ChangeKind.TARGET, group.id,
                   f"node group (min {group.min_size}, max {group.max_size}), target {group.target}")
            for group in current.groups
        ]
    before_groups = {group.id: group for group in previous.groups}
    targets = [
        Change(at, ChangeKind.TARGET, group.id, f"target {before_groups[group.id].target} → {group.target}")
        for group in current.groups
        if group.id in before_groups and before_groups[group.id].target != group.target
    ]
    created, finished = _job_changes(previous, current)
    return [
        *targets,
        *finished,
        *_readback_changes(previous, current),
        *_node_changes(previous, current),
        *_state_changes(previous, current),
        *created,
        *_instance_changes(previous, current),
    ]


def _node_changes(previous: Observation, current: Observation) -> list[Change]:
    changes = []
    for name, node in current.kube_nodes.items():
        texts = []
        earlier = previous.kube_nodes.get(name)
        if earlier is None:
            texts.append(f"Kubernetes Node registered (providerID {node.provider_id or 'empty'})")
        else:
            if node.provider_id != earlier.provider_id:
                texts.append(f"providerID set to {node.provider_id}")
            if node.unschedulable and not earlier.unschedulable:
                texts.append("cordoned")
            if node.ready != earlier.ready:
                texts.append("Kubernetes Node Ready" if node.ready else "Kubernetes Node NotReady")
        changes += [Change(current.elapsed, ChangeKind.NODE, name, text) for text in texts]
    for name in sorted(previous.kube_nodes.keys() - current.kube_nodes.keys()):
        changes.append(Change(current.elapsed, ChangeKind.NODE, name, "Kubernetes Node deleted"))
    return changes


def _job_changes(previous: Observation, current: Observation) -> tuple[list[Change], list[Change]]:
    """(Jobs created, Jobs finished): a state change follows a finished Job and precedes a created one."""
    created, finished = [], []
    before = {job.name: job for job in previous.jobs}
    for job in current.jobs:
        earlier = before.get(job.name)
        if earlier is None:
            created.append(Change(current.elapsed, ChangeKind.JOB, job.machine,
                                  f"{job.operation} Job {job.name} created"))
        if job.outcome != "running" and (earlier is None or earlier.outcome != job.outcome):
            finished.append(Change(current.elapsed, ChangeKind.JOB, job.machine,
                                   f"{job.operation} Job {job.name} {job.outcome}"))
    return created, finished


def _state_changes(previous: Observation, current: Observation) -> list[Change]:
    changes = []
    before = {machine.name: machine for machine in previous.view.machines}
    for machine in current.view.machines:
        earlier = before.get(machine.name)
        text = _state_change(earlier, machine) if earlier is not None else ""
        if text:
            changes.append(Change(current.elapsed, ChangeKind.STATE, machine.name, text))
    return changes


def _readback_changes(previous: Observation, current: Observation) -> list[Change]:
    """A line when a BMC reads another power state than it did (the same state read again is no news)."""
    changes = []
    before = {machine.name: machine for machine in previous.view.machines}
    for machine in current.view.machines:
        earlier = before.get(machine.name)
        if machine.readback_state is None or earlier is None or earlier.readback_state == machine.readback_state:
            continue
        text = f"power read back {machine.readback_state} by {machine.readback_driver}"
        changes.append(Change(current.elapsed, ChangeKind.READBACK, machine.name, text))
    return changes


def _state_change(before: MachineRow, after: MachineRow) -> str:
    if before.state == after.state and before.since == after.since:
        return ""
    if before.state == after.state:
        return f"{before.state} → … → {after.state}"  # a whole round trip fell between two looks
    text = f"{before.state} → {after.state}"
    if after.state == NodeState.READY.value and before.state == NodeState.STARTING_UP.value:
        boot = boot_seconds(before.since, after.since)
        if boot is not None:
            text += f" (booted in {boot:.1f} s)"
    elif after.state == NodeState.STARTING_UP.value and after.operation is not None:
        text += f" ({operation_text(after)})"
    elif after.state == NodeState.SHUTTING_DOWN.value and after.operation is not None and after.operation.driver:
        text += f" ({operation_text(after)})"  # no Job line follows to say how it is switched off
    elif after.state in (NodeState.BOOT_FAILED.value, NodeState.QUARANTINED.value) and after.last_error:
        text += f" ({after.last_error})"
    if after.cooldown_seconds:
        text += f", cooling down for {human_age(after.cooldown_seconds)}"
    return text


def _instance_changes(previous: Observation, current: Observation) -> list[Change]:
    changes = []
    before_groups = {group.id: group for group in previous.groups}
    for group in current.groups:
        before = before_groups.get(group.id)
        if before is None:
            continue
        for instance in group.instances:
            earlier = before.instance(instance.id)
            if earlier is None:
                changes.append(Change(current.elapsed, ChangeKind.INSTANCE, instance.id,
                                      f"listed as {instance.text}"))
            elif earlier.text != instance.text:
                changes.append(Change(current.elapsed, ChangeKind.INSTANCE, instance.id,
                                      f"{earlier.text} → {instance.text}"))
        for earlier in before.instances:
            if group.instance(earlier.id) is None:
                changes.append(Change(current.elapsed, ChangeKind.INSTANCE, earlier.id,
                                      f"{earlier.text} → no longer listed"))
    return changes


def boot_seconds(started: datetime | None, ready: datetime | None) -> float | None:
    """Seconds from entering StartingUp to entering Ready, from the status' own timestamps. Pure."""
    if started is None or ready is None:
        return None
    return seconds_between(started, ready)


# --- the history of a run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateEntry:
    """A machine entered `state` at `since` (operator's clock); the demo first saw it `seen_at` s into the run."""

    state: str
    since: datetime | None
    seen_at: float


@dataclass
class History:
    """Everything seen during a run, accumulated one observation at a time (no I/O)."""

    changes: list[Change] = field(default_factory=list)
    timelines: dict[str, list[StateEntry]] = field(default_factory=dict)
    jobs: dict[str, JobSeen] = field(default_factory=dict)
    """Every power Job ever seen, by name, with its last known outcome."""
    cordoned: set[str] = field(default_factory=set)
    """Kubernetes Nodes seen cordoned."""
    registered: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    """Kubernetes Nodes seen registered and later seen gone."""
    errors: dict[str, str] = field(default_factory=dict)
    """Per machine, the last error its status showed."""
    drivers: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per natively powered machine, the driver seen sending each kind of operation (`startup`, `shutdown`)."""
    readbacks: dict[str, list[str]] = field(default_factory=dict)
    """Per machine with a BMC, the power states read back, in order, a repeat of the same state not kept."""
    first: Observation | None = None
    last: Observation | None = None

    def record(self, observation: Observation) -> list[Change]:
        """Add one observation; returns what changed since the previous one (also kept in `changes`)."""
        changes = changes_between(self.last, observation)
        self.changes.extend(changes)
        for machine in observation.view.machines:
            timeline = self.timelines.setdefault(machine.name, [])
            if not timeline or (timeline[-1].state, timeline[-1].since) != (machine.state, machine.since):
                timeline.append(StateEntry(machine.state, machine.since, observation.elapsed))
            if machine.last_error:
                self.errors[machine.name] = machine.last_error
            if machine.operation is not None and machine.operation.driver is not None:
                self.drivers.setdefault(machine.name, {})[machine.operation.kind] = machine.operation.driver
            if machine.readback_state is not None:
                states = self.readbacks.setdefault(machine.name, [])
                if not states or states[-1] != machine.readback_state:
                    states.append(machine.readback_state)
        for job in observation.jobs:
            self.jobs[job.name] = job
        for name, node in observation.kube_nodes.items():
            self.registered.add(name)
            self.deleted.discard(name)
            if node.unschedulable:
                self.cordoned.add(name)
        self.deleted |= self.registered - observation.kube_nodes.keys()
        if self.first is None:
            self.first = observation
        self.last = observation
        return changes

    def note(self, elapsed: float, kind: ChangeKind, subject: str, text: str, detail: str = "") -> Change:
        """Add something the scenario did (a step, a call) to the record."""
        change = Change(elapsed, kind, subject, text, detail)
        self.changes.append(change)
        return change

    def states(self, machine: str) -> list[str]:
        """The machine's states in the order seen (repeats kept: Shutdown, StartingUp, Ready, …)."""
        return [entry.state for entry in self.timelines.get(machine, ())]

    def jobs_of(self, machine: str, operation: str | None = None) -> list[JobSeen]:
        return [
            job for job in self.jobs.values()
            if job.machine == machine and (operation is None or job.operation == operation)
        ]


def boot_durations(timeline: Sequence[StateEntry]) -> list[float]:
    """Every StartingUp → Ready of a timeline, in seconds of the operator's clock. Pure."""
    durations = []
    for before, after in itertools.pairwise(timeline):
        if before.state == NodeState.STARTING_UP.value and after.state == NodeState.READY.value:
            duration = boot_seconds(before.since, after.since)
            durations.append(duration if duration is not None else after.seen_at - before.seen_at)
    return durations

