"""The read model: immutable snapshots of every group that the gRPC gateway answers hot calls from.

Cluster Autoscaler calls NodeGroupForNode and NodeGroupGetOptions many times per loop and aborts its whole loop
when NodeGroups, NodeGroupTargetSize or NodeGroupNodes fail, so those calls must never wait for an actor, a lock or
the API server. Group actors (on the pump thread, the only writer) publish a new `GroupSnapshot` after every state
change and before replying to a mutation; gRPC threads read without locks.

Why this is safe without a lock: a snapshot is never mutated after publication; publishing swaps one reference in
a dict and updates the two lookup indexes key by key. In CPython a single dict get or set is atomic, and readers
only ever do single-key gets (never iterate a dict being changed), so a reader sees either the old or the new value
of each key. A reader may briefly find a provider id indexed to a group whose snapshot no longer lists it (or the
reverse); lookups therefore re-check membership in the snapshot they got, so answers are always self-consistent.

Until the first complete inventory is applied the model is *not ready*: its groups are missing or partial, and an
empty list would read to CA as "this cluster has no node groups". `inventory_applied` says which; the operator sets
it once the Supervisor reports the inventory applied and clears it when the replica stops acting, and the gateway
answers UNAVAILABLE (CA retries next loop) while it is false. It is a plain bool read by one attribute load, so the
hot calls stay as cheap as before.

Maintenance machines are never indexed: CA must see them in no group at all (NodeGroupForNode answers "not
autoscaled"), so it never tries to scale them down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

from actors.fsm.group import InstanceView
from schemas.common import Taint
from schemas.group import AutoscalingOptions
from schemas.node import NodeState, PowerPolicy


@dataclass(frozen=True)
class MachineSnapshot:
    """One machine as the gateway sees it."""

    name: str
    namespace: str
    kubernetes_node_name: str
    provider_id: str
    """The instance id CA knows the machine by (the Kubernetes Node's spec.providerID, byte for byte)."""
    state: NodeState
    power_policy: PowerPolicy
    instance: InstanceView | None
    """What NodeGroupNodes reports; None for machines that are not listed (off, quarantined, maintenance)."""
    hourly_price: Decimal | None = None
    power_watts: int | None = None
    exercising: bool = False
    """Being exercised: NodeGroupForNode claims it for no group (and `instance` is None), so CA never sees it."""


@dataclass(frozen=True)
class TemplateSource:
    """What a member looks like to the scheduler, for scale-from-zero."""

    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    capacity: Mapping[str, str]
    allocatable: Mapping[str, str]
    origin: Literal["observed", "declared"]
    """`observed`: copied from a member last seen Ready; `declared`: the Group's spec.template."""


@dataclass(frozen=True)
class GroupSnapshot:
    """One group at one moment. `id` is `<namespace>/<name>`, the node group id CA sees."""

    id: str
    namespace: str
    name: str
    min_size: int
    max_size: int
    target_size: int
    machines: tuple[MachineSnapshot, ...]
    autoscaling_options: AutoscalingOptions | None = None
    template: TemplateSource | None = None
    gpu_label: str | None = None
    gpu_types: tuple[str, ...] = ()
    learned_provision_seconds: float | None = None
    """What `maxNodeProvisionTime: auto` answers CA, from the members' recorded boots; None until enough boots."""
    version: int = 0
    _by_provider_id: Mapping[str, MachineSnapshot] = field(default_factory=dict, repr=False, compare=False)
    _by_node_name: Mapping[str, MachineSnapshot] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Machines in maintenance or being exercised belong to no group as far as CA can tell.
        listed = [
            machine
            for machine in self.machines
            if machine.state is not NodeState.MAINTENANCE and not machine.exercising
        ]
        object.__setattr__(
            self, "_by_provider_id", MappingProxyType({machine.provider_id: machine for machine in listed})
        )
        object.__setattr__(
            self, "_by_node_name", MappingProxyType({machine.kubernetes_node_name: machine for machine in listed})
        )

    @property
    def instances(self) -> tuple[InstanceView, ...]:
        """NodeGroupNodes: every listed machine's instance, in machine order."""
        return tuple(machine.instance for machine in self.machines if machine.instance is not None)

    def machine_by_provider_id(self, provider_id: str) -> MachineSnapshot | None:
        return self._by_provider_id.get(provider_id)

    def machine_by_node_name(self, node_name: str) -> MachineSnapshot | None:
        return self._by_node_name.get(node_name)


def describe_inventory(groups: tuple[GroupSnapshot, ...]) -> str:
    """`2 groups, 6 machines: Ready 1, Shutdown 5`: the one line a start logs instead of one line per machine. Pure.

    States are in the order of `NodeState`, and only those that occur are named.
    """
    counts = {state: 0 for state in NodeState}
    for group in groups:
        for machine in group.machines:
            counts[machine.state] += 1
    total = sum(counts.values())
    by_state = ", ".join(f"{state.value} {count}" for state, count in counts.items() if count)
    return f"{_count(len(groups), 'group')}, {_count(total, 'machine')}" + (f": {by_state}" if by_state else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def group_id(namespace: str, name: str) -> str:
    """The node group id CA sees; namespaced so two same-named Groups never merge. Pure."""
    return f"{namespace}/{name}"


class ReadModel:
    """Latest GroupSnapshot per group plus O(1) indexes by provider id and Kubernetes node name.

    One writer (the pump thread) and any number of lock-free readers; see the module docstring.
    """

    def __init__(self) -> None:
        self._groups: dict[str, GroupSnapshot] = {}
        self._ordered: tuple[GroupSnapshot, ...] = ()
        self._group_by_provider_id: dict[str, str] = {}
        self._group_by_node_name: dict[str, str] = {}
        self._inventory_applied = False

    @property
    def inventory_applied(self) -> bool:
        """True once the first complete inventory is in the model, until this replica stops acting."""
        return self._inventory_applied

    def set_inventory_applied(self, applied: bool) -> None:
        """Say whether the model holds a complete inventory (the operator's control thread; one atomic store)."""
        self._inventory_applied = applied

    def publish(self, snapshot: GroupSnapshot) -> None:
        """Make `snapshot` the group's current state (writer thread only)."""
        previous = self._groups.get(snapshot.id)
        self._groups[snapshot.id] = snapshot
        self._ordered = tuple(sorted(self._groups.values(), key=lambda group: group.id))
        self._reindex(previous, snapshot)

    def remove(self, group_id: str) -> None:
        """Forget a group (writer thread only)."""
        previous = self._groups.pop(group_id, None)
        self._ordered = tuple(sorted(self._groups.values(), key=lambda group: group.id))
        self._reindex(previous, None)

    def group(self, group_id: str) -> GroupSnapshot | None:
        return self._groups.get(group_id)

    def groups(self) -> tuple[GroupSnapshot, ...]:
        """Every group, ordered by id."""
        return self._ordered

    def group_for_provider_id(self, provider_id: str) -> GroupSnapshot | None:
        group = self._groups.get(self._group_by_provider_id.get(provider_id, ""))
        return group if group is not None and group.machine_by_provider_id(provider_id) is not None else None

    def group_for_node_name(self, node_name: str) -> GroupSnapshot | None:
        group = self._groups.get(self._group_by_node_name.get(node_name, ""))
        return group if group is not None and group.machine_by_node_name(node_name) is not None else None

    def machine_for(
        self, provider_id: str = "", node_name: str = ""
    ) -> tuple[GroupSnapshot, MachineSnapshot] | None:
        """The group and machine of a Kubernetes Node: by provider id first, then by node name.

        CA's stand-in nodes for unregistered or failed instances carry name == provider id == instance id, so
        the provider id lookup finds them; a registered Node with an unexpected provider id is still found by name.
        """
        if provider_id:
            group = self.group_for_provider_id(provider_id)
            machine = group.machine_by_provider_id(provider_id) if group else None
            if group is not None and machine is not None:
                return group, machine
        if node_name:
            group = self.group_for_node_name(node_name)
            machine = group.machine_by_node_name(node_name) if group else None
            if group is not None and machine is not None:
                return group, machine
        return None

    def _reindex(self, previous: GroupSnapshot | None, current: GroupSnapshot | None) -> None:
        old_ids = set(previous._by_provider_id) if previous else set()
        old_names = set(previous._by_node_name) if previous else set()
        new_ids = set(current._by_provider_id) if current else set()
        new_names = set(current._by_node_name) if current else set()
        for key in old_ids - new_ids:
            if previous is not None and self._group_by_provider_id.get(key) == previous.id:
                del self._group_by_provider_id[key]
        for key in old_names - new_names:
            if previous is not None and self._group_by_node_name.get(key) == previous.id:
                del self._group_by_node_name[key]
        if current is not None:
            for key in new_ids - old_ids:
                self._group_by_provider_id[key] = current.id
            for key in new_names - old_names:
                self._group_by_node_name[key] = current.id
