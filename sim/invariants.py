"""The invariant checker: what must hold between the cluster's objects and the operator's read model once settled.

Tests and the chaos soak (`bench/soak.py`) ask the same question after any amount of mischief: did the operator
end up telling the truth? The answer is a list of `Violation`s from `check_invariants`, a pure function of two
inputs that anyone can gather: the objects in the API (`ClusterObjects`, read from our fake's store or over HTTP
from any API server) and the read model's group snapshots (what Cluster Autoscaler is told). An empty list means
every promise below holds:

- `state-agrees`: each machine's Node resource `status.state` equals the state its actor published, and the read
  model knows exactly the machines and groups the API has;
- `target-agrees`: each group's target in the read model, in its Group `status.targetSize`, and as derived from
  its members' Node resource states (Starting up, Ready, BootFailed count, unless being exercised) are the same
  number;
- `job-has-operation`: a power Job still running belongs to a machine whose `status.operation` names it;
- `one-active-job`: no machine has two power Jobs running at once;
- `target-within-max`: no target exceeds the group's `maxSize` (a machine a person powered on, adopted with
  reason `StartedOutsideAutoscaler`, may take a group past it: that is the person's doing, not the autoscaler's);
- `unique-provider-id`: no two machines share a provider id;
- `ready-node-provider-id`: every Ready machine has a Kubernetes Node whose `spec.providerID` is the instance id
  the read model reports;
- `powered-off-node-gone`: a Shutdown machine of a group with `powerOffNodePolicy: Delete` has no Ready Node.

Kept apart from the fake API and the simulator because it judges the operator and plays no part: it only reads.
Most of these hold only once the operator has caught up with the cluster, so `wait_converged` polls until they
do (or a deadline passes) and returns what was still wrong.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from kubernetes import client as kube_client

from actors.fsm.group import TARGET_STATES
from actors.read_model import GroupSnapshot, MachineSnapshot, group_id
from kubeapi.kube_client import KubeApi
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.group import PowerOffNodePolicy
from schemas.node import ExerciseOutcome, NodeState
from sim.fakeapi import Store

STARTED_OUTSIDE_REASON: Final = "StartedOutsideAutoscaler"
"""The status reason of a machine that was adopted after someone else powered it on (see actors.fsm.node)."""
UNSETTLED_STATES: Final = frozenset({NodeState.STARTING_UP, NodeState.SHUTTING_DOWN})
"""States a machine only passes through; a homelab with machines in them is still moving."""
POWER_JOB_SELECTOR: Final = f"{label_names.MANAGED_BY_LABEL}={label_names.MANAGED_BY_VALUE}"


class Invariant(StrEnum):
    """The promises `check_invariants` checks (the module docstring says what each means)."""

    STATE_AGREES = "state-agrees"
    TARGET_AGREES = "target-agrees"
    JOB_HAS_OPERATION = "job-has-operation"
    ONE_ACTIVE_JOB = "one-active-job"
    TARGET_WITHIN_MAX = "target-within-max"
    UNIQUE_PROVIDER_ID = "unique-provider-id"
    READY_NODE_PROVIDER_ID = "ready-node-provider-id"
    POWERED_OFF_NODE_GONE = "powered-off-node-gone"


@dataclass(frozen=True)
class Violation:
    """One broken promise: which, about what (`namespace/name` of a machine or group, or a Job), and how."""

    invariant: Invariant
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant.value}: {self.message}"


@dataclass(frozen=True)
class ClusterObjects:
    """The API objects the invariants look at, as plain JSON dicts (what `kubectl get -o json` shows)."""

    groups: tuple[Mapping[str, Any], ...] = ()
    """Group resources."""
    machines: tuple[Mapping[str, Any], ...] = ()
    """Node resources (`infra.homecluster.dev`), one per physical machine."""
    jobs: tuple[Mapping[str, Any], ...] = ()
    """Power Jobs (labelled managed-by homelab-autoscaler); finished ones may be left out, they are ignored."""
    kube_nodes: tuple[Mapping[str, Any], ...] = ()
    """core/v1 Nodes."""


@dataclass(frozen=True)
class Convergence:
    """What `wait_converged` found: whether everything held in time, and if not, what was still wrong."""

    converged: bool
    seconds: float
    """From the call until the invariants held (or until the deadline)."""
    violations: tuple[Violation, ...] = ()
    unsettled: tuple[str, ...] = ()
    """Machines (`namespace/name`) still starting up or shutting down."""

    def describe(self) -> str:
        if self.converged:
            return f"converged in {self.seconds:.2f} s"
        lines = [f"not converged after {self.seconds:.2f} s"]
        lines += [f"  {violation}" for violation in self.violations]
        if self.unsettled:
            lines.append(f"  still moving: {', '.join(self.unsettled[:20])}")
        return "\n".join(lines)


# --- gathering the objects (the only I/O here) -----------------------------------------------------------------


def objects_from_store(store: Store, namespace: str | None = None) -> ClusterObjects:
    """Every object the invariants need, straight from our fake API's store (`namespace` None: all)."""
    return ClusterObjects(
        groups=tuple(store.list(GROUP_VERSION, "groups", namespace)),
        machines=tuple(store.list(GROUP_VERSION, "nodes", namespace)),
        jobs=tuple(store.list("batch/v1", "jobs", namespace, label_selector=POWER_JOB_SELECTOR)),
        kube_nodes=tuple(store.list("v1", "nodes")),
    )


def objects_from_api(api_client: kube_client.ApiClient, namespace: str | None = None) -> ClusterObjects:
    """Every object the invariants need, listed over HTTP from whatever API server `api_client` points at."""
    rest = KubeApi(api_client)
    scope = f"/namespaces/{namespace}" if namespace else ""

    def items(path: str, query: Mapping[str, str] | None = None) -> tuple[Mapping[str, Any], ...]:
        return tuple(rest.get(path, query).get("items") or ())

    return ClusterObjects(
        groups=items(f"/apis/{GROUP_VERSION}{scope}/groups"),
        machines=items(f"/apis/{GROUP_VERSION}{scope}/nodes"),
        jobs=items(f"/apis/batch/v1{scope}/jobs", {"labelSelector": POWER_JOB_SELECTOR}),
        kube_nodes=items("/api/v1/nodes"),
    )


# --- reading single objects (pure) -----------------------------------------------------------------------------


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _key(obj: Mapping[str, Any]) -> str:
    metadata = _metadata(obj)
    return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _group_label(machine: Mapping[str, Any]) -> str:
    return str((_metadata(machine).get("labels") or {}).get(label_names.GROUP_LABEL) or "")


def machine_state(machine: Mapping[str, Any]) -> str:
    """The state a Node resource records; a resource the operator never wrote is Shutdown (the schema default)."""
    return str(_status(machine).get("state") or NodeState.SHUTDOWN.value)


def is_active_job(job: Mapping[str, Any]) -> bool:
    """A Job that may still run its pod: neither Complete nor Failed, and not being deleted. Pure."""
    if _metadata(job).get("deletionTimestamp"):
        return False
    conditions = _status(job).get("conditions") or ()
    return not any(
        isinstance(condition, Mapping)
        and condition.get("type") in ("Complete", "Failed")
        and condition.get("status") == "True"
        for condition in conditions
    )


def is_ready_node(kube_node: Mapping[str, Any]) -> bool:
    """Whether a core/v1 Node's Ready condition is True. Pure."""
    return any(
        isinstance(condition, Mapping) and condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in _status(kube_node).get("conditions") or ()
    )


def unsettled_machines(objects: ClusterObjects) -> list[str]:
    """Machines (`namespace/name`) the API shows starting up or shutting down, sorted. Pure."""
    moving = {state.value for state in UNSETTLED_STATES}
    return sorted(_key(machine) for machine in objects.machines if machine_state(machine) in moving)


# --- the check (pure) ------------------------------------------------------------------------------------------


@dataclass
class _Index:
    """The objects and snapshots, looked up the ways the invariants need."""

    groups: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Group resources by node group id (`namespace/name`)."""
    members: dict[str, list[Mapping[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    """Node resources by the node group id their group label names."""
    machines: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Node resources by `namespace/name`."""
    snapshots: dict[str, GroupSnapshot] = field(default_factory=dict)
    machine_snapshots: dict[str, tuple[GroupSnapshot, MachineSnapshot]] = field(default_factory=dict)
    kube_nodes: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, objects: ClusterObjects, snapshots: Iterable[GroupSnapshot]) -> _Index:
        index = cls()
        for group in objects.groups:
            metadata = _metadata(group)
            index.groups[group_id(str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))] = group
        for machine in objects.machines:
            index.machines[_key(machine)] = machine
            group_name = _group_label(machine)
            if group_name:
                index.members[group_id(str(_metadata(machine).get("namespace") or ""), group_name)].append(machine)
        for snapshot in snapshots:
            index.snapshots[snapshot.id] = snapshot
            for machine_snapshot in snapshot.machines:
                index.machine_snapshots[f"{machine_snapshot.namespace}/{machine_snapshot.name}"] = (
                    snapshot,
                    machine_snapshot,
                )
        for kube_node in objects.kube_nodes:
            index.kube_nodes[str(_metadata(kube_node).get("name") or "")] = kube_node
        return index

    def kubernetes_node_name(self, key: str) -> str:
        found = self.machine_snapshots.get(key)
        if found is not None:
            return found[1].kubernetes_node_name
        machine = self.machines[key]
        return str(_spec(machine).get("kubernetesNodeName") or _metadata(machine).get("name") or "")

    def is_member(self, key: str) -> bool:
        """Whether the machine's group label names a Group that exists (only members are the operator's)."""
        group_name = _group_label(self.machines[key])
        return bool(group_name) and group_id(key.partition("/")[0], group_name) in self.groups


def check_invariants(objects: ClusterObjects, snapshots: Iterable[GroupSnapshot]) -> list[Violation]:
    """Every broken promise (see the module docstring), in a stable order; empty when all hold. Pure."""
    index = _Index.build(objects, snapshots)
    violations: list[Violation] = []
    for check in _CHECKS:
        violations.extend(check(index, objects))
    return violations


def _state_agrees(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key in sorted(index.machines):
        if not index.is_member(key):
            continue
        api_state = machine_state(index.machines[key])
        found = index.machine_snapshots.get(key)
        if found is None:
            yield Violation(
                Invariant.STATE_AGREES,
                key,
                f"machine {key} ({api_state} in the API) is missing from the operator's read model",
            )
        elif found[1].state.value != api_state:
            yield Violation(
                Invariant.STATE_AGREES,
                key,
                f"machine {key} is {api_state} in the API but {found[1].state.value} in the operator's read model",
            )
    for key, (snapshot, _machine) in sorted(index.machine_snapshots.items()):
        machine = index.machines.get(key)
        if machine is None:
            yield Violation(
                Invariant.STATE_AGREES,
                key,
                f"machine {key} is in the read model of {snapshot.id} but has no Node resource",
            )
            continue
        labelled = _group_label(machine) or "(no group)"
        if labelled != snapshot.name:
            yield Violation(
                Invariant.STATE_AGREES,
                key,
                f"machine {key} is in the read model of {snapshot.id} but its group label says {labelled}",
            )


def _exercising(machine: Mapping[str, Any]) -> bool:
    return bool((_status(machine).get("lastExercise") or {}).get("outcome") == ExerciseOutcome.RUNNING.value)


def _derived_target(members: Iterable[Mapping[str, Any]]) -> int:
    counted = {state.value for state in TARGET_STATES}
    # A machine being exercised is on for the operator's own check: CA never asked for it, so it is no target.
    return sum(1 for machine in members if machine_state(machine) in counted and not _exercising(machine))


def _target_agrees(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key in sorted(set(index.groups) | set(index.snapshots)):
        group = index.groups.get(key)
        snapshot = index.snapshots.get(key)
        if group is None:
            yield Violation(Invariant.TARGET_AGREES, key, f"group {key} is in the read model but not in the API")
            continue
        if snapshot is None:
            yield Violation(Invariant.TARGET_AGREES, key, f"group {key} is in the API but not in the read model")
            continue
        recorded = int(_status(group).get("targetSize") or 0)
        derived = _derived_target(index.members.get(key, ()))
        if not snapshot.target_size == recorded == derived:
            yield Violation(
                Invariant.TARGET_AGREES,
                key,
                f"group {key}: the read model's target is {snapshot.target_size}, Group status.targetSize is "
                f"{recorded}, its machines' states add up to {derived}",
            )


def _active_jobs_by_machine(objects: ClusterObjects) -> dict[str, list[str]]:
    active: dict[str, list[str]] = defaultdict(list)
    for job in objects.jobs:
        machine = (_metadata(job).get("labels") or {}).get(label_names.MACHINE_LABEL)
        if machine and is_active_job(job):
            active[f"{_metadata(job).get('namespace') or ''}/{machine}"].append(str(_metadata(job).get("name")))
    return active


def _job_has_operation(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key, names in sorted(_active_jobs_by_machine(objects).items()):
        machine = index.machines.get(key)
        operation = (_status(machine).get("operation") or {}) if machine is not None else {}
        running = operation.get("jobName")
        for name in sorted(names):
            if machine is None:
                why = "which has no Node resource"
            elif not running:
                why = f"which is in no operation ({machine_state(machine)})"
            elif running != name:
                why = f"whose operation runs Job {running}"
            else:
                continue
            yield Violation(Invariant.JOB_HAS_OPERATION, name, f"Job {name} is still running for machine {key}, {why}")


def _one_active_job(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key, names in sorted(_active_jobs_by_machine(objects).items()):
        if len(names) > 1:
            yield Violation(
                Invariant.ONE_ACTIVE_JOB,
                key,
                f"machine {key} has {len(names)} power Jobs running at once: {', '.join(sorted(names))}",
            )


def _target_within_max(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key in sorted(index.groups):
        group = index.groups[key]
        members = index.members.get(key, ())
        spec = _spec(group)
        # A schedule window may raise the max (and its min) for a while, and the operator never powers machines
        # off when it falls again: the largest size any window allows bounds the target, whatever the time.
        max_size = max(
            [int(spec.get("maxSize") or 0)]
            + [int(window.get(size) or 0) for window in spec.get("schedules") or () for size in ("minSize", "maxSize")]
        )
        adopted = sum(
            1
            for machine in members
            if machine_state(machine) == NodeState.READY.value
            and _status(machine).get("reason") == STARTED_OUTSIDE_REASON
        )
        allowed = max_size + adopted
        snapshot = index.snapshots.get(key)
        targets = {
            "the read model's target": snapshot.target_size if snapshot is not None else 0,
            "Group status.targetSize": int(_status(group).get("targetSize") or 0),
            "its machines' states": _derived_target(members),
        }
        over = {source: target for source, target in targets.items() if target > allowed}
        if over:
            listing = ", ".join(f"{source} {target}" for source, target in over.items())
            extra = f" (+{adopted} powered on by hand)" if adopted else ""
            yield Violation(
                Invariant.TARGET_WITHIN_MAX, key, f"group {key} exceeds maxSize {max_size}{extra}: {listing}"
            )


def _unique_provider_id(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    sources: list[tuple[str, dict[str, list[str]]]] = [
        ("the read model", defaultdict(list)),
        ("the API", defaultdict(list)),
    ]
    for key, (_group, machine_snapshot) in sorted(index.machine_snapshots.items()):
        if machine_snapshot.provider_id:
            sources[0][1][machine_snapshot.provider_id].append(key)
    for key, machine in sorted(index.machines.items()):
        provider_id = _status(machine).get("providerID")
        if provider_id:
            sources[1][1][str(provider_id)].append(key)
    for where, owners in sources:
        for provider_id, keys in sorted(owners.items()):
            if len(keys) > 1:
                yield Violation(
                    Invariant.UNIQUE_PROVIDER_ID,
                    provider_id,
                    f"machines {', '.join(keys)} share the provider id {provider_id} in {where}",
                )


def _ready_node_provider_id(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key in sorted(index.machines):
        found = index.machine_snapshots.get(key)
        if found is None or machine_state(index.machines[key]) != NodeState.READY.value:
            continue
        machine_snapshot = found[1]
        node_name = machine_snapshot.kubernetes_node_name
        kube_node = index.kube_nodes.get(node_name)
        instance = machine_snapshot.instance
        if instance is not None and instance.id != machine_snapshot.provider_id:
            yield Violation(
                Invariant.READY_NODE_PROVIDER_ID,
                key,
                f"machine {key} is listed to CA as {instance.id} but its provider id is {machine_snapshot.provider_id}",
            )
        if kube_node is None:
            yield Violation(
                Invariant.READY_NODE_PROVIDER_ID, key, f"Ready machine {key} has no Kubernetes Node {node_name}"
            )
            continue
        actual = str(_spec(kube_node).get("providerID") or "")
        if actual != machine_snapshot.provider_id:
            yield Violation(
                Invariant.READY_NODE_PROVIDER_ID,
                key,
                f"Ready machine {key}: Kubernetes Node {node_name} has providerID {actual or '(none)'} but CA is "
                f"told {machine_snapshot.provider_id}",
            )


def _powered_off_node_gone(index: _Index, objects: ClusterObjects) -> Iterable[Violation]:
    for key in sorted(index.machines):
        machine = index.machines[key]
        if machine_state(machine) != NodeState.SHUTDOWN.value or not index.is_member(key):
            continue
        group = index.groups[group_id(key.partition("/")[0], _group_label(machine))]
        policy = _spec(group).get("powerOffNodePolicy") or PowerOffNodePolicy.DELETE.value
        node_name = index.kubernetes_node_name(key)
        kube_node = index.kube_nodes.get(node_name)
        if policy == PowerOffNodePolicy.DELETE.value and kube_node is not None and is_ready_node(kube_node):
            yield Violation(
                Invariant.POWERED_OFF_NODE_GONE,
                key,
                f"machine {key} is Shutdown (powerOffNodePolicy Delete) but its Kubernetes Node {node_name} is Ready",
            )


_CHECKS: Final[Sequence[Callable[[_Index, ClusterObjects], Iterable[Violation]]]] = (
    _state_agrees,
    _target_agrees,
    _job_has_operation,
    _one_active_job,
    _target_within_max,
    _unique_provider_id,
    _ready_node_provider_id,
    _powered_off_node_gone,
)


def count_by_invariant(violations: Iterable[Violation]) -> dict[str, int]:
    """How many violations of each invariant, for reports. Pure."""
    return dict(sorted(Counter(violation.invariant.value for violation in violations).items()))


# --- waiting for convergence -----------------------------------------------------------------------------------


Observation = tuple[ClusterObjects, Sequence[GroupSnapshot]]
Findings = tuple[Sequence[Violation], Sequence[str]]
"""What one look found: the broken promises, and the machines still starting up or shutting down."""


def wait_converged(
    observe: Callable[[], Observation],
    timeout: float,
    *,
    settled: bool = True,
    poll_seconds: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Convergence:
    """Poll `observe` until `check_invariants` finds nothing (and, with `settled`, no machine is starting up or
    shutting down), or until `timeout` seconds have passed; the result says which and what was still wrong.

    `observe` returns the API objects and the read model's snapshots, e.g.
    `lambda: (objects_from_store(fake.store, "homelab"), operator.read_model.groups())`.
    """

    def look() -> Findings:
        objects, snapshots = observe()
        return check_invariants(objects, snapshots), unsettled_machines(objects) if settled else []

    return poll_until_converged(look, timeout, poll_seconds=poll_seconds, clock=clock, sleep=sleep)


def poll_until_converged(
    look: Callable[[], Findings],
    timeout: float,
    *,
    poll_seconds: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Convergence:
    """`wait_converged` for callers that check elsewhere (e.g. next to the objects, in another process): poll
    `look` until it finds no violation and nothing moving, or until `timeout` seconds have passed."""
    started = clock()
    while True:
        violations, unsettled = look()
        elapsed = clock() - started
        if not violations and not unsettled:
            return Convergence(True, elapsed)
        if elapsed >= timeout:
            return Convergence(False, elapsed, tuple(violations), tuple(unsettled))
        sleep(poll_seconds)
