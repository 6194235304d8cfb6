"""`SupervisorActor`: creates, routes to and replaces the group and node actors.

It is the one actor the outside world talks to (well-known global name `SUPERVISOR_GLOBAL_NAME`): the watchers tell
it observations, the gateway asks it mutations. Separate from the groups and nodes because its job is the
*population* of actors, not any machine's or group's behaviour:

* Routing. Observations go to the node actor they concern: a Node resource by `<namespace>/<name>`, a Kubernetes
  Node by its name (an index kept from each machine's `kubernetesNodeName`), a power Job by its machine label.
  Gateway mutations go to the group actor wrapped in `Forwarded`, so the group replies to the asker directly;
  an unknown group is answered NOT_FOUND here.
* Memory. It keeps the latest observation of every machine's Node resource, Jobs and Kubernetes Node, plus the
  last status each node actor asked to write (newer than any echo the watcher brings back, since the actor is
  its only writer). A node actor that dies (`ChildActorExited`) is recreated and derives its state from that
  memory; `derive` adopts Jobs in flight, so no power Job is created twice. Restarts are rate-limited.
* Lifecycle. A machine whose Group does not exist yet waits (one Warning Event `GroupNotFound`) and gets its actor
  when the Group appears. A changed Node spec or Group spec is passed to the members as `MachineReconfigured`. A
  removed machine's actor exits and its group forgets it. A removed Group's actor exits (the group disappears from
  the read model); its members keep running their last configuration, unlisted, until the Group returns.
* Restart recovery. `InventoryListed` (start, or leadership gained) creates every machine from the full listing
  at once and reconciles whatever already runs.

Observations that tell a machine nothing new (a kubelet heartbeat, a Job that is still running) are filtered here,
so node actors only see events that matter to their state machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from thespian.actors import ActorExitRequest, ChildActorExited

from actors import metrics, wiring
from actors.base import ShellActor
from actors.effects_port import EffectBatch, GroupEventBatch, GroupStatusBatch, MachineRef
from actors.fsm import effects as fx
from actors.fsm.events import Event, NodeGone
from actors.fsm.group_planning import invalid_spec_condition, invalid_spec_event
from actors.group_actor import GroupActor
from actors.messages import (
    ConfigureGroup,
    ConfigureMachine,
    ConfigureSupervisor,
    DecreaseTargetSize,
    DeleteNodes,
    ErrorKind,
    Forwarded,
    GroupChanged,
    GroupInvalid,
    GroupObserved,
    GroupRemoved,
    IncreaseSize,
    InventoryListed,
    JobObserved,
    JobRemoved,
    KubeNodeObserved,
    KubeNodeRemoved,
    LookupMachine,
    MachineEvent,
    MachineFound,
    MachineObserved,
    MachineReconfigured,
    MachineRemoved,
    MachineStatusWritten,
    MemberAssigned,
    MemberReleased,
    MutationRefusal,
    MutationReply,
    Ping,
    Pong,
)
from actors.node_actor import NodeActor
from actors.read_model import group_id
from actors.runtime import ActorRuntime
from schemas import labels
from schemas.group import Group, GroupStatus
from schemas.node import Node, NodeStatus, kubernetes_node_name

LOGGER = logging.getLogger(__name__)

SUPERVISOR_GLOBAL_NAME: Final = "homelab-autoscaler-supervisor"
MAX_RESTARTS: Final = 5
"""A node or group actor that died this many times within `RESTART_WINDOW` is not recreated again."""
RESTART_WINDOW: Final = timedelta(minutes=1)


def machine_key(namespace: str, name: str) -> str:
    """`<namespace>/<name>` of a machine's Node resource. Pure."""
    return f"{namespace}/{name}"


def machine_group_id(node: Node) -> str | None:
    """The id of the group a Node resource names by its group label (same namespace), or None. Pure."""
    name = node.metadata.labels.get(labels.GROUP_LABEL)
    return group_id(node.metadata.namespace, name) if name else None


def needs_reconfiguration(before: Node, after: Node) -> bool:
    """Whether a Node resource change matters to its actor (spec or reset annotation; not our status echo). Pure."""
    reset_before = before.metadata.annotations.get(labels.RESET_ANNOTATION)
    reset_after = after.metadata.annotations.get(labels.RESET_ANNOTATION)
    return before.spec != after.spec or reset_before != reset_after


def group_spec_changed(before: Group, after: Group) -> bool:
    """Whether a Group resource change matters to its actors (spec or generation; not our status echo). Pure."""
    return before.spec != after.spec or before.metadata.generation != after.metadata.generation


@dataclass
class _GroupEntry:
    group: Group
    address: Any = None
    restarts: list[datetime] = field(default_factory=list)


@dataclass
class _MachineEntry:
    node: Node
    group_id: str | None
    address: Any = None
    written: NodeStatus | None = None
    """The status the actor last asked to write; preferred over the observed one when deriving again."""
    restarts: list[datetime] = field(default_factory=list)
    missing_group_reported: str | None = None
    """The group id a GroupNotFound Event was already recorded for (Event once per missing group)."""


class SupervisorActor(ShellActor):
    """Creates, routes to and replaces the group and node actors; see the module docstring."""

    actor_kind = "supervisor"

    def __init__(self) -> None:
        super().__init__()
        self._wiring_key = ""
        self._wiring: wiring.Wiring | None = None
        self._groups: dict[str, _GroupEntry] = {}
        self._machines: dict[str, _MachineEntry] = {}
        self._members: dict[str, set[str]] = {}
        self._jobs: dict[str, dict[str, JobObserved]] = {}
        self._kube_nodes: dict[str, KubeNodeObserved] = {}
        self._machine_by_node_name: dict[str, str] = {}
        self._children: dict[str, tuple[str, str]] = {}
        self._inventory_listed = False
        self._invalid_groups: dict[str, str] = {}
        """Group id → why its newest version fails our schemas (each new reason is reported once)."""

    # --- setup and probes --------------------------------------------------------------------------------------

    def receiveMsg_ConfigureSupervisor(self, message: ConfigureSupervisor, sender: Any) -> None:
        self._wiring = wiring.lookup(message.wiring_key)
        self._wiring_key = message.wiring_key
        self.actor_name = "supervisor"

    def receiveMsg_Ping(self, message: Ping, sender: Any) -> None:
        running = len(self._children) - sum(1 for group in self._groups.values() if group.address is not None)
        listed = self._wiring is not None and self._inventory_listed
        self.send(sender, Pong(message.request_id, listed, len(self._groups), running))

    def receiveMsg_LookupMachine(self, message: LookupMachine, sender: Any) -> None:
        entry = self._machines.get(machine_key(message.namespace, message.name))
        group = self._groups.get(entry.group_id or "") if entry is not None else None
        self.send(sender, MachineFound(
            message.request_id,
            entry.address if entry is not None else None,
            entry.group_id if entry is not None else None,
            group.address if group is not None else None,
        ))

    # --- gateway mutations -------------------------------------------------------------------------------------

    def receiveMsg_IncreaseSize(self, message: IncreaseSize, sender: Any) -> None:
        self._route_mutation(message, sender)

    def receiveMsg_DeleteNodes(self, message: DeleteNodes, sender: Any) -> None:
        self._route_mutation(message, sender)

    def receiveMsg_DecreaseTargetSize(self, message: DecreaseTargetSize, sender: Any) -> None:
        self._route_mutation(message, sender)

    def _route_mutation(self, message: IncreaseSize | DeleteNodes | DecreaseTargetSize, sender: Any) -> None:
        entry = self._groups.get(message.group_id)
        if entry is not None and entry.address is not None:
            self.send(entry.address, Forwarded(sender, message))
            return
        known = ", ".join(sorted(self._groups)) or "none"
        error = MutationRefusal(ErrorKind.NOT_FOUND, f"no node group {message.group_id!r} (known: {known})")
        self.send(sender, MutationReply(message.request_id, error))

    # --- observations ------------------------------------------------------------------------------------------

    def receiveMsg_InventoryListed(self, message: InventoryListed, sender: Any) -> None:
        # Caches first, so that every actor created below derives from the complete listing.
        listed_nodes = {observed.name for observed in message.kube_nodes}
        for gone in [name for name in self._kube_nodes if name not in listed_nodes]:
            self._kube_node_removed(gone)
        for kube_node in message.kube_nodes:
            self._kube_node_observed(kube_node)
        self._replace_jobs(message.jobs)
        for group in message.groups:
            self._group_observed(group)
        for node in message.machines:
            self._machine_observed(node)
        listed_machines = {machine_key(node.metadata.namespace, node.metadata.name) for node in message.machines}
        for key in [key for key in self._machines if key not in listed_machines]:
            self._machine_removed(key)
        listed_groups = {group_id(group.metadata.namespace, group.metadata.name) for group in message.groups}
        for gid in [gid for gid in self._groups if gid not in listed_groups]:
            self._group_removed(gid)
        self._inventory_listed = True
        LOGGER.debug("inventory applied: %d groups, %d machines, %d Kubernetes Nodes, %d Jobs", len(message.groups),
                    len(message.machines), len(message.kube_nodes), len(message.jobs))

    def receiveMsg_GroupObserved(self, message: GroupObserved, sender: Any) -> None:
        self._group_observed(message.group)

    def receiveMsg_GroupRemoved(self, message: GroupRemoved, sender: Any) -> None:
        self._group_removed(group_id(message.namespace, message.name))

    def receiveMsg_GroupInvalid(self, message: GroupInvalid, sender: Any) -> None:
        gid = group_id(message.namespace, message.name)
        if self._invalid_groups.get(gid) == message.reason:
            return  # already reported: a relist or a change elsewhere in the object
        self._invalid_groups[gid] = message.reason
        entry = self._groups.get(gid)
        if entry is not None and entry.address is not None:
            self.send(entry.address, message)  # it runs the last valid spec, and carries the condition in its status
            return
        # Nobody runs this group, so the Supervisor writes what its owner must see: the condition and an Event.
        LOGGER.warning("group=%s: invalid spec; not running it: %s", gid, message.reason)
        wiring_ = self._require_wiring()
        condition = invalid_spec_condition(message.reason, message.generation, wiring_.clock())
        wiring_.effects.submit(GroupStatusBatch(message.namespace, message.name, GroupStatus(conditions=(condition,))))
        wiring_.effects.submit(GroupEventBatch(
            message.namespace, message.name, message.uid, invalid_spec_event(message.reason, running=False)
        ))

    def receiveMsg_MachineObserved(self, message: MachineObserved, sender: Any) -> None:
        self._machine_observed(message.node)

    def receiveMsg_MachineRemoved(self, message: MachineRemoved, sender: Any) -> None:
        self._machine_removed(machine_key(message.namespace, message.name))

    def receiveMsg_KubeNodeObserved(self, message: KubeNodeObserved, sender: Any) -> None:
        self._kube_node_observed(message)

    def receiveMsg_KubeNodeRemoved(self, message: KubeNodeRemoved, sender: Any) -> None:
        self._kube_node_removed(message.name)

    def receiveMsg_JobObserved(self, message: JobObserved, sender: Any) -> None:
        self._job_observed(message)

    def receiveMsg_JobRemoved(self, message: JobRemoved, sender: Any) -> None:
        self._jobs.get(machine_key(message.namespace, message.machine), {}).pop(message.name, None)

    def receiveMsg_MachineStatusWritten(self, message: MachineStatusWritten, sender: Any) -> None:
        entry = self._machines.get(machine_key(message.namespace, message.name))
        if entry is not None:
            entry.written = message.status

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender: Any) -> None:
        child = self._children.pop(message.childAddress.actorAddressString, None)
        if child is None:
            return  # retired on purpose
        kind, key = child
        if kind == "group":
            self._restart_group(key)
        else:
            self._restart_machine(key)

    # --- groups ------------------------------------------------------------------------------------------------

    def _group_observed(self, group: Group) -> None:
        gid = group_id(group.metadata.namespace, group.metadata.name)
        was_invalid = self._invalid_groups.pop(gid, None) is not None
        entry = self._groups.get(gid)
        if entry is None:
            self._groups[gid] = _GroupEntry(group)
            self._start_group(gid)
            return
        changed = group_spec_changed(entry.group, group)
        entry.group = group
        if changed or was_invalid:  # fixed back to the very spec it ran: its InvalidSpec condition must still go
            self.send(entry.address, GroupChanged(group))
            self._attach_members(gid, only_running=True)

    def _group_removed(self, gid: str) -> None:
        self._invalid_groups.pop(gid, None)
        entry = self._groups.pop(gid, None)
        if entry is not None and entry.address is not None:
            LOGGER.info("group=%s removed; its machines keep their last configuration, unlisted", gid)
            self._retire(entry.address)

    def _start_group(self, gid: str) -> None:
        entry = self._groups[gid]
        entry.address = self._create_child(GroupActor, "group", gid)
        self.send(entry.address, ConfigureGroup(self._wiring_key, entry.group))
        self._attach_members(gid, only_running=False)

    def _attach_members(self, gid: str, only_running: bool) -> None:
        """Give the group's machines their (new) group: start waiting ones, reconfigure running ones."""
        for key in sorted(self._members.get(gid, ())):
            entry = self._machines[key]
            if entry.address is None:
                if not only_running:
                    self._start_machine(key)
                continue
            self._reconfigure(entry)

    def _restart_group(self, gid: str) -> None:
        entry = self._groups.get(gid)
        if entry is None:
            return
        entry.address = None
        if self._may_restart(entry.restarts, f"group {gid}"):
            self._start_group(gid)

    # --- machines ----------------------------------------------------------------------------------------------

    def _machine_observed(self, node: Node) -> None:
        key = machine_key(node.metadata.namespace, node.metadata.name)
        gid = machine_group_id(node)
        entry = self._machines.get(key)
        if entry is None:
            self._machines[key] = _MachineEntry(node, gid)
            self._join(key, gid)
            self._index_node_name(key, None, node)
            self._start_machine(key)
            return
        previous, entry.node = entry.node, node
        self._index_node_name(key, previous, node)
        if gid != entry.group_id:
            self._move(key, entry, gid)
        elif entry.address is not None and needs_reconfiguration(previous, node):
            self._reconfigure(entry)

    def _move(self, key: str, entry: _MachineEntry, gid: str | None) -> None:
        """The machine's group label changed: leave the old group, join the new one (or wait for it)."""
        old = self._groups.get(entry.group_id or "")
        if old is not None and entry.address is not None:
            self.send(old.address, MemberReleased(entry.node.metadata.name))
        self._leave(key, entry.group_id)
        entry.group_id = gid
        self._join(key, gid)
        if entry.address is None:
            self._start_machine(key)
        elif gid in self._groups:
            self._reconfigure(entry)
        else:
            self._retire(entry.address)  # no group to report to; it derives again once the group exists
            entry.address = None
            self._report_missing_group(entry)

    def _machine_removed(self, key: str) -> None:
        entry = self._machines.pop(key, None)
        if entry is None:
            return
        self._leave(key, entry.group_id)
        self._index_node_name(key, entry.node, None)
        self._jobs.pop(key, None)
        group = self._groups.get(entry.group_id or "")
        if entry.address is not None:
            self._retire(entry.address)
            if group is not None:
                self.send(group.address, MemberReleased(entry.node.metadata.name))
        metrics.forget_node(entry.group_id or "", entry.node.metadata.name)

    def _start_machine(self, key: str) -> None:
        entry = self._machines[key]
        group = self._groups.get(entry.group_id or "")
        if group is None or group.address is None:
            self._report_missing_group(entry)
            return
        entry.address = self._create_child(NodeActor, "machine", key)
        self.send(group.address, MemberAssigned(entry.node.metadata.name))
        node = entry.node if entry.written is None else entry.node.model_copy(update={"status": entry.written})
        jobs = tuple(job.observation() for job in self._jobs.get(key, {}).values())
        kube_node = self._kube_nodes.get(kubernetes_node_name(entry.node))
        configure = ConfigureMachine(
            self._wiring_key, node, group_id(node.metadata.namespace, group.group.metadata.name), group.group.spec,
            group.address, jobs, kube_node.observation() if kube_node is not None else None,
        )
        self.send(entry.address, configure)

    def _reconfigure(self, entry: _MachineEntry) -> None:
        group = self._groups.get(entry.group_id or "")
        if group is None or group.address is None:
            return  # its group was removed: it keeps its last configuration until the group returns
        self.send(group.address, MemberAssigned(entry.node.metadata.name))
        gid = entry.group_id or ""
        self.send(entry.address, MachineReconfigured(entry.node, gid, group.group.spec, group.address))

    def _restart_machine(self, key: str) -> None:
        entry = self._machines.get(key)
        if entry is None:
            return
        entry.address = None
        if self._may_restart(entry.restarts, f"machine {key}"):
            self._start_machine(key)
            return
        group = self._groups.get(entry.group_id or "")
        if group is not None:  # so the group does not wait for a report that will never come
            self.send(group.address, MemberReleased(entry.node.metadata.name))

    def _report_missing_group(self, entry: _MachineEntry) -> None:
        wanted = entry.group_id or ""
        if entry.missing_group_reported == wanted:
            return
        entry.missing_group_reported = wanted
        node = entry.node
        message = (
            f"Group {wanted.partition('/')[2]!r} does not exist in namespace {node.metadata.namespace!r}"
            if wanted
            else f"the Node resource has no {labels.GROUP_LABEL} label"
        ) + "; the machine is not managed until it does"
        LOGGER.warning("machine=%s/%s: %s", node.metadata.namespace, node.metadata.name, message)
        ref = MachineRef(node.metadata.namespace, node.metadata.name, kubernetes_node_name(node),
                         wanted.partition("/")[2])
        event = fx.RecordEvent(fx.EventType.WARNING, "GroupNotFound", message)
        self._require_wiring().effects.submit(EffectBatch(ref, node, None, (event,), self.myAddress))

    # --- Kubernetes Nodes and Jobs -----------------------------------------------------------------------------

    def _kube_node_observed(self, observed: KubeNodeObserved) -> None:
        previous = self._kube_nodes.get(observed.name)
        self._kube_nodes[observed.name] = observed
        if not observed.same_for_machine(previous):
            self._tell_machine(self._machine_by_node_name.get(observed.name), observed.event())

    def _kube_node_removed(self, name: str) -> None:
        if self._kube_nodes.pop(name, None) is not None:
            self._tell_machine(self._machine_by_node_name.get(name), NodeGone())

    def _job_observed(self, observed: JobObserved) -> None:
        key = machine_key(observed.namespace, observed.machine)
        jobs = self._jobs.setdefault(key, {})
        previous = jobs.get(observed.name)
        jobs[observed.name] = observed
        event = observed.event()
        if event is not None and (previous is None or previous.phase is not observed.phase):
            self._tell_machine(key, event)

    def _replace_jobs(self, listed: Iterable[JobObserved]) -> None:
        listed = list(listed)
        names = {(job.namespace, job.machine, job.name) for job in listed}
        for key, jobs in self._jobs.items():
            namespace = key.partition("/")[0]
            for name in [name for name, job in jobs.items() if (namespace, job.machine, name) not in names]:
                del jobs[name]
        for job in listed:
            self._job_observed(job)

    def _tell_machine(self, key: str | None, event: Event) -> None:
        entry = self._machines.get(key) if key is not None else None
        if entry is not None and entry.address is not None:
            self.send(entry.address, MachineEvent(event))

    # --- small helpers -----------------------------------------------------------------------------------------

    def _create_child(self, actor_class: type[ShellActor], kind: str, key: str) -> Any:
        address = self.createActor(actor_class)
        self._children[address.actorAddressString] = (kind, key)
        return address

    def _retire(self, address: Any) -> None:
        self._children.pop(address.actorAddressString, None)
        self.send(address, ActorExitRequest())

    def _may_restart(self, restarts: list[datetime], what: str) -> bool:
        now = self._require_wiring().clock()
        restarts[:] = [when for when in restarts if now - when < RESTART_WINDOW]
        if len(restarts) >= MAX_RESTARTS:
            LOGGER.error("%s died %d times within %s; not recreated again", what, len(restarts), RESTART_WINDOW)
            return False
        restarts.append(now)
        LOGGER.warning("%s died; recreating it from the last observations", what)
        return True

    def _join(self, key: str, gid: str | None) -> None:
        if gid is not None:
            self._members.setdefault(gid, set()).add(key)

    def _leave(self, key: str, gid: str | None) -> None:
        members = self._members.get(gid or "")
        if members is not None:
            members.discard(key)

    def _index_node_name(self, key: str, before: Node | None, after: Node | None) -> None:
        old = kubernetes_node_name(before) if before is not None else None
        new = kubernetes_node_name(after) if after is not None else None
        if old == new:
            return
        if old is not None and self._machine_by_node_name.get(old) == key:
            del self._machine_by_node_name[old]
        if new is not None:
            self._machine_by_node_name[new] = key

    def _require_wiring(self) -> wiring.Wiring:
        if self._wiring is None:
            raise wiring.WiringNotFound("the supervisor has not been configured")
        return self._wiring


def start_supervisor(runtime: ActorRuntime, wiring_key: str, timeout: float = 10.0) -> Any:
    """Create the Supervisor in `runtime`, configure it with `wiring_key`, and return its address once it answers."""
    address = runtime.create_actor(SupervisorActor, globalName=SUPERVISOR_GLOBAL_NAME).result(timeout)
    runtime.tell(address, ConfigureSupervisor(wiring_key))
    runtime.ask(address, Ping(runtime.new_request_id()), timeout, Pong).result(timeout)
    return address
