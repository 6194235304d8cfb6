"""The policy of a group of machines: which to power on, which boots to cancel, what CA is told.

Separate from the node machine because these decisions look at all members at once, while a node machine
only knows itself. Everything here is a pure function over `MachineView`s (frozen summaries the group actor
keeps of its members); nothing is stored, so the target size CA sees is derived from the members' states
and cannot drift from them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum
from typing import Final

from actors.fsm.errors import CannotDecrease, DeleteRefused, NotEnoughMachines
from actors.fsm.exercise_record import is_exercising
from actors.fsm.node import KubeNodePresence, Machine, effective_provider_id
from schemas.group import GroupSpec
from schemas.node import NodeState, PowerPolicy


@dataclass(frozen=True)
class MachineView:
    """What the group knows of one member machine."""

    name: str
    state: NodeState
    provider_id: str
    """The id CA knows the machine by: learned from its Node, else spec.providerID, else homelab://ns/name."""
    power_policy: PowerPolicy = PowerPolicy.AUTO
    priority: int = 0
    hourly_price: Decimal | None = None
    power_watts: int | None = None
    since: datetime | None = None
    cooldown_until: datetime | None = None
    registered: bool = False
    """A Kubernetes Node of this machine exists (Ready or not)."""
    operation_started: datetime | None = None
    reason: str = ""
    message: str = ""
    recent_boot_seconds: tuple[float, ...] = ()
    """The machine's last recorded boots (status.recentBootSeconds), for the group's learned provisioning time."""
    exercising: bool = False
    """An exercise boot is in flight (status.lastExercise Running): hidden from CA, not in the target."""


def machine_view(
    machine: Machine, priority: int = 0, hourly_price: Decimal | None = None, power_watts: int | None = None
) -> MachineView:
    """The group's view of a node machine; priority and pricing come from its Node spec. Pure."""
    status = machine.status
    return MachineView(
        name=machine.config.name,
        state=status.state,
        provider_id=effective_provider_id(machine.config, status),
        power_policy=machine.config.power_policy,
        priority=priority,
        hourly_price=hourly_price,
        power_watts=power_watts,
        since=status.since,
        cooldown_until=status.cooldown_until,
        registered=machine.kube_node is not KubeNodePresence.ABSENT,
        operation_started=status.operation.started if status.operation else None,
        reason=status.reason,
        message=status.message,
        recent_boot_seconds=status.recent_boot_seconds,
        exercising=is_exercising(status),
    )


TARGET_STATES: Final = frozenset({NodeState.STARTING_UP, NodeState.READY, NodeState.BOOT_FAILED})
"""States that count towards the target size CA sees (a failed boot counts until CA lets it go)."""


def target_size(machines: Iterable[MachineView]) -> int:
    """How many machines CA wants on: those starting, Ready, or failed and not yet released. Pure.

    A machine being exercised is not counted: CA did not ask for it and never sees it.
    """
    return sum(1 for machine in machines if machine.state in TARGET_STATES and not machine.exercising)


def _ineligibility(machine: MachineView, now: datetime) -> str | None:
    """Why a machine may not be chosen for a scale-up now, or None when it may."""
    if machine.state is NodeState.MAINTENANCE or machine.power_policy is PowerPolicy.MAINTENANCE:
        return "in maintenance"
    if machine.state is NodeState.QUARANTINED:
        return "quarantined"
    if machine.power_policy is PowerPolicy.OFF:
        return "powerPolicy Off"
    if machine.exercising:
        # On for an exercise (booting, or checked and drained before its shutdown Job): the first choice, it simply
        # stays on. Once its shutdown Job runs it is too late.
        draining = machine.state is NodeState.SHUTTING_DOWN and machine.operation_started is None
        return None if machine.state is NodeState.STARTING_UP or draining else "being exercised (powering off again)"
    if machine.state in TARGET_STATES:
        return "already on"
    if machine.state is NodeState.SHUTTING_DOWN:
        return "shutting down"
    if machine.power_policy is PowerPolicy.ON:
        return "powerPolicy On (powered on by itself)"
    if machine.cooldown_until is not None and machine.cooldown_until > now:
        return "cooling down"
    return None


def _scale_up_order(machine: MachineView) -> tuple[bool, int, bool, Decimal, bool, int, bool, float, str]:
    # A machine booting for an exercise first: it is on its way already. Unset price, power and since sort last: a
    # machine we know nothing about is never preferred.
    return (
        not machine.exercising,
        -machine.priority,
        machine.hourly_price is None,
        machine.hourly_price if machine.hourly_price is not None else Decimal(0),
        machine.power_watts is None,
        machine.power_watts if machine.power_watts is not None else 0,
        machine.since is None,
        machine.since.timestamp() if machine.since is not None else 0.0,
        machine.name,
    )


def _count_text(reasons: Counter[str]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())) or "no other machines"


def choose_for_scale_up(machines: Sequence[MachineView], delta: int, spec: GroupSpec, now: datetime) -> tuple[str, ...]:
    """Exactly `delta` machines to power on, best first, or NotEnoughMachines (nothing chosen). Pure.

    Eligible: Shutdown, powerPolicy Auto, cooldown over, or booting for an exercise. Order: booting for an
    exercise, higher priority, cheaper hourly price, lower power draw, off the longest, then name. Never beyond
    the group's maxSize.
    """
    if delta <= 0:
        raise ValueError(f"a scale-up needs a positive delta, not {delta}")
    eligible = [machine for machine in machines if _ineligibility(machine, now) is None]
    reasons = Counter(reason for machine in machines if (reason := _ineligibility(machine, now)) is not None)
    current = target_size(machines)
    if current + delta > spec.max_size:
        detail = f"target {current} + {delta} would exceed maxSize {spec.max_size}; others: {_count_text(reasons)}"
        raise NotEnoughMachines(delta, len(eligible), detail)
    if len(eligible) < delta:
        raise NotEnoughMachines(delta, len(eligible), f"not eligible: {_count_text(reasons)}")
    return tuple(machine.name for machine in sorted(eligible, key=_scale_up_order)[:delta])


def _is_booting(machine: MachineView) -> bool:
    return machine.state is NodeState.STARTING_UP and machine.operation_started is not None


def boot_slots(machines: Iterable[MachineView], spec: GroupSpec) -> int | None:
    """How many more machines may start booting now; None means unlimited (no maxConcurrentBoots). Pure.

    `queued_in_order(machines)[:boot_slots(machines, spec)]` are the machines to grant a slot.
    """
    if spec.max_concurrent_boots is None:
        return None
    booting = sum(1 for machine in machines if _is_booting(machine))
    return max(0, spec.max_concurrent_boots - booting)


def _oldest_first(machine: MachineView) -> tuple[bool, float, str]:
    return (machine.since is None, machine.since.timestamp() if machine.since is not None else 0.0, machine.name)


def queued_in_order(machines: Iterable[MachineView]) -> tuple[str, ...]:
    """Machines waiting in StartingUp for a boot slot, oldest first. Pure."""
    queued = [m for m in machines if m.state is NodeState.STARTING_UP and m.operation_started is None]
    return tuple(machine.name for machine in sorted(queued, key=_oldest_first))


def choose_boots_to_cancel(machines: Sequence[MachineView], count: int) -> tuple[str, ...]:
    """`count` boots to cancel for DecreaseTargetSize: unregistered ones only, newest first. Pure.

    Raises CannotDecrease when fewer exist: a registered node is only ever removed through DeleteNodes.
    """
    if count <= 0:
        raise ValueError(f"a decrease cancels a positive number of boots, not {count}")
    cancellable = [
        machine
        for machine in machines
        if machine.state in (NodeState.STARTING_UP, NodeState.BOOT_FAILED)
        and not machine.registered
        and not machine.exercising
    ]
    if len(cancellable) < count:
        raise CannotDecrease(count, len(cancellable))

    def newest_first(machine: MachineView) -> tuple[bool, float, str]:
        known = machine.since is not None
        return (not known, -machine.since.timestamp() if machine.since is not None else 0.0, machine.name)

    return tuple(machine.name for machine in sorted(cancellable, key=newest_first)[:count])


def check_delete(machine: MachineView) -> None:
    """Raise DeleteRefused when CA may not have this machine powered off now. Pure."""
    if machine.state is NodeState.MAINTENANCE or machine.power_policy is PowerPolicy.MAINTENANCE:
        raise DeleteRefused(machine.name, "in maintenance (powerPolicy Maintenance)")
    if machine.exercising:
        raise DeleteRefused(machine.name, "being exercised (not a Cluster Autoscaler instance until it is off again)")
    # A booting On machine too: cancelling its boot would only make the policy start a new one at once.
    if machine.power_policy is PowerPolicy.ON and machine.state in (NodeState.READY, NodeState.STARTING_UP):
        raise DeleteRefused(machine.name, "kept on by powerPolicy On")


class InstanceState(IntEnum):
    """What CA is told a machine is doing (the numbers are the externalgrpc InstanceState values)."""

    RUNNING = 1
    CREATING = 2
    DELETING = 3


class InstanceErrorClass(IntEnum):
    """The externalgrpc InstanceErrorInfo class (only a label in CA's events and metrics)."""

    OUT_OF_RESOURCES = 1
    OTHER = 99


@dataclass(frozen=True)
class InstanceError:
    code: str
    message: str
    error_class: InstanceErrorClass = InstanceErrorClass.OTHER


@dataclass(frozen=True)
class InstanceView:
    """One instance of NodeGroupNodes: `id` equals the Kubernetes Node's spec.providerID byte for byte."""

    id: str
    state: InstanceState
    error: InstanceError | None = None


_CA_STATES: Final = {
    NodeState.STARTING_UP: InstanceState.CREATING,
    NodeState.BOOT_FAILED: InstanceState.CREATING,
    NodeState.READY: InstanceState.RUNNING,
    NodeState.SHUTTING_DOWN: InstanceState.DELETING,
}


def instance_status(machine: MachineView) -> InstanceView | None:
    """How CA sees the machine; None for machines that are not listed (off, quarantined, in maintenance, being
    exercised). Pure.

    A failed boot is `CREATING` with error info, so CA backs the group off at once instead of waiting for
    its max-node-provision-time, and then lets the machine go with DeleteNodes.
    """
    state = _CA_STATES.get(machine.state)
    if state is None or machine.exercising:
        return None
    error = None
    if machine.state is NodeState.BOOT_FAILED:
        code = "BootTimedOut" if machine.reason == "BootTimedOut" else "BootFailed"
        error = InstanceError(code=code, message=machine.message or code)
    return InstanceView(id=machine.provider_id, state=state, error=error)


def state_counts(machines: Iterable[MachineView]) -> dict[str, int]:
    """Number of machines in each state, every state listed (zeros included), for the Group status. Pure."""
    counts = Counter(machine.state for machine in machines)
    return {state.value: counts.get(state, 0) for state in NodeState}
