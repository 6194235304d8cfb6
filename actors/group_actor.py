"""`GroupActor`: one Cluster Autoscaler node group; the only place its target size changes.

Why an actor per group: CA's three mutations (IncreaseSize, DeleteNodes, DecreaseTargetSize) must change the
target *synchronously* and must never double-book a machine, even when gRPC threads fire them at once. An actor
handles one message at a time, so each mutation sees the effects of the one before without any lock.

What it keeps: the group's resource, and a mirror of its members (`MachineView` for the group policy in
`actors.fsm.group`, `MachineSnapshot` for the read model, the Kubernetes Node last seen Ready for the
scale-from-zero template, and each member actor's address). Members report with `MachineStateChanged`; the
group applies its own commands to the mirror *at once* (a machine told to power on is StartingUp in the mirror
before its actor has even seen the command), so a second mutation right behind the first cannot choose it again.
Each command to a member is numbered, and a report older than the group's latest command to that member is
ignored, so a report in flight can never undo an intent (the member reports again after the command).

Answering: a mutation's reply is held until every machine it commanded has its new status stored in the API
(each commanded member answers with `IntentStored`, relayed by the writer), so a scale-up CA was told succeeded
survives an operator kill a millisecond later: the next operator derives the commanded states from those
statuses. The wait is bounded by `Wiring.stored_wait_seconds` (a ticker timer). Past it the group answers
`NOT_STORED` (DEADLINE_EXCEEDED to CA: the change may or may not have happened, which is the truth: it is under
way, and a restart before the writes land would forget it), logs a WARNING and counts `mutations_not_stored`.
So an OK always means stored. Other messages, mutations included, are handled while a reply is held: the mirror
already shows the commands, and the target CA reads next counts them.

Events: each size change CA makes is recorded on the Group resource (Normal `ScaleUp`, `ScaleDown`,
`TargetDecreased`, naming the machines and the target before and after), each refusal as a Warning
(`IncreaseSizeRefused`, ...), and a change the API did not store in time as a Warning `NotStoredInTime`,
so `kubectl describe hgroup` tells what CA asked for and what came of it.

Publishing: after a mutation the snapshot is published *before* the reply (the gateway reads the new target
from the read model right after). After member reports the group publishes once per burst: it sends itself a
`PublishSnapshot` which is delivered after the reports already queued. The group's status resource is
submitted only when it changed. Until every assigned member has reported once, the group neither publishes
nor accepts mutations (it would count machines it has not heard of as absent).

Schedules: the minSize and maxSize in force are the spec's, overridden by the first active window of
`spec.schedules` (`actors.fsm.schedules`). They are what the read model publishes (so CA's NodeGroups and
NodeGroupForNode report them) and what IncreaseSize is checked against. While a window raises minSize above the
target, the group powers on machines up to it itself (best first, as for IncreaseSize): CA only keeps a group at
its min, it does not raise a group to it. When the window ends min falls back and CA removes what is unneeded in
its own time; a lowered maxSize refuses scale-ups but never powers anything off. One ticker timer is armed for
the next window change, and each change is an Event (`ScheduleStarted`, `ScheduleEnded`).

The deciding is pure (`actors.fsm.group_planning`: `plan_increase`, `plan_schedule_boots`, `plan_delete_actions`,
`intended`, `group_status`; `actors.fsm.group`, `actors.fsm.schedules`; `template_source` and the Event texts
below); the handlers only route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from actors import metrics, wiring
from actors.base import ShellActor
from actors.effects_port import GroupEventBatch, GroupStatusBatch
from actors.fsm import effects as fx
from actors.fsm.durations import learned_provision_seconds
from actors.fsm.events import BootSlotGranted, CancelBoot, Event, PowerOnRequested
from actors.fsm.exercise import choose_for_exercise, next_look
from actors.fsm.group import (
    MachineView,
    boot_slots,
    instance_status,
    queued_in_order,
    target_size,
)
from actors.fsm.group_planning import (
    group_status,
    in_force,
    intended,
    invalid_spec_condition,
    invalid_spec_event,
    plan_decrease,
    plan_delete_actions,
    plan_increase,
    plan_schedule_boots,
    schedule_change_event,
)
from actors.fsm.schedules import EffectiveSizes, effective_sizes, next_change
from actors.messages import (
    ConfigureGroup,
    DecreaseTargetSize,
    DeleteNodes,
    ErrorKind,
    Forwarded,
    GroupChanged,
    GroupInvalid,
    IncreaseSize,
    IntentStored,
    MachineEvent,
    MachineStateChanged,
    MemberAssigned,
    MemberReleased,
    MutationRefusal,
    MutationReply,
    NodeIdentity,
)
from actors.read_model import GroupSnapshot, MachineSnapshot, ReadModel, TemplateSource, group_id
from actors.ticker_actor import CancelTimer, StartTimer, TimerDue, ticker_address
from schemas import labels
from schemas.common import Condition, Taint
from schemas.group import Group, GroupSpec, GroupStatus, Schedule
from schemas.node import NodeSnapshot, NodeState

LOGGER = logging.getLogger(__name__)

Mutation = IncreaseSize | DeleteNodes | DecreaseTargetSize


@dataclass(frozen=True)
class PublishSnapshot:
    """Sent by a group to itself: publish the mirror once the reports already queued have been handled."""


# --- pure decisions ---------------------------------------------------------------------------------------------


_MUTATION_EVENTS: Final[Mapping[type[Any], tuple[str, str, str]]] = {
    # mutation: (reason when done, message when done, reason when refused)
    IncreaseSize: (
        "ScaleUp", "Cluster Autoscaler asked for {count} more: powering on {names}", "IncreaseSizeRefused"
    ),
    DeleteNodes: (
        "ScaleDown", "Cluster Autoscaler deleted {count}: powering off or cancelling {names}", "DeleteNodesRefused"
    ),
    DecreaseTargetSize: (
        "TargetDecreased", "Cluster Autoscaler lowered the target by {count}: cancelling {names}",
        "DecreaseTargetSizeRefused",
    ),
}


def mutation_event(
    request: Mutation, machines: Sequence[str], target_before: int, target_after: int
) -> tuple[fx.EventType, str, str]:
    """The Normal Event recorded on the Group for a size change that commanded `machines`. Pure."""
    reason, template, _refused = _MUTATION_EVENTS[type(request)]
    count = len(machines)
    message = template.format(count=count, names=", ".join(machines))
    return fx.EventType.NORMAL, reason, f"{message} (target {target_before} → {target_after})"


def refusal_event(request: Mutation, error: MutationRefusal) -> tuple[fx.EventType, str, str]:
    """The Warning Event recorded on the Group for a size change it refused. Pure."""
    return fx.EventType.WARNING, _MUTATION_EVENTS[type(request)][2], error.message


def template_source(spec: GroupSpec, name: str, last_ready: Iterable[NodeSnapshot | None]) -> TemplateSource | None:
    """The scale-from-zero template: the newest member seen Ready, else the Group's declared template. Pure.

    Either way it carries the group label and the Group's managed labels and taints, as every member does once the
    operator has made it usable. A snapshot taken the moment a member turned Ready may predate them, and a
    template without them fits none of the pods the group exists for (seen with the real CA: it then found no
    group for pods a scale-up had just been made for).
    """
    seen = [snapshot for snapshot in last_ready if snapshot is not None]
    managed_labels = {labels.GROUP_LABEL: name, **spec.node_labels}
    if seen:
        newest = max(seen, key=lambda snapshot: (snapshot.seen_at is not None, snapshot.seen_at or datetime.min))
        return TemplateSource(
            labels={**newest.labels, **managed_labels},
            taints=_with_managed_taints(tuple(newest.taints), spec),
            capacity=dict(newest.capacity),
            allocatable=dict(newest.allocatable or newest.capacity),
            origin="observed",
        )
    declared = spec.template
    if declared is None:
        return None
    return TemplateSource(
        labels={**declared.labels, **managed_labels},
        taints=_with_managed_taints(declared.taints, spec),
        capacity=dict(declared.capacity),
        allocatable=dict(declared.allocatable or declared.capacity),
        origin="declared",
    )


def _with_managed_taints(taints: tuple[Taint, ...], spec: GroupSpec) -> tuple[Taint, ...]:
    return (*taints, *(taint for taint in spec.node_taints if taint not in taints))


# --- the actor ---------------------------------------------------------------------------------------------------


@dataclass
class _Member:
    address: Any
    view: MachineView
    snapshot: MachineSnapshot
    last_ready: NodeSnapshot | None
    commands_sent: int = 0


@dataclass
class _HeldReply:
    """A mutation's answer, held until each machine it commanded has its new status stored."""

    reply: MutationReply
    reply_to: Any
    mutation: str
    awaiting: dict[str, int]
    """Machine name → the command whose outcome must be stored before answering."""


_HELD_REPLY_TIMER = "held-reply"
_SCHEDULE_TIMER = "schedule"
"""The token of the one timer for the next schedule window change (held-reply tokens start with `stored/`)."""
_EXERCISE_TIMER = "exercise"
"""The token of the one timer for the next instant a member becomes due for an exercise (or the window opens)."""
_RECHECK_WITHOUT_CHANGE: Final = timedelta(days=1)
"""How long sizes are trusted when no window changes within a week (a spec change recomputes them anyway)."""


@dataclass(frozen=True)
class _Schedule:
    """The sizes in force, computed for one spec's schedules and trusted until `valid_until`."""

    key: tuple[tuple[Schedule, ...], int, int]
    """The spec's schedules, minSize and maxSize these sizes were computed from."""
    sizes: EffectiveSizes
    next_change: datetime | None
    valid_until: datetime


class GroupActor(ShellActor):
    """Owns one group's target and the mirror of its members; see the module docstring."""

    actor_kind = "group"

    def __init__(self) -> None:
        super().__init__()
        self._wiring: wiring.Wiring | None = None
        self._group: Group | None = None
        self._id = ""
        self._members: dict[str, _Member] = {}
        self._awaiting: set[str] = set()
        self._by_provider_id: dict[str, str] = {}
        self._by_node_name: dict[str, str] = {}
        self._sorted_names: list[str] | None = None
        self._version = 0
        # Recomputed only when a member's recorded boots change (a boot finished, a member came or went), not on
        # every publish: at thousands of members the percentile is a sort of tens of thousands of durations.
        self._learned_provision_seconds: float | None = None
        self._boots_changed = True
        self._publish_scheduled = False
        self._last_status: GroupStatus | None = None
        self._commanded: dict[str, int] | None = None  # while a mutation runs: what it commanded
        self._held: dict[str, _HeldReply] = {}  # by timer token
        self._ticker: Any = None
        self._invalid_spec: Condition | None = None
        """While the newest version of the Group fails our schemas: the condition its status carries."""
        self._schedule: _Schedule | None = None
        self._window_known = False  # whether a window (or none) was ever in force, so the first is no "change"
        self._window: Schedule | None = None
        self._timer_for: datetime | None = None  # the change the schedule timer is armed for
        self._mutating = False  # while a mutation is decided and published: no schedule boots of our own
        self._exercise_timer_for: datetime | None = None  # the instant the exercise timer is armed for

    # --- configuration and membership ------------------------------------------------------------------------

    def receiveMsg_ConfigureGroup(self, message: ConfigureGroup, sender: Any) -> None:
        self._wiring = wiring.lookup(message.wiring_key)
        self._adopt(message.group)
        self._schedule_publish()

    def receiveMsg_GroupChanged(self, message: GroupChanged, sender: Any) -> None:
        self._invalid_spec = None  # a version that parsed replaces the invalid one
        self._adopt(message.group)
        self._schedule_publish()

    def receiveMsg_GroupInvalid(self, message: GroupInvalid, sender: Any) -> None:
        # The last valid spec keeps running (stopping the group would strand its machines); the owner is told
        # through the status and an Event, where `kubectl describe` shows them.
        self._invalid_spec = invalid_spec_condition(message.reason, message.generation, self._now())
        LOGGER.warning("group=%s: the new spec is invalid; keeping the last valid one: %s", self._id, message.reason)
        event = invalid_spec_event(message.reason, running=True)
        self._record_event(event.type, event.reason, event.message)
        self._schedule_publish()

    def receiveMsg_MemberAssigned(self, message: MemberAssigned, sender: Any) -> None:
        if message.name not in self._members:
            self._awaiting.add(message.name)

    def receiveMsg_MemberReleased(self, message: MemberReleased, sender: Any) -> None:
        self._awaiting.discard(message.name)
        member = self._members.pop(message.name, None)
        self._boots_changed = True
        if member is not None:
            self._unindex(member.snapshot)
            self._sorted_names = None
        self._stored(message.name, None)  # it is no longer ours to wait for
        self._schedule_publish()

    def receiveMsg_MachineStateChanged(self, message: MachineStateChanged, sender: Any) -> None:
        name = message.view.name
        member = self._members.get(name)
        if member is None and name not in self._awaiting:
            return  # released already: a report that was in flight when it left
        if member is not None and member.address == sender and message.commands_handled < member.commands_sent:
            return  # sent before our latest command reached it; it reports again after that command
        if self._record(name, member, message, sender):
            self._schedule_publish()
        elif self._limits_boots() and not self._awaiting:
            # Nothing CA sees changed (typically the member confirming our intent), but a boot may have
            # left its slot: grant slots without re-publishing an identical snapshot.
            self._grant_boot_slots(self._now())

    def receiveMsg_PublishSnapshot(self, message: PublishSnapshot, sender: Any) -> None:
        self._publish_scheduled = False
        self._publish()

    def receiveMsg_IntentStored(self, message: IntentStored, sender: Any) -> None:
        self._stored(message.machine, message.command_sequence)

    def receiveMsg_TimerDue(self, message: TimerDue, sender: Any) -> None:
        if message.token == _SCHEDULE_TIMER:
            # Re-evaluated at the wall clock's now; fired early (the ticker runs on a monotonic clock) it re-arms.
            self._timer_for = None
            self._schedule = None
            self._schedule_publish()
            return
        if message.token == _EXERCISE_TIMER:
            self._exercise_timer_for = None
            self._schedule_publish()
            return
        if message.token not in self._held:
            return  # answered already
        self._answer_not_stored(message.token, f"within {self._require_wiring().stored_wait_seconds:g} s")

    def receiveMsg_ActorExitRequest(self, message: object, sender: Any) -> None:
        # Stopping (or killed) before the writes were stored: never an OK a restart could undo, and no asker left
        # to run into its deadline.
        for token in list(self._held):
            self._answer_not_stored(token, "before the group's actor stopped (operator stopping, or Group deleted)")
        if self._timer_for is not None:
            self.send(self._ticker_address(), CancelTimer(self.myAddress, _SCHEDULE_TIMER))
        if self._exercise_timer_for is not None:
            self.send(self._ticker_address(), CancelTimer(self.myAddress, _EXERCISE_TIMER))
        if self._wiring is not None and self._id:
            self._wiring.read_model.remove(self._id)
            metrics.forget_group(self._id)

    # --- mutations (asked by the gateway, usually forwarded by the Supervisor) ----------------------------------

    def receiveMsg_Forwarded(self, message: Forwarded, sender: Any) -> None:
        self._mutate(message.request, message.original_sender)

    def receiveMsg_IncreaseSize(self, message: IncreaseSize, sender: Any) -> None:
        self._mutate(message, sender)

    def receiveMsg_DeleteNodes(self, message: DeleteNodes, sender: Any) -> None:
        self._mutate(message, sender)

    def receiveMsg_DecreaseTargetSize(self, message: DecreaseTargetSize, sender: Any) -> None:
        self._mutate(message, sender)

    def _mutate(self, request: Mutation, reply_to: Any) -> None:
        self._commanded = {}
        target_before = target_size(self._views())
        try:
            error = self._not_ready() or self._MUTATIONS[type(request)](self, request, self._now())
        finally:
            commanded, self._commanded = self._commanded, None
        if error is None:
            self._mutating = True
            try:
                self._publish()  # before the reply: the gateway reads the new target right after it
            finally:
                self._mutating = False
            if commanded:
                self._record_event(*mutation_event(request, sorted(commanded), target_before, self._target()))
                self._schedule_publish()  # a window's minSize is restored after the change, as its own step
        else:
            LOGGER.info("group=%s refused %s: %s", self._id, type(request).__name__, error.message)
            if self._group is not None:
                self._record_event(*refusal_event(request, error))
        reply = MutationReply(request.request_id, error)
        if not commanded:  # a refusal commands nothing (every plan is all or nothing), nor does a no-op
            self.send(reply_to, reply)
            return
        token = f"stored/{request.request_id}"
        self._held[token] = _HeldReply(reply, reply_to, type(request).__name__, commanded)
        wait = self._require_wiring().stored_wait_seconds
        self.send(self._ticker_address(), StartTimer(self.myAddress, token, wait, _HELD_REPLY_TIMER))

    def _increase(self, request: IncreaseSize, now: datetime) -> MutationRefusal | None:
        views = self._views()
        sizes = self._sizes(now)
        chosen = plan_increase(views, in_force(self._spec(), sizes), request.delta, now, self._id, sizes.window)
        if isinstance(chosen, MutationRefusal):
            return chosen
        slots = boot_slots(views, self._spec())
        for index, name in enumerate(chosen):
            start_now = slots is None or index < slots
            self._command(name, PowerOnRequested(start_now=start_now), NodeState.STARTING_UP, now, start_now)
        return None

    def _delete(self, request: DeleteNodes, now: datetime) -> MutationRefusal | None:
        names: list[str] = []
        for identity in request.nodes:
            name = self._resolve(identity)
            if name is None:
                return MutationRefusal(ErrorKind.INVALID_ARGUMENT, self._not_a_member(identity))
            if name not in names:
                names.append(name)
        actions = plan_delete_actions([self._members[name].view for name in names], self._id)
        if isinstance(actions, MutationRefusal):
            return actions
        for name, event, state in actions:
            self._command(name, event, state, now)
        return None

    def _decrease(self, request: DecreaseTargetSize, now: datetime) -> MutationRefusal | None:
        chosen = plan_decrease(self._views(), request.delta, self._id)
        if isinstance(chosen, MutationRefusal):
            return chosen
        for name in chosen:
            self._command(name, CancelBoot(), NodeState.SHUTDOWN, now)
        return None

    _MUTATIONS: Final[dict[type[Any], Callable[[Any, Any, datetime], MutationRefusal | None]]] = {
        IncreaseSize: _increase,
        DeleteNodes: _delete,
        DecreaseTargetSize: _decrease,
    }

    # --- the mirror ----------------------------------------------------------------------------------------------

    def _command(self, name: str, event: Event, state: NodeState, now: datetime, booting: bool = False) -> None:
        member = self._members[name]
        member.commands_sent += 1
        confirm = self._commanded is not None
        if self._commanded is not None:
            self._commanded[name] = member.commands_sent
        self.send(member.address, MachineEvent(event, member.commands_sent, confirm_stored=confirm))
        view = intended(member.view, state, now, booting)
        self._set_view(member, view)

    def _stored(self, name: str, command_sequence: int | None) -> None:
        """Machine `name` has stored the outcome of `command_sequence` (None: stop waiting for it at all)."""
        for token, held in list(self._held.items()):
            awaited = held.awaiting.get(name)
            if awaited is None or (command_sequence is not None and command_sequence < awaited):
                continue
            del held.awaiting[name]
            if not held.awaiting:
                self._answer(token)

    def _answer_not_stored(self, token: str, when: str) -> None:
        """Answer a held mutation NOT_STORED (DEADLINE_EXCEEDED to CA): under way, but a restart may forget it."""
        held = self._held[token]
        text = (
            f"node group {self._id}: {held.mutation} is under way, but the API did not store the new status of "
            f"{', '.join(sorted(held.awaiting))} {when}; an operator restart before it does could forget the change"
        )
        LOGGER.warning("%s", text)  # the text names the group
        metrics.MUTATIONS_NOT_STORED.labels(self._id).inc()
        self._record_event(fx.EventType.WARNING, "NotStoredInTime", text)
        held.reply = MutationReply(held.reply.request_id, MutationRefusal(ErrorKind.NOT_STORED, text))
        self._answer(token, cancel_timer=False)

    def _answer(self, token: str, cancel_timer: bool = True) -> None:
        held = self._held.pop(token)
        if cancel_timer:
            self.send(self._ticker_address(), CancelTimer(self.myAddress, token))
        self.send(held.reply_to, held.reply)

    def _set_view(self, member: _Member, view: MachineView) -> None:
        member.view = view
        member.snapshot = replace(
            member.snapshot, state=view.state, instance=instance_status(view), exercising=view.exercising
        )

    def _record(self, name: str, member: _Member | None, report: MachineStateChanged, sender: Any) -> bool:
        """Take the report into the mirror; True when what the read model shows of the member changed."""
        if member is None:
            member = _Member(sender, report.view, report.snapshot, report.last_ready, report.commands_handled)
            self._members[name] = member
            self._awaiting.discard(name)
            self._sorted_names = None
            self._boots_changed = True
            changed = True
        else:
            changed = report.snapshot != member.snapshot or report.last_ready != member.last_ready
            if report.view.recent_boot_seconds != member.view.recent_boot_seconds:
                self._boots_changed = True
                changed = True
            self._unindex(member.snapshot)
            if member.address != sender:  # a replacement actor counts commands from where it stands
                member.address, member.commands_sent = sender, report.commands_handled
            member.view, member.snapshot, member.last_ready = report.view, report.snapshot, report.last_ready
        self._by_provider_id[report.snapshot.provider_id] = name
        self._by_node_name[report.snapshot.kubernetes_node_name] = name
        return changed

    def _unindex(self, snapshot: MachineSnapshot) -> None:
        if self._by_provider_id.get(snapshot.provider_id) == snapshot.name:
            del self._by_provider_id[snapshot.provider_id]
        if self._by_node_name.get(snapshot.kubernetes_node_name) == snapshot.name:
            del self._by_node_name[snapshot.kubernetes_node_name]

    def _resolve(self, identity: NodeIdentity) -> str | None:
        """A member by provider id first, then by Kubernetes node name (CA's stand-ins carry the id as name)."""
        name = self._by_provider_id.get(identity.provider_id) if identity.provider_id else None
        return name or self._by_node_name.get(identity.name) or self._by_provider_id.get(identity.name)

    def _not_a_member(self, identity: NodeIdentity) -> str:
        found = self._read_model().machine_for(provider_id=identity.provider_id, node_name=identity.name)
        described = f"node {identity.name!r} (providerID {identity.provider_id!r})"
        if found is not None and found[0].id != self._id:
            return f"{described} belongs to node group {found[0].id}, not to {self._id}"
        return f"{described} is not a member of node group {self._id}"

    def _grant_boot_slots(self, now: datetime) -> None:
        views = self._views()
        queued = queued_in_order(views)
        if not queued:
            return
        slots = boot_slots(views, self._spec())
        for name in queued if slots is None else queued[:slots]:
            self._command(name, BootSlotGranted(), NodeState.STARTING_UP, now, booting=True)

    # --- publishing ----------------------------------------------------------------------------------------------

    def _schedule_publish(self) -> None:
        if not self._publish_scheduled:
            self._publish_scheduled = True
            self.send(self.myAddress, PublishSnapshot())

    def _publish(self) -> None:
        group = self._group
        if group is None or self._awaiting:
            return
        now = self._now()
        sizes = self._sizes(now)
        self._follow_schedule(sizes, now)
        self._grant_boot_slots(now)
        self._follow_exercise(now)
        if self._sorted_names is None:
            self._sorted_names = sorted(self._members)
        members = [self._members[name] for name in self._sorted_names]
        assert self._schedule is not None  # computed by _sizes
        status = group_status(
            group,
            (member.view for member in members),
            self._invalid_spec,
            sizes.window.name if sizes.window is not None else None,
            self._schedule.next_change,
            sizes,
        )
        if self._boots_changed:
            self._boots_changed = False
            self._learned_provision_seconds = learned_provision_seconds(
                seconds for member in members for seconds in member.view.recent_boot_seconds
            )
            if self._learned_provision_seconds is None:
                metrics.forget_learned_provision_time(self._id)
            else:
                metrics.LEARNED_PROVISION_SECONDS.labels(self._id).set(self._learned_provision_seconds)
        self._version += 1
        snapshot = GroupSnapshot(
            id=self._id,
            namespace=group.metadata.namespace,
            name=group.metadata.name,
            min_size=sizes.min_size,
            max_size=sizes.max_size,
            target_size=status.target_size,
            machines=tuple(member.snapshot for member in members),
            autoscaling_options=group.spec.autoscaling_options,
            template=template_source(group.spec, group.metadata.name, (member.last_ready for member in members)),
            gpu_label=group.spec.gpu_label,
            gpu_types=group.spec.gpu_types,
            learned_provision_seconds=self._learned_provision_seconds,
            version=self._version,
        )
        self._read_model().publish(snapshot)
        self._submit_status(status)

    def _sizes(self, now: datetime) -> EffectiveSizes:
        """minSize and maxSize in force now; recomputed when the schedules change or a change is due."""
        spec = self._spec()
        key = (spec.schedules, spec.min_size, spec.max_size)
        cached = self._schedule
        if cached is None or cached.key != key or now >= cached.valid_until:
            upcoming = next_change(spec.schedules, now) if spec.schedules else None
            valid_until = upcoming if upcoming is not None else now + _RECHECK_WITHOUT_CHANGE
            cached = self._schedule = _Schedule(key, effective_sizes(spec, now), upcoming, valid_until)
        return cached.sizes

    def _follow_schedule(self, sizes: EffectiveSizes, now: datetime) -> None:
        """Mark a window change with an Event, arm the timer for the next one, power on up to a window's min."""
        assert self._schedule is not None
        if not self._window_known:
            self._recall_window()
        if not self._window_known or sizes.window != self._window:
            if self._window_known or sizes.window is not None:
                upcoming = self._schedule.next_change
                self._record_event(*schedule_change_event(self._window, sizes.window, sizes, upcoming))
                LOGGER.info("group=%s schedule %s in force: min %d max %d", self._id,
                            sizes.window.name if sizes.window else "none", sizes.min_size, sizes.max_size)
            self._window_known, self._window = True, sizes.window
        upcoming = self._schedule.next_change
        if upcoming != self._timer_for:
            if upcoming is None:
                self.send(self._ticker_address(), CancelTimer(self.myAddress, _SCHEDULE_TIMER))
            else:
                wait = max(0.0, (upcoming - now).total_seconds())
                self.send(self._ticker_address(), StartTimer(self.myAddress, _SCHEDULE_TIMER, wait, None))
            self._timer_for = upcoming
        # Only a window's minSize is brought about by the operator: the spec's own minSize stays CA's business.
        # Never inside a mutation: its event and reply are about CA's change; the publish after it catches up.
        if sizes.window is None or self._mutating:
            return
        views = self._views()
        chosen = plan_schedule_boots(views, in_force(self._spec(), sizes), now)
        if not chosen:
            return
        target_before = target_size(views)
        slots = boot_slots(views, self._spec())
        for index, name in enumerate(chosen):
            start_now = slots is None or index < slots
            self._command(name, PowerOnRequested(start_now=start_now), NodeState.STARTING_UP, now, start_now)
        message = (
            f"schedule {sizes.window.name!r} raises minSize to {sizes.min_size}: powering on {', '.join(chosen)} "
            f"(target {target_before} → {self._target()})"
        )
        self._record_event(fx.EventType.NORMAL, "ScheduleScaleUp", message)

    def _follow_exercise(self, now: datetime) -> None:
        """Start an exercise boot when a member is due (never inside a mutation), and arm the timer for the next."""
        spec = self._spec()
        views = self._views()
        chosen = None if self._mutating else choose_for_exercise(views, spec, now)
        if chosen is not None:
            member = self._members[chosen]
            self._command(chosen, PowerOnRequested(exercise=True), NodeState.STARTING_UP, now, booting=True)
            self._set_view(member, replace(member.view, exercising=True))
            message = (
                f"exercising {chosen}: powering it on to check it still boots, then off again (hidden from "
                "Cluster Autoscaler meanwhile)"
            )
            self._record_event(fx.EventType.NORMAL, "ExerciseStarted", message)
            LOGGER.info("group=%s exercise of %s started", self._id, chosen)
            views = self._views()
        upcoming = next_look(views, spec, now)
        if upcoming == self._exercise_timer_for:
            return
        if upcoming is None:
            self.send(self._ticker_address(), CancelTimer(self.myAddress, _EXERCISE_TIMER))
        else:
            wait = max(0.0, (upcoming - now).total_seconds())
            self.send(self._ticker_address(), StartTimer(self.myAddress, _EXERCISE_TIMER, wait, None))
        self._exercise_timer_for = upcoming

    def _recall_window(self) -> None:
        """Take the window a previous operator recorded in force (status.activeSchedule) as the one known, so a
        restart inside a window does not announce it again, and one that ended meanwhile is announced as ended."""
        recorded = self._group.status.active_schedule if self._group is not None else None
        window = next((window for window in self._spec().schedules if window.name == recorded), None)
        if recorded is None or window is not None:
            self._window_known, self._window = True, window

    def _submit_status(self, status: GroupStatus) -> None:
        if status == self._last_status or self._group is None:
            return
        self._last_status = status
        metrics.GROUP_TARGET_SIZE.labels(self._id).set(status.target_size)
        metrics.set_group_machines(self._id, status.machines)
        metrics.QUARANTINED_MACHINES.labels(self._id).set(status.machines.get(NodeState.QUARANTINED.value, 0))
        metadata = self._group.metadata
        self._require_wiring().effects.submit(GroupStatusBatch(metadata.namespace, metadata.name, status))

    def _record_event(self, event_type: fx.EventType, reason: str, message: str) -> None:
        group = self._group
        if group is None:
            return
        metadata = group.metadata
        event = fx.RecordEvent(event_type, reason, message)
        self._require_wiring().effects.submit(GroupEventBatch(metadata.namespace, metadata.name, metadata.uid, event))

    # --- small helpers -------------------------------------------------------------------------------------------

    def _adopt(self, group: Group) -> None:
        self._group = group
        self._id = group_id(group.metadata.namespace, group.metadata.name)
        self.actor_name = self._id

    def _not_ready(self) -> MutationRefusal | None:
        if self._group is None:
            return MutationRefusal(ErrorKind.FAILED_PRECONDITION, "the node group is not configured yet")
        if self._awaiting:
            return MutationRefusal(
                ErrorKind.FAILED_PRECONDITION,
                f"node group {self._id} is not ready: {len(self._awaiting)} machine(s) have not reported yet",
            )
        return None

    def _views(self) -> list[MachineView]:
        return [member.view for member in self._members.values()]

    def _target(self) -> int:
        return target_size(self._views())

    def _limits_boots(self) -> bool:
        return self._group is not None and self._group.spec.max_concurrent_boots is not None

    def _spec(self) -> GroupSpec:
        assert self._group is not None  # _not_ready() refused every mutation before configuration
        return self._group.spec

    def _require_wiring(self) -> wiring.Wiring:
        if self._wiring is None:
            raise wiring.WiringNotFound(f"group {self._id or '?'} has not been configured")
        return self._wiring

    def _read_model(self) -> ReadModel:
        return self._require_wiring().read_model

    def _ticker_address(self) -> Any:
        if self._ticker is None:
            self._ticker = ticker_address(self, self._require_wiring().ticker)
        return self._ticker

    def _now(self) -> datetime:
        return self._require_wiring().clock()
