"""Everything the power machine of one physical machine reacts to.

Separate from the machine so the shells that translate watch events, gRPC requests and timer ticks into
events need not import the transition table. Facts are named in the past tense (`JobSucceeded`,
`NodeGone`); requests are imperative-ish (`PowerOnRequested`, `CancelBoot`). Every event is a frozen,
picklable dataclass and is never subclassed: the transition table is keyed by the exact type.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from actors.power_port import PowerAction
from schemas.node import NodeSnapshot, OperationKind, PowerPolicy
from schemas.power import DriverName, PowerState

if TYPE_CHECKING:
    # Only for annotations: node.py imports this module at run time.
    from actors.fsm.node import MachineConfig


class TimerKind(StrEnum):
    BOOT_TIMEOUT = "boot-timeout"
    """The machine was not Ready within the group's bootTimeout after its startup Job began."""
    SHUTDOWN_TIMEOUT = "shutdown-timeout"
    """The power-off was not confirmed within the group's shutdownTimeout."""
    UNREADY_GRACE = "unready-grace"
    """A Ready machine's Kubernetes Node stayed NotReady this long: it is treated as powered off."""
    COOLDOWN_EXPIRED = "cooldown-expired"
    """The cooldown after a failed boot is over (armed only for machines with powerPolicy On)."""
    READBACK_POLL = "readback-poll"
    """Time to read the power state back (machines whose spec.power has a BMC)."""


@dataclass(frozen=True)
class PowerOnRequested:
    """The group chose this machine for a scale-up (or its policy became On).

    `start_now` False means maxConcurrentBoots is reached: the machine waits in StartingUp until
    `BootSlotGranted`. `exercise`: the group's exercise boot (boot, check, power off again, hidden from CA);
    sent to a machine being exercised without it, the exercise is taken over as a normal boot.
    """

    start_now: bool = True
    exercise: bool = False


@dataclass(frozen=True)
class BootSlotGranted:
    """The group freed a boot slot for this queued machine."""


@dataclass(frozen=True)
class PowerOffRequested:
    """Power the machine off. `drain` False: CA already drained it (DeleteNodes); True: we drain first."""

    drain: bool = False


@dataclass(frozen=True)
class CancelBoot:
    """CA no longer wants this not-yet-registered boot.

    `given_up`: CA deleted the instance (DeleteNodes), which it does to a creation that failed or that did not
    register within its max-node-provision-time: the boot failed. Otherwise CA lowered the target
    (DecreaseTargetSize) because the pods it was for went away.
    """

    given_up: bool = False


@dataclass(frozen=True)
class JobSucceeded:
    """A power Job of this machine finished successfully."""

    kind: OperationKind
    job_name: str


@dataclass(frozen=True)
class JobFailed:
    """A power Job of this machine failed (backoff limit or deadline reached)."""

    kind: OperationKind
    job_name: str
    message: str = ""


@dataclass(frozen=True)
class DrainFinished:
    """The drain requested by a `Drain` effect ended."""

    succeeded: bool
    message: str = ""


@dataclass(frozen=True)
class NodeReady:
    """The machine's Kubernetes Node is Ready. `provider_id` is its spec.providerID (None when unset)."""

    provider_id: str | None
    snapshot: NodeSnapshot


@dataclass(frozen=True)
class NodeNotReady:
    """The machine's Kubernetes Node exists but is not Ready."""


@dataclass(frozen=True)
class NodeGone:
    """The machine's Kubernetes Node object does not exist."""


@dataclass(frozen=True)
class TimerFired:
    """A timer started by a `StartTimer` effect expired. A token the machine no longer expects is stale."""

    kind: TimerKind
    token: str


@dataclass(frozen=True)
class PolicyChanged:
    """The machine's spec.powerPolicy changed (also sent after a restart to converge)."""

    policy: PowerPolicy


@dataclass(frozen=True)
class ResetRequested:
    """A person set the reset annotation; a value not handled before clears failures and quarantine."""

    token: str


@dataclass(frozen=True)
class ConfigChanged:
    """The Node or Group spec changed; the new settings apply from now on."""

    config: MachineConfig


@dataclass(frozen=True)
class WriteFailed:
    """A Kubernetes write the machine asked for failed: refused (`permanent`) or still failing after retries.

    `effect` is the effect's type name (`Cordon`, `SetProviderID`, ...). Legal in every state and never changes
    the state: it only makes the failure visible as a condition and an Event.
    """

    effect: str
    message: str
    permanent: bool


@dataclass(frozen=True)
class PowerCommandSucceeded:
    """A native power command (power-on, power-off, force-off) of this machine was carried out by its driver."""

    action: PowerAction
    attempt: int
    driver: DriverName | None


@dataclass(frozen=True)
class PowerCommandFailed:
    """A native power command failed for good (after the driver's own retries). `failure` is a PowerFailure value."""

    action: PowerAction
    attempt: int
    driver: DriverName | None
    failure: str
    message: str = ""


@dataclass(frozen=True)
class PowerStateObserved:
    """The machine's BMC read its power state back."""

    state: PowerState
    driver: DriverName


@dataclass(frozen=True)
class PowerReadbackFailed:
    """Reading the power state back failed. Legal in every state and never changes the state, like `WriteFailed`."""

    failure: str
    message: str = ""
    driver: DriverName | None = None


Event = (
    PowerOnRequested
    | BootSlotGranted
    | PowerOffRequested
    | CancelBoot
    | JobSucceeded
    | JobFailed
    | DrainFinished
    | NodeReady
    | NodeNotReady
    | NodeGone
    | TimerFired
    | PolicyChanged
    | ResetRequested
    | ConfigChanged
    | WriteFailed
    | PowerCommandSucceeded
    | PowerCommandFailed
    | PowerStateObserved
    | PowerReadbackFailed
)

EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    PowerOnRequested,
    BootSlotGranted,
    PowerOffRequested,
    CancelBoot,
    JobSucceeded,
    JobFailed,
    DrainFinished,
    NodeReady,
    NodeNotReady,
    NodeGone,
    TimerFired,
    PolicyChanged,
    ResetRequested,
    ConfigChanged,
    WriteFailed,
    PowerCommandSucceeded,
    PowerCommandFailed,
    PowerStateObserved,
    PowerReadbackFailed,
)
"""Every event type, in the order the documentation lists them."""
