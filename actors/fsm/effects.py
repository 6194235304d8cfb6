"""What the power machine asks its shell to do: pure data, executed by adapters.

Separate from the machine so adapters and their fakes can import the effect types alone. The machine never
performs an effect; it returns them in order from `step`, and the shell executes them (Kubernetes writes on
the writer pool, power commands on the power port, timers on the ticker). Every Kubernetes effect is idempotent
when repeated, because a restart may issue it again: `CreateJob` creates or adopts the Job by its deterministic
name, `DeleteJob` of a missing Job succeeds, `PatchStatus` writes the whole status through the status
subresource. A power command is the exception: it is never repeated for one attempt (see `SendPowerCommand`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actors.fsm.events import TimerKind
from actors.power_port import PowerAction
from schemas.node import NodeStatus, OperationKind


class EventType(StrEnum):
    """The type of a Kubernetes Event."""

    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class CreateJob:
    """Create the power Job `job_name` from the Node's startup or shutdown template (or adopt it if it exists)."""

    kind: OperationKind
    attempt: int
    job_name: str


@dataclass(frozen=True)
class DeleteJob:
    """Delete a power Job that may still be running (pods included)."""

    job_name: str


@dataclass(frozen=True)
class PatchStatus:
    """Write this status of the Node custom resource (emitted after every change of status)."""

    status: NodeStatus


@dataclass(frozen=True)
class Cordon:
    """Mark the machine's Kubernetes Node unschedulable."""


@dataclass(frozen=True)
class Uncordon:
    """Mark the machine's Kubernetes Node schedulable again."""


@dataclass(frozen=True)
class RemoveAutoscalerTaints:
    """Remove CA's ToBeDeleted / DeletionCandidate taints a previous scale-down left on the Kubernetes Node, and
    our exercise taint."""


@dataclass(frozen=True)
class SetProviderID:
    """Set spec.providerID of a Kubernetes Node that registered without one (allowed once by the API)."""

    provider_id: str


@dataclass(frozen=True)
class ApplyManagedLabelsAndTaints:
    """Put the group label and the Group's nodeLabels / nodeTaints on the Kubernetes Node."""


@dataclass(frozen=True)
class TaintForExercise:
    """Put our exercise NoSchedule taint on the Kubernetes Node (`RemoveAutoscalerTaints` removes it again)."""


@dataclass(frozen=True)
class Drain:
    """Evict the pods of the Kubernetes Node (respecting disruption budgets); reply with `DrainFinished`."""


@dataclass(frozen=True)
class DeleteKubeNode:
    """Delete the Kubernetes Node object of a powered-off machine, so CA does not count it as unready."""


@dataclass(frozen=True)
class RecordEvent:
    """Record a Kubernetes Event on the Node custom resource."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class StartTimer:
    """Deliver `TimerFired(kind, token)` after `after_seconds`; starting a token again replaces it."""

    kind: TimerKind
    token: str
    after_seconds: float


@dataclass(frozen=True)
class CancelTimer:
    """Forget the timer `token` (no-op when it already fired or never existed)."""

    token: str


@dataclass(frozen=True)
class SendPowerCommand:
    """Have the machine's native driver power it on, off or force it off (`spec.power`; instead of `CreateJob`).

    Sent once per `attempt` (the operation's number, as in a Job name): never again for the same attempt, not even
    after a restart; a command that did not take is found out by the readback or the timeouts and retried as a new
    attempt. `operation` is the operation's name as recorded in the status.
    """

    action: PowerAction
    attempt: int
    operation: str


@dataclass(frozen=True)
class ReadPowerState:
    """Read the machine's power state back through its BMC; answered with PowerStateObserved or PowerReadbackFailed."""

    attempt: int


Effect = (
    CreateJob
    | DeleteJob
    | PatchStatus
    | Cordon
    | Uncordon
    | RemoveAutoscalerTaints
    | SetProviderID
    | ApplyManagedLabelsAndTaints
    | TaintForExercise
    | Drain
    | DeleteKubeNode
    | RecordEvent
    | StartTimer
    | CancelTimer
    | SendPowerCommand
    | ReadPowerState
)
