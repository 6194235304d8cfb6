"""A group's pure decisions: which machines a size change commands, what a schedule window asks for, the status.

The GroupActor (`actors.group_actor`) keeps the mirror of its members and routes messages; everything it decides
is here, beside the machine-level policy it builds on (`actors.fsm.group`: eligibility, ordering, targets) and
the schedule windows (`actors.fsm.schedules`), so that each decision is a function of views, a spec and `now`,
tested as a table. A refusal is returned as a value (`MutationRefusal`, the reply CA's gateway turns into a gRPC
status), never raised, because the actor answers it rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from actors.fsm import effects as fx
from actors.fsm.errors import CannotDecrease, DeleteRefused, NotEnoughMachines
from actors.fsm.events import CancelBoot, Event, PowerOffRequested
from actors.fsm.group import (
    MachineView,
    check_delete,
    choose_boots_to_cancel,
    choose_for_scale_up,
    state_counts,
    target_size,
)
from actors.fsm.schedules import EffectiveSizes
from schemas import labels
from schemas.common import Condition, ConditionStatus
from schemas.group import Group, GroupSpec, GroupStatus, Schedule
from schemas.node import NodeState


class ErrorKind(StrEnum):
    """Why a mutation was refused; the gateway maps each kind to one gRPC status code."""

    NOT_FOUND = "NotFound"
    """No such group."""
    INVALID_ARGUMENT = "InvalidArgument"
    """A bad delta, or a node that belongs to another group (or to none)."""
    RESOURCE_EXHAUSTED = "ResourceExhausted"
    """Not enough eligible machines for the whole increase (nothing was changed)."""
    FAILED_PRECONDITION = "FailedPrecondition"
    """The request is valid but the machines' state forbids it now (maintenance, powerPolicy On, registered)."""
    NOT_STORED = "NotStored"
    """The change was made and is under way, but the API did not store it in time: a restart may forget it."""


@dataclass(frozen=True)
class MutationRefusal:
    """Why a group actor did not make a size change; travels in `MutationReply.error` (a message, not an exception)."""

    kind: ErrorKind
    message: str
    """Says what was wrong, naming the group, node and reason."""


def _refused(kind: ErrorKind, message: str) -> MutationRefusal:
    return MutationRefusal(kind, message)


def in_force(spec: GroupSpec, sizes: EffectiveSizes) -> GroupSpec:
    """`spec` with the minSize and maxSize in force (a schedule window's, where one is active). Pure."""
    if (sizes.min_size, sizes.max_size) == (spec.min_size, spec.max_size):
        return spec
    return spec.model_copy(update={"min_size": sizes.min_size, "max_size": sizes.max_size})


def plan_increase(
    views: Sequence[MachineView],
    spec: GroupSpec,
    delta: int,
    now: datetime,
    group: str,
    window: Schedule | None = None,
) -> tuple[str, ...] | MutationRefusal:
    """The machines to power on for IncreaseSize(delta), best first, or why not (nothing chosen). Pure.

    `spec` carries the sizes in force; `window` is the schedule window that set them, named when it is its
    maxSize that refuses.
    """
    if delta <= 0:
        message = f"node group {group}: IncreaseSize needs a positive delta, not {delta}"
        return _refused(ErrorKind.INVALID_ARGUMENT, message)
    current = target_size(views)
    if current + delta > spec.max_size:
        limit = f"maxSize {spec.max_size}"
        if window is not None and window.max_size is not None:
            limit += f" of schedule {window.name!r} (active now)"
        message = f"node group {group}: target {current} + {delta} would exceed {limit}"
        return _refused(ErrorKind.INVALID_ARGUMENT, message)
    try:
        return choose_for_scale_up(views, delta, spec, now)
    except NotEnoughMachines as refusal:
        return _refused(ErrorKind.RESOURCE_EXHAUSTED, f"node group {group}: {refusal}")


def plan_schedule_boots(views: Sequence[MachineView], spec: GroupSpec, now: datetime) -> tuple[str, ...]:
    """The machines to power on so the target reaches `spec.min_size` (the sizes in force), best first. Pure.

    As many as are eligible when fewer are: a window's minSize is a standing wish, not a request to refuse.
    """
    missing = spec.min_size - target_size(views)
    if missing <= 0:
        return ()
    try:
        return choose_for_scale_up(views, missing, spec, now)
    except NotEnoughMachines as short:
        fewer = min(short.eligible, spec.max_size - target_size(views))
        return choose_for_scale_up(views, fewer, spec, now) if fewer > 0 else ()


def schedule_change_event(
    before: Schedule | None, after: Schedule | None, sizes: EffectiveSizes, until: datetime | None
) -> tuple[fx.EventType, str, str]:
    """The Normal Event recorded on the Group when the window in force changes from `before` to `after`. Pure."""
    limits = f"minSize {sizes.min_size}, maxSize {sizes.max_size}"
    then = f" until {until.isoformat()}" if until is not None else ""
    if after is None:
        assert before is not None
        return fx.EventType.NORMAL, "ScheduleEnded", f"schedule {before.name!r} ended: {limits} (the spec's){then}"
    replaced = f" (after {before.name!r})" if before is not None else ""
    return fx.EventType.NORMAL, "ScheduleStarted", f"schedule {after.name!r} is active{replaced}: {limits}{then}"


_DELETE_ACTIONS: Final[Mapping[NodeState, tuple[Event, NodeState]]] = {
    NodeState.READY: (PowerOffRequested(drain=False), NodeState.SHUTTING_DOWN),
    # CA deletes a creating instance only when it gave up on it (an error, or not registered in time): a failure.
    NodeState.STARTING_UP: (CancelBoot(given_up=True), NodeState.SHUTDOWN),
    NodeState.BOOT_FAILED: (CancelBoot(), NodeState.SHUTDOWN),
}
"""What DeleteNodes does to a member in each state; states not listed are already off or going off (idempotent)."""


def plan_delete_actions(
    views: Sequence[MachineView], group: str
) -> tuple[tuple[str, Event, NodeState], ...] | MutationRefusal:
    """For DeleteNodes of these members: (machine, command, state it will be in) for each that must act. Pure.

    All or nothing: one member that may not be powered off refuses the whole request.
    """
    for view in views:
        try:
            check_delete(view)
        except DeleteRefused as refusal:
            return _refused(ErrorKind.FAILED_PRECONDITION, f"node group {group}: {refusal}")
    return tuple(
        (view.name, *_DELETE_ACTIONS[view.state]) for view in views if view.state in _DELETE_ACTIONS
    )


def plan_decrease(views: Sequence[MachineView], delta: int, group: str) -> tuple[str, ...] | MutationRefusal:
    """The unregistered boots to cancel for DecreaseTargetSize(delta < 0), or why not. Pure."""
    if delta >= 0:
        return _refused(
            ErrorKind.INVALID_ARGUMENT, f"node group {group}: DecreaseTargetSize needs a negative delta, not {delta}"
        )
    try:
        return choose_boots_to_cancel(views, -delta)
    except CannotDecrease as refusal:
        return _refused(ErrorKind.FAILED_PRECONDITION, f"node group {group}: {refusal}")


def intended(view: MachineView, state: NodeState, now: datetime, booting: bool = False) -> MachineView:
    """The view of a member the group just commanded into `state`, before the member confirms. Pure."""
    return replace(
        view, state=state, since=now, operation_started=now if booting else None, reason="Requested", exercising=False
    )


def group_status(
    group: Group,
    views: Iterable[MachineView],
    invalid_spec: Condition | None = None,
    active_schedule: str | None = None,
    next_schedule_change: datetime | None = None,
    sizes: EffectiveSizes | None = None,
) -> GroupStatus:
    """The Group resource's status for these members (its target is `target_size` of the same views). Pure.

    `group` is the last valid version; `invalid_spec` the InvalidSpec condition while a newer version fails our
    schemas. A stored InvalidSpec condition is dropped otherwise: a Group that parsed has a valid spec.
    """
    views = list(views)
    counts = state_counts(views)
    conditions = tuple(
        condition for condition in group.status.conditions if condition.type != labels.CONDITION_INVALID_SPEC
    )
    return GroupStatus(
        target_size=target_size(views),
        ready_count=counts[NodeState.READY.value],
        machines=counts,
        conditions=(*conditions, invalid_spec) if invalid_spec is not None else conditions,
        observed_generation=group.metadata.generation,
        min_size=sizes.min_size if sizes is not None else group.spec.min_size,
        max_size=sizes.max_size if sizes is not None else group.spec.max_size,
        active_schedule=active_schedule,
        next_schedule_change=next_schedule_change,
        exercising=next((view.name for view in views if view.exercising), None),
    )


def invalid_spec_condition(reason: str, generation: int | None, now: datetime) -> Condition:
    """The InvalidSpec condition of a Group whose spec fails our schemas. Pure."""
    return Condition(
        type=labels.CONDITION_INVALID_SPEC,
        status=ConditionStatus.TRUE,
        reason="SchemaValidationFailed",
        message=reason,
        last_transition_time=now,
        observed_generation=generation,
    )


def invalid_spec_event(reason: str, running: bool) -> fx.RecordEvent:
    """The Warning Event recorded once per new problem on a Group whose spec fails our schemas. Pure."""
    consequence = (
        "the operator keeps running its last valid spec until it is fixed"
        if running
        else "the operator does not run this group until it is fixed"
    )
    return fx.RecordEvent(fx.EventType.WARNING, "InvalidSpec", f"invalid spec, {consequence}: {reason}")
