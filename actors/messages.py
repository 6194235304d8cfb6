"""Messages between the outside world (gateway, watchers, adapters) and the actors, and among actors.

Frozen, picklable dataclasses with no Thespian import, so the pure core can build them and any system base could
carry them. Naming: commands are imperative (`IncreaseSize`), facts are past tense (`MachineStateChanged`), and an
ask carries a `request_id` that its reply echoes (that is how the runtime matches a reply to its Future).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation
from actors.fsm.effects import Effect
from actors.fsm.events import Event, JobFailed, JobSucceeded, NodeNotReady, NodeReady
from actors.fsm.group import MachineView

# Defined beside the group's planning, which returns them; re-exported here, where the gateway and tests meet them.
from actors.fsm.group_planning import ErrorKind as ErrorKind
from actors.fsm.group_planning import MutationRefusal as MutationRefusal
from actors.read_model import MachineSnapshot
from schemas.common import Taint
from schemas.group import Group, GroupSpec
from schemas.node import Node, NodeSnapshot, NodeStatus, OperationKind


@dataclass(frozen=True)
class NodeIdentity:
    """A Kubernetes Node as CA names it: its name and spec.providerID (equal for CA's stand-in nodes)."""

    name: str
    provider_id: str


@dataclass(frozen=True)
class IncreaseSize:
    """Power on `delta` more machines of a group (all or nothing)."""

    request_id: str
    group_id: str
    delta: int


@dataclass(frozen=True)
class DeleteNodes:
    """Power off these machines of a group and lower its target by as many."""

    request_id: str
    group_id: str
    nodes: tuple[NodeIdentity, ...]


@dataclass(frozen=True)
class DecreaseTargetSize:
    """Lower a group's target by -delta (delta is negative) by cancelling boots not yet registered."""

    request_id: str
    group_id: str
    delta: int


@dataclass(frozen=True)
class MutationReply:
    """The answer to a mutation, sent only after the group's new snapshot is published."""

    request_id: str
    error: MutationRefusal | None = None


@dataclass(frozen=True)
class Forwarded:
    """A gateway mutation passed on by the Supervisor; the group replies to `original_sender`, not to the Supervisor.

    Keeping the asker's address is what lets the Supervisor route without waiting for (or relaying) the answer.
    """

    original_sender: Any
    """The ActorAddress the reply goes to (typed loosely: this module does not import thespian)."""
    request: IncreaseSize | DeleteNodes | DecreaseTargetSize


@dataclass(frozen=True)
class Ping:
    """Readiness probe: the Supervisor answers once it is configured."""

    request_id: str


@dataclass(frozen=True)
class Pong:
    """The Supervisor's answer to `Ping`: whether the initial inventory was applied, and how much it runs."""

    request_id: str
    inventory_listed: bool
    groups: int
    machines: int


@dataclass(frozen=True)
class LookupMachine:
    """Ask the Supervisor about one machine (for the status command and for tests)."""

    request_id: str
    namespace: str
    name: str


@dataclass(frozen=True)
class MachineFound:
    """The answer to `LookupMachine`: the machine's actor and its group's id and actor (None where there is none)."""

    request_id: str
    address: Any
    group_id: str | None
    group_address: Any = None


# --- observations: what the watchers saw (facts, past tense) ------------------------------------------------


@dataclass(frozen=True)
class GroupObserved:
    """A Group custom resource was listed, added or changed."""

    group: Group


@dataclass(frozen=True)
class GroupInvalid:
    """A Group custom resource our schemas refuse; `reason` names the problems as the webhook spells them."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    reason: str


@dataclass(frozen=True)
class GroupRemoved:
    """A Group custom resource was deleted."""

    namespace: str
    name: str


@dataclass(frozen=True)
class MachineObserved:
    """A Node custom resource (one physical machine) was listed, added or changed."""

    node: Node


@dataclass(frozen=True)
class MachineRemoved:
    """A Node custom resource was deleted."""

    namespace: str
    name: str


@dataclass(frozen=True)
class KubeNodeObserved:
    """A Kubernetes Node was listed, added or changed. `provider_id` is spec.providerID ("" when unset)."""

    name: str
    ready: bool
    provider_id: str
    snapshot: NodeSnapshot
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()

    def observation(self) -> KubeNodeObservation:
        """What `derive` needs of this Node. Pure."""
        return KubeNodeObservation(ready=self.ready, provider_id=self.provider_id or None, snapshot=self.snapshot)

    def event(self) -> Event:
        """The power-machine event this observation means. Pure."""
        if self.ready:
            return NodeReady(provider_id=self.provider_id or None, snapshot=self.snapshot)
        return NodeNotReady()

    def same_for_machine(self, other: KubeNodeObserved | None) -> bool:
        """Whether `other` tells the power machine nothing new (kubelet heartbeats change nothing it reads)."""
        return other is not None and (self.ready, self.provider_id, self.snapshot) == (
            other.ready,
            other.provider_id,
            other.snapshot,
        )


@dataclass(frozen=True)
class KubeNodeRemoved:
    """A Kubernetes Node object was deleted."""

    name: str


@dataclass(frozen=True)
class JobObserved:
    """A power Job (found by our labels) was listed, added or changed.

    `machine` and `group` come from the Job's labels; `kind` and `attempt` too. `created` is its
    creationTimestamp (when an adopted operation began).
    """

    namespace: str
    name: str
    machine: str
    group: str
    kind: OperationKind
    attempt: int
    active: bool = False
    succeeded: bool = False
    failed: bool = False
    message: str = ""
    created: datetime | None = None

    @property
    def phase(self) -> JobPhase:
        """Succeeded or Failed once finished, else Active. Pure."""
        if self.succeeded:
            return JobPhase.SUCCEEDED
        if self.failed:
            return JobPhase.FAILED
        return JobPhase.ACTIVE

    def observation(self) -> JobObservation:
        """What `derive` needs of this Job. Pure."""
        return JobObservation(
            name=self.name,
            kind=self.kind,
            attempt=self.attempt,
            phase=self.phase,
            created=self.created,
            message=self.message,
        )

    def event(self) -> Event | None:
        """The power-machine event of a finished Job; None while it runs. Pure."""
        if self.phase is JobPhase.SUCCEEDED:
            return JobSucceeded(self.kind, self.name)
        if self.phase is JobPhase.FAILED:
            return JobFailed(self.kind, self.name, self.message)
        return None


@dataclass(frozen=True)
class JobRemoved:
    """A power Job was deleted (cleaned up after it finished, or by us)."""

    namespace: str
    name: str
    machine: str


@dataclass(frozen=True)
class InventoryListed:
    """Everything, listed at once on start or on gaining leadership.

    The Supervisor derives every new machine from it in one go (restart recovery: Jobs in flight are adopted,
    not created again), reconciles machines that already have actors, and forgets what is no longer listed.
    """

    groups: tuple[Group, ...]
    machines: tuple[Node, ...]
    kube_nodes: tuple[KubeNodeObserved, ...]
    jobs: tuple[JobObserved, ...]


# --- among actors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigureSupervisor:
    """The Supervisor's first message: where its collaborators are registered (`actors.wiring`)."""

    wiring_key: str


@dataclass(frozen=True)
class ConfigureGroup:
    """A GroupActor's first message, from the Supervisor."""

    wiring_key: str
    group: Group


@dataclass(frozen=True)
class GroupChanged:
    """The Group resource changed (spec, labels or generation): use it from now on."""

    group: Group


@dataclass(frozen=True)
class MemberAssigned:
    """The machine `name` belongs to this group; the group is not ready for mutations until it has reported."""

    name: str


@dataclass(frozen=True)
class MemberReleased:
    """The machine `name` left this group (removed, or moved to another group)."""

    name: str


@dataclass(frozen=True)
class ConfigureMachine:
    """A NodeActor's first message, from the Supervisor: everything `derive` needs, and who its group is.

    `node` carries the status to derive from (the newest one the operator wrote or observed); `jobs` and
    `kube_node` are what the watchers last saw of the machine's power Jobs and Kubernetes Node.
    """

    wiring_key: str
    node: Node
    group_id: str
    group_spec: GroupSpec
    group_address: Any
    jobs: tuple[JobObservation, ...] = ()
    kube_node: KubeNodeObservation | None = None


@dataclass(frozen=True)
class MachineReconfigured:
    """The machine's Node resource or its Group changed (or the group actor was replaced): apply the new settings.

    The NodeActor turns it into `ConfigChanged` (a new powerPolicy included) and, when the reset annotation
    carries a value not handled before, `ResetRequested`; then it reports its state to `group_address`.
    """

    node: Node
    group_id: str
    group_spec: GroupSpec
    group_address: Any


@dataclass(frozen=True)
class MachineEvent:
    """An FSM event for one NodeActor.

    From the group, `command_sequence` numbers the group's commands to this machine (1, 2, ...) so the group can
    tell a state report sent before its latest command from one sent after; observations routed by the
    Supervisor carry 0.

    `confirm_stored` True: the group holds CA's answer until this command's outcome is stored in the API (see
    `IntentStored`), so the machine makes sure the group hears `IntentStored` for it exactly once.
    """

    event: Event
    command_sequence: int = 0
    confirm_stored: bool = False


@dataclass(frozen=True)
class IntentStored:
    """→ GroupActor: the machine's status after command `command_sequence` is stored (or the command stored nothing).

    Sent by the effect writer right after the status write of the command's batch succeeded, or by the NodeActor
    itself when the command changed nothing that needs writing (refused, ignored, or no status change). Once it is
    stored, a restarted operator derives the commanded state instead of the old one, which is why the group
    answers a mutation only after hearing it for every machine the mutation commanded.
    """

    machine: str
    command_sequence: int


@dataclass(frozen=True)
class MachineStateChanged:
    """NodeActor → its group: what the machine looks like now (sent whenever any of it changed).

    `commands_handled` is the highest `command_sequence` the machine has handled; `last_ready` is its Kubernetes
    Node as last seen Ready (the group's scale-from-zero template).
    """

    view: MachineView
    snapshot: MachineSnapshot
    last_ready: NodeSnapshot | None = None
    commands_handled: int = 0


@dataclass(frozen=True)
class MachineStatusWritten:
    """NodeActor → Supervisor: the status it just asked to be written, so a replacement actor derives from it."""

    namespace: str
    name: str
    status: NodeStatus


# --- effect outcomes: adapters → NodeActor -----------------------------------------------------------------


@dataclass(frozen=True)
class EffectFailed:
    """An effect could not be applied.

    `permanent` True: the API refused it (retrying cannot help); a failed `CreateJob` then counts as a failed Job.
    False: the adapter already retried it until its budget ran out; the machine's timers take it from there.
    """

    effect: Effect
    message: str
    permanent: bool


@dataclass(frozen=True)
class DrainCompleted:
    """The drain asked for by a `Drain` effect ended."""

    succeeded: bool
    message: str = ""
