"""What `homelab-autoscaler status` shows: rows built from Group and Node resources, rendered as text or JSON.

Separate from the command so that everything a user reads is decided by pure functions of the resources and
`now`: the command only lists resources, calls these and prints. Tests feed hand-made resources and a fixed
clock, and a live view (the demo's) can reuse the same rows, with the machine table fitted to its terminal's width
(`render_machine_table`); `status` itself prints whole lines, as kubectl does, for pipes and scripts to read.

The machine table is the Node CRs' `.status` (the durable record the operator keeps). A group's TARGET and READY
are counted from the member machines listed beside it, with the rule the operator itself uses for the target CA
sees (`actors.fsm.group.TARGET_STATES`), so the two tables always agree. A resource that does not parse with our
schemas becomes an `Invalid` row carrying the reason, never an exception.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from actors.fsm import energy
from actors.fsm.durations import DurationSummary, learned_provision_seconds, summarize
from actors.fsm.exercise_record import is_exercising
from actors.fsm.group import TARGET_STATES
from actors.fsm.schedules import effective_sizes
from schemas import labels
from schemas.common import AUTO, ConditionStatus, human_duration
from schemas.group import Group
from schemas.node import Node, NodeState, NodeStatus
from schemas.validation import power_job_placement_warnings, power_way_errors, summarise_validation_error

INVALID: Final = "Invalid"
"""The STATE of a machine (and the marker of a group) whose resource failed schema parsing."""

STATE_NAMES: Final = (*(state.value for state in NodeState), INVALID)
"""Every STATE a group's members can be counted in, in the order counts are listed."""

UNMANAGED: Final = "Unmanaged"
"""The STATE of a machine no Group claims: it has no group label, or its label names a Group that does not exist.

The operator starts no actor for such a machine, so its stored status (often the initial `Shutdown`) says nothing
about it; showing that would pass a forgotten machine off as a healthy spare. It is never counted in a group."""

REPORTED_PROBLEMS: Final = 3
"""Schema problems named in an Invalid row's reason; the rest are counted."""
NO_VALUE: Final = "-"
ERROR_WIDTH: Final = 60
"""Characters of LAST ERROR shown by the default text output; `-o wide` and JSON show it whole."""
COLUMN_GAP: Final = "   "
ELLIPSIS: Final = "…"
SHRUNK_WIDTH: Final = 20
"""The narrowest a long column (OPERATION, LAST ERROR) is cut to before it is dropped instead: below this a job
name or an error no longer says anything."""


class MachineColumn(StrEnum):
    """The machine table's columns, by header, in the order they are drawn."""

    MACHINE = "MACHINE"
    GROUP = "GROUP"
    STATE = "STATE"
    SINCE = "SINCE"
    OPERATION = "OPERATION"
    LAST_ERROR = "LAST ERROR"
    COOLDOWN = "COOLDOWN"
    POLICY = "POLICY"


SHRINKABLE_COLUMNS: Final = frozenset({MachineColumn.OPERATION, MachineColumn.LAST_ERROR})
"""Columns whose cells are free text, cut with an ellipsis to fit; the others are short values, kept whole or
dropped."""

_ANSI_RESET: Final = "\x1b[0m"
_STATE_COLOURS: Final = {
    NodeState.READY.value: "\x1b[32m",  # green: serving
    NodeState.STARTING_UP.value: "\x1b[36m",  # cyan: on its way
    NodeState.SHUTTING_DOWN.value: "\x1b[36m",
    NodeState.BOOT_FAILED.value: "\x1b[33m",  # yellow: will be retried after its cooldown
    NodeState.MAINTENANCE.value: "\x1b[34m",
    NodeState.QUARANTINED.value: "\x1b[1;31m",  # bold red: needs a person
    INVALID: "\x1b[1;31m",
    UNMANAGED: "\x1b[33m",  # yellow: nothing happens to it until someone labels it or creates its Group
}


@dataclass(frozen=True)
class InvalidResource:
    """A Group or Node resource that failed schema parsing, with what could still be read of its identity."""

    namespace: str
    name: str
    reason: str
    group: str | None = None
    """For a Node: the value of its group label, when readable."""


@dataclass(frozen=True)
class GroupRow:
    """One line of the group table."""

    namespace: str
    name: str
    min_size: int | None
    max_size: int | None
    target: int
    ready: int
    machines: Mapping[str, int]
    """Listed member machines per STATE name (every name of STATE_NAMES present, zeros included)."""
    error: str = ""
    """Why the Group resource is invalid; empty when it parsed."""
    schedule: str | None = None
    """The schedule window whose sizes `min_size` and `max_size` are (None: the spec's)."""


@dataclass(frozen=True)
class OperationRow:
    """The power operation in flight on a machine."""

    kind: str
    attempt: int
    job_name: str
    started: datetime
    tries: int
    driver: str | None = None
    """The native driver that sent the power command (spec.power); None: a Job performs it."""


@dataclass(frozen=True)
class MachineRow:
    """One line of the machine table."""

    namespace: str
    name: str
    group: str | None
    state: str
    since: datetime | None = None
    age_seconds: int | None = None
    operation: OperationRow | None = None
    activity: str = ""
    exercising: bool = False
    """An exercise boot is in flight (status.lastExercise Running): the machine is not in its group's target."""
    """What the machine is doing when no Job runs (e.g. draining); empty otherwise."""
    last_error: str = ""
    cooldown_until: datetime | None = None
    cooldown_seconds: int | None = None
    """Seconds of cooldown left (rounded up); None when none is left."""
    power_policy: str | None = None
    provider_id: str | None = None
    powered_on_seconds: int | None = None
    consecutive_failures: int | None = None
    warnings: tuple[str, ...] = ()
    """Configuration that works but invites trouble (a power Job that may run on a powered-off machine)."""
    readback_state: str | None = None
    """The power state last read back from the machine's BMC (spec.power); None: never read, or no BMC."""
    readback_driver: str | None = None
    readback_at: datetime | None = None
    readback_age_seconds: int | None = None


@dataclass(frozen=True)
class PowerRow:
    """One line of the power table: how long a group's machines took to boot and to power off."""

    namespace: str
    name: str
    boots: DurationSummary | None = None
    """Over the recent boots each member's status keeps; None when none was seen."""
    shutdowns: DurationSummary | None = None
    learned_provision_seconds: float | None = None
    """What `maxNodeProvisionTime: auto` tells CA from these boots; None with too few boots."""
    auto: bool = False
    """The Group sets `maxNodeProvisionTime: auto`, so CA is told the learned time."""


@dataclass(frozen=True)
class EnergyRow:
    """One line of the energy table: a group's energy used and avoided, over the last day and since start."""

    namespace: str
    name: str
    figures: energy.GroupEnergy
    price_per_kwh: Decimal | None = None


@dataclass(frozen=True)
class StatusView:
    """The tables, sorted: groups by namespace and name, machines by namespace, group and name."""

    groups: tuple[GroupRow, ...] = ()
    machines: tuple[MachineRow, ...] = ()
    power: tuple[PowerRow, ...] = ()
    energy: tuple[EnergyRow, ...] = ()


# --- parsing ---------------------------------------------------------------------------------------------------


def parse_group(raw: Mapping[str, Any]) -> Group | InvalidResource:
    """The Group model of a raw resource, or an InvalidResource saying why it is not one. Pure."""
    try:
        return Group.model_validate(raw)
    except ValidationError as error:
        namespace, name, _group = _raw_identity(raw)
        return InvalidResource(namespace, name, validation_reason(error, Group))


def parse_node(raw: Mapping[str, Any]) -> Node | InvalidResource:
    """The Node model of a raw resource, or an InvalidResource saying why it is not one. Pure."""
    try:
        node = Node.model_validate(raw)
    except ValidationError as error:
        namespace, name, group = _raw_identity(raw)
        return InvalidResource(namespace, name, validation_reason(error, Node), group)
    problems = power_way_errors(node.spec)
    if problems:  # the operator skips it too (no single way to power the machine)
        namespace, name, group = _raw_identity(raw)
        return InvalidResource(namespace, name, "; ".join(str(problem) for problem in problems[:3]), group)
    return node


def validation_reason(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first problems of a failed parse, spelled as the webhook and the operator spell them. Pure."""
    return summarise_validation_error(error, model, REPORTED_PROBLEMS)


def _raw_identity(raw: Mapping[str, Any]) -> tuple[str, str, str | None]:
    # A malformed resource may have malformed metadata too; read only what is plainly there.
    metadata = raw.get("metadata") if isinstance(raw, Mapping) else None
    if not isinstance(metadata, Mapping):
        return "", "", None
    resource_labels = metadata.get("labels")
    group = resource_labels.get(labels.GROUP_LABEL) if isinstance(resource_labels, Mapping) else None
    return (
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
        str(group) if group is not None else None,
    )


# --- the rows --------------------------------------------------------------------------------------------------


_TARGET_STATE_NAMES: Final = frozenset(state.value for state in TARGET_STATES)


def build_view(
    groups: Iterable[Group | InvalidResource], nodes: Iterable[Node | InvalidResource], now: datetime
) -> StatusView:
    """Rows for these resources at `now` (an aware datetime). Pure.

    `groups` must be every Group of the namespaces the nodes come from: a machine whose group is not among them is
    shown as `Unmanaged` (see `unmanaged_reason`).
    """
    groups, nodes = list(groups), list(nodes)
    known = {_group_key(group) for group in groups}
    machines = tuple(sorted((_managed_row(machine_row(node, now), known) for node in nodes), key=_machine_order))
    members: dict[tuple[str, str], Counter[str]] = {}
    exercised: Counter[tuple[str, str]] = Counter()
    for machine in machines:
        if machine.group is not None and machine.state != UNMANAGED:
            members.setdefault((machine.namespace, machine.group), Counter())[machine.state] += 1
            if machine.exercising and machine.state in _TARGET_STATE_NAMES:
                exercised[(machine.namespace, machine.group)] += 1
    rows = sorted(
        (
            group_row(group, members.get(_group_key(group), Counter()), now, exercised[_group_key(group)])
            for group in groups
        ),
        key=lambda row: (row.namespace, row.name),
    )
    prices = {_group_key(group): _energy_price(group) for group in groups}
    auto = {_group_key(group) for group in groups if _learns_provision_time(group)}
    return StatusView(tuple(rows), machines, power_rows(rows, nodes, auto), energy_rows(rows, nodes, prices, now))


def unmanaged_reason(namespace: str, group: str | None, known_groups: Iterable[tuple[str, str]]) -> str:
    """Why no Group claims a machine of `namespace` labelled with `group`, or "" when one does. Pure."""
    if group is None:
        return (
            f"no {labels.GROUP_LABEL} label, so the operator does not manage it; label it with the name of its Group"
        )
    if (namespace, group) not in set(known_groups):
        return (
            f"its {labels.GROUP_LABEL} label names Group {group!r}, which does not exist in namespace {namespace}; "
            "create that Group or fix the label"
        )
    return ""


def _managed_row(row: MachineRow, known_groups: set[tuple[str, str]]) -> MachineRow:
    if row.state == INVALID:
        return row  # its own reason is the more urgent one
    reason = unmanaged_reason(row.namespace, row.group, known_groups)
    return replace(row, state=UNMANAGED, last_error=reason) if reason else row


def group_row(
    group: Group | InvalidResource, member_states: Mapping[str, int], now: datetime, exercised: int = 0
) -> GroupRow:
    """The group table's line for a group whose listed members are in `member_states` (STATE name → count), of
    which `exercised` are booting or powering off for an exercise (not in the target). Pure.

    MIN and MAX are the sizes in force at `now`: an active schedule window's, as CA is told them.
    """
    counts = {state: int(member_states.get(state, 0)) for state in STATE_NAMES}
    target = sum(counts[state.value] for state in TARGET_STATES) - exercised
    ready = counts[NodeState.READY.value]
    if isinstance(group, InvalidResource):
        return GroupRow(group.namespace, group.name, None, None, target, ready, counts, group.reason)
    sizes = effective_sizes(group.spec, now)
    window = sizes.window.name if sizes.window is not None else None
    metadata = group.metadata
    return GroupRow(
        metadata.namespace, metadata.name, sizes.min_size, sizes.max_size, max(0, target), ready, counts,
        schedule=window,
    )


def machine_row(node: Node | InvalidResource, now: datetime) -> MachineRow:
    """The machine table's line for one Node resource at `now`. Pure."""
    if isinstance(node, InvalidResource):
        return MachineRow(node.namespace, node.name, node.group, INVALID, last_error=node.reason)
    status = node.status
    operation = status.operation
    remaining = seconds_between(now, status.cooldown_until) if status.cooldown_until is not None else 0.0
    return MachineRow(
        namespace=node.metadata.namespace,
        name=node.metadata.name,
        group=node.metadata.labels.get(labels.GROUP_LABEL),
        state=status.state.value,
        since=status.since,
        age_seconds=math.floor(seconds_between(status.since, now)) if status.since is not None else None,
        operation=(
            OperationRow(
                operation.kind.value, operation.attempt, operation.job_name, operation.started, status.operation_tries,
                operation.driver.value if operation.driver is not None else None,
            )
            if operation is not None
            else None
        ),
        activity=_activity(status),
        exercising=is_exercising(status),
        last_error=last_error(status),
        cooldown_until=status.cooldown_until,
        cooldown_seconds=math.ceil(remaining) if remaining > 0 else None,
        power_policy=node.spec.power_policy.value,
        provider_id=status.provider_id or node.spec.provider_id,
        powered_on_seconds=math.floor(powered_on_seconds(status, now)),
        consecutive_failures=status.consecutive_failures,
        warnings=power_job_placement_warnings(node.spec),
        **_readback_fields(status, now),
    )


def _readback_fields(status: NodeStatus, now: datetime) -> dict[str, Any]:
    readback = status.power_readback
    if readback is None:
        return {}
    return {
        "readback_state": readback.state.value,
        "readback_driver": readback.driver.value,
        "readback_at": readback.observed_at,
        "readback_age_seconds": math.floor(seconds_between(readback.observed_at, now)),
    }


def readback_text(machine: MachineRow) -> str:
    """`On 12s ago (ipmi)`: the last power readback; "" for a machine never read back. Pure."""
    if machine.readback_state is None:
        return ""
    age = human_age(machine.readback_age_seconds) if machine.readback_age_seconds is not None else "?"
    return f"{machine.readback_state} {age} ago ({machine.readback_driver})"


def last_error(status: NodeStatus) -> str:
    """What went wrong last, or "" when nothing is wrong now. Pure.

    A BootFailed or Quarantined machine shows its status message (it says what failed, or how to release the
    machine); any other machine with a true OperationFailed condition shows that condition's message, which keeps
    the failure visible while a machine cools down in Shutdown or returns to Ready after a failed shutdown. Failing
    that, a true KubernetesWriteFailed condition (a cordon, providerID, label or Node deletion the API refused)
    shows its message: a power failure matters more to whoever reads the column, so it wins when both are set.
    """
    if status.state in (NodeState.BOOT_FAILED, NodeState.QUARANTINED):
        return status.message or status.reason or status.state.value
    for condition_type in _ERROR_CONDITIONS:
        for condition in status.conditions:
            if condition.type == condition_type and condition.status is ConditionStatus.TRUE:
                return condition.message or condition.reason or condition_type
    return ""


_ERROR_CONDITIONS = (
    labels.CONDITION_OPERATION_FAILED,
    labels.CONDITION_WRITE_FAILED,
    labels.CONDITION_POWER_READBACK_FAILING,
)
"""Condition types whose true status is a machine's last error, most important first."""


def powered_on_seconds(status: NodeStatus, now: datetime) -> float:
    """Total time spent powered on, including the current stretch (the status adds it only on leaving). Pure."""
    return energy.powered_on_seconds(status, _aware(now))


def _activity(status: NodeStatus) -> str:
    # A drain runs before the shutdown Job exists; without this the OPERATION column would look idle.
    draining = status.operation is None and status.state is NodeState.SHUTTING_DOWN and status.reason == "Draining"
    if is_exercising(status):
        return "exercise, draining" if draining else "exercise"
    return "draining" if draining else ""


def seconds_between(earlier: datetime, later: datetime) -> float:
    """Seconds from `earlier` to `later`, never negative; naive datetimes are taken as UTC. Pure."""
    return max(0.0, (_aware(later) - _aware(earlier)).total_seconds())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _group_key(group: Group | InvalidResource) -> tuple[str, str]:
    if isinstance(group, InvalidResource):
        return group.namespace, group.name
    return group.metadata.namespace, group.metadata.name


def _machine_order(row: MachineRow) -> tuple[str, bool, str, str]:
    # Machines in no group come after every group's members.
    return row.namespace, row.group is None, row.group or "", row.name


# --- rules for the command -------------------------------------------------------------------------------------

EXIT_OK: Final = 0
EXIT_QUARANTINED: Final = 3


def exit_code(view: StatusView) -> int:
    """3 when any listed machine is Quarantined (scripts and monitoring alert on it), else 0. Pure."""
    if any(machine.state == NodeState.QUARANTINED.value for machine in view.machines):
        return EXIT_QUARANTINED
    return EXIT_OK


# --- text ------------------------------------------------------------------------------------------------------


def human_age(seconds: float) -> str:
    """A short age: the two largest units, e.g. `45s`, `3m12s`, `2h5m`, `3d4h`; negative counts as 0. Pure."""
    return human_duration(seconds)


def operation_text(machine: MachineRow) -> str:
    """`startup #3 job nas-1-startup-3`, with `(try 2)` on a retried shutdown and `(exercise)` for an exercise;
    the activity when no Job runs."""
    operation = machine.operation
    if operation is None:
        return machine.activity
    if operation.driver is not None:
        action = "power-on" if operation.kind == "startup" else "power-off"
        text = f"{operation.kind} #{operation.attempt} {action} by {operation.driver}"
    else:
        text = f"{operation.kind} #{operation.attempt} job {operation.job_name}"
    if operation.tries > 1:
        text += f" (try {operation.tries})"
    return f"{text} (exercise)" if machine.exercising else text


def render_text(view: StatusView, *, wide: bool = False, show_namespace: bool = False, colour: bool = False) -> str:
    """Both tables as aligned text (empty tables omitted; "" when both are). Pure."""
    blocks = []
    if view.groups:
        blocks.append(_group_table(view.groups, wide=wide, show_namespace=show_namespace, colour=colour))
    if view.machines:
        blocks.append(_machine_table(view.machines, wide=wide, show_namespace=show_namespace, colour=colour))
    if view.power:
        blocks.append(_power_table(view.power, show_namespace=show_namespace))
    if view.energy:
        blocks.append(_energy_table(view.energy, show_namespace=show_namespace))
    warnings = warning_lines(view.machines, show_namespace=show_namespace)
    if warnings:
        blocks.append("\n".join(warnings))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def warning_lines(machines: Iterable[MachineRow], *, show_namespace: bool = False) -> list[str]:
    """The WARNINGS block under the machine table, one line per warning; [] when no machine has one. Pure."""
    lines = [
        f"{machine.namespace}/{machine.name}: {warning}" if show_namespace else f"{machine.name}: {warning}"
        for machine in machines
        for warning in machine.warnings
    ]
    return ["WARNINGS", *lines] if lines else []


def _group_table(groups: Sequence[GroupRow], *, wide: bool, show_namespace: bool, colour: bool) -> str:
    headers = ["GROUP", "MIN", "MAX", "TARGET", "READY"]
    counted = [state for state in STATE_NAMES if state != NodeState.READY.value]
    with_windows = any(group.schedule for group in groups)
    if with_windows:
        headers.append("WINDOW")
    if wide:
        headers += [state.upper() for state in counted]
    with_errors = any(group.error for group in groups)
    if with_errors:
        headers.append("ERROR")
    rows: list[list[_Cell]] = []
    for group in groups:
        cells: list[_Cell] = [
            group.name,
            _number(group.min_size),
            _number(group.max_size),
            str(group.target),
            str(group.ready),
        ]
        if with_windows:
            cells.append(group.schedule or NO_VALUE)
        if wide:
            cells += [str(group.machines.get(state, 0)) for state in counted]
        if with_errors:
            text = f"{INVALID}: {group.error}" if group.error else NO_VALUE
            cells.append((text, _STATE_COLOURS[INVALID]) if colour and group.error else text)
        rows.append(cells)
    return _table(_with_namespace(headers, rows, [group.namespace for group in groups], show_namespace))


def _machine_table(machines: Sequence[MachineRow], *, wide: bool, show_namespace: bool, colour: bool) -> str:
    headers, rows = _machine_cells(machines, wide=wide, colour=colour)
    return _table(_with_namespace(headers, rows, [machine.namespace for machine in machines], show_namespace))


def render_machine_table(
    machines: Sequence[MachineRow],
    *,
    width: int,
    priority: Sequence[MachineColumn],
    keep_whole: Collection[MachineColumn] = (),
    colour: bool = False,
) -> str:
    """The machine table with no line longer than `width` visible characters (colour codes do not count). Pure.

    Columns are given up in reverse `priority` order (unlisted ones first) until the rest fit, OPERATION and LAST
    ERROR counted at `SHRUNK_WIDTH`, except that the columns of `keep_whole` are counted whole (LAST ERROR up to
    `ERROR_WIDTH`, as `status` shows it) for as long as another column can be given up instead: what a person is
    asked to look at gets the room first. The room left then goes to the free-text columns, in priority order, and
    a cell longer than its column ends in an ellipsis. The first column of `priority` is never given up, so on a
    terminal too narrow even for it the line is longer than `width` and the caller has to cut it.
    """
    # The whole error, cut below once its column's width is known (to ERROR_WIDTH at most, as `status` cuts it).
    headers, rows = _machine_cells(machines, wide=False, colour=colour, cut_errors=False)
    columns = [MachineColumn(header) for header in headers]
    rank = {column: priority.index(column) if column in priority else len(priority) for column in columns}
    first = priority[0] if priority else columns[0]
    natural = [max(len(_text(cell)) for cell in [header, *(row[index] for row in rows)])
               for index, header in enumerate(headers)]
    error_column = columns.index(MachineColumn.LAST_ERROR)
    natural[error_column] = min(natural[error_column], ERROR_WIDTH)
    least = [
        min(natural[index], max(SHRUNK_WIDTH, len(headers[index]))) if column in SHRINKABLE_COLUMNS else natural[index]
        for index, column in enumerate(columns)
    ]
    sizes = [natural[index] if column in keep_whole else least[index] for index, column in enumerate(columns)]

    def needed(kept: list[int], sizes: list[int]) -> int:
        return sum(sizes[index] for index in kept) + len(COLUMN_GAP) * (len(kept) - 1)

    kept = list(range(len(columns)))
    while needed(kept, sizes) > width:
        candidates = [index for index in kept if columns[index] != first]
        if not candidates:
            break
        if sizes != least and all(columns[index] in keep_whole for index in candidates):
            sizes = least  # only the columns to keep whole are left: they are shortened before any goes
            continue
        # Other columns before those to keep whole, the least important first; among equals the rightmost, so the
        # table keeps its left-hand shape.
        kept.remove(max(candidates, key=lambda index: (columns[index] not in keep_whole, rank[columns[index]], index)))
    widths = {index: sizes[index] for index in kept}
    room = width - needed(kept, sizes)
    for index in sorted(kept, key=lambda index: rank[columns[index]]):
        grow = max(0, min(room, natural[index] - widths[index]))
        widths[index] += grow
        room -= grow
    fitted_rows = [[_shorten(row[index], widths[index]) for index in kept] for row in rows]
    return _table(([headers[index] for index in kept], fitted_rows))


def _machine_cells(
    machines: Sequence[MachineRow], *, wide: bool, colour: bool, cut_errors: bool = True
) -> tuple[list[str], list[list[_Cell]]]:
    headers: list[str] = list(MachineColumn)
    if wide:
        headers += ["PROVIDER-ID", "POWERED-ON", "READBACK"]
    rows: list[list[_Cell]] = []
    for machine in machines:
        error = " ".join(machine.last_error.split())  # one line, whatever the message holds
        if cut_errors and not wide and len(error) > ERROR_WIDTH:
            error = error[: ERROR_WIDTH - 3] + "..."
        cells: list[_Cell] = [
            machine.name,
            machine.group or NO_VALUE,
            (machine.state, _STATE_COLOURS.get(machine.state, "")) if colour else machine.state,
            human_age(machine.age_seconds) if machine.age_seconds is not None else NO_VALUE,
            operation_text(machine) or NO_VALUE,
            error or NO_VALUE,
            human_age(machine.cooldown_seconds) if machine.cooldown_seconds is not None else NO_VALUE,
            machine.power_policy or NO_VALUE,
        ]
        if wide:
            powered = machine.powered_on_seconds
            cells += [
                machine.provider_id or NO_VALUE,
                human_age(powered) if powered is not None else NO_VALUE,
                readback_text(machine) or NO_VALUE,
            ]
        rows.append(cells)
    return headers, rows


_Cell = str | tuple[str, str]
"""A table cell: plain text, or (text, ANSI colour) to colour it without counting the codes as width."""


def _with_namespace(
    headers: list[str], rows: list[list[_Cell]], namespaces: list[str], show_namespace: bool
) -> tuple[list[str], list[list[_Cell]]]:
    if not show_namespace:
        return headers, rows
    return ["NAMESPACE", *headers], [[namespace, *row] for namespace, row in zip(namespaces, rows, strict=True)]


def _text(cell: _Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _shorten(cell: _Cell, width: int) -> _Cell:
    """The cell cut to `width` characters, ending in an ellipsis when cut; a coloured cell keeps its colour."""
    text = _text(cell)
    if len(text) <= width:
        return cell
    short = text[: max(0, width - len(ELLIPSIS))].rstrip() + ELLIPSIS
    return short if isinstance(cell, str) else (short, cell[1])


def _table(table: tuple[list[str], list[list[_Cell]]]) -> str:
    headers, rows = table
    texts = [[_text(cell) for cell in row] for row in rows]
    widths = [max(len(line[column]) for line in [headers, *texts]) for column in range(len(headers))]
    lines = [COLUMN_GAP.join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        parts = []
        for cell, width in zip(row, widths, strict=True):
            if isinstance(cell, str):
                parts.append(cell.ljust(width))
            else:
                text, colour_code = cell
                padding = " " * (width - len(text))
                parts.append(f"{colour_code}{text}{_ANSI_RESET}{padding}" if colour_code else text + padding)
        lines.append(COLUMN_GAP.join(parts).rstrip())
    return "\n".join(lines)


def _number(value: int | None) -> str:
    return NO_VALUE if value is None else str(value)


# --- JSON ------------------------------------------------------------------------------------------------------


def to_document(view: StatusView) -> dict[str, Any]:
    """The `-o json` document: `{"groups": [...], "machines": [...]}`, every key always present. Pure.

    Keys are camelCase like the resources'; times are RFC 3339 in UTC; a value that is unknown or does not apply
    is null, never missing, so scripts can index without guards.
    """
    return {
        "groups": [
            {
                "namespace": group.namespace,
                "name": group.name,
                "minSize": group.min_size,
                "maxSize": group.max_size,
                "schedule": group.schedule,
                "targetSize": group.target,
                "readyCount": group.ready,
                "machines": dict(group.machines),
                "error": group.error or None,
            }
            for group in view.groups
        ],
        "machines": [_machine_document(machine) for machine in view.machines],
        "power": [_power_document(row) for row in view.power],
        "energy": [_energy_document(row) for row in view.energy],
    }


def _machine_document(machine: MachineRow) -> dict[str, Any]:
    operation = machine.operation
    return {
        "namespace": machine.namespace,
        "name": machine.name,
        "group": machine.group,
        "state": machine.state,
        "since": _timestamp(machine.since),
        "ageSeconds": machine.age_seconds,
        "operation": (
            {
                "kind": operation.kind,
                "attempt": operation.attempt,
                "jobName": operation.job_name,
                "started": _timestamp(operation.started),
                "tries": operation.tries,
                "driver": operation.driver,
            }
            if operation is not None
            else None
        ),
        "operationText": operation_text(machine) or None,
        "lastError": machine.last_error or None,
        "cooldownUntil": _timestamp(machine.cooldown_until),
        "cooldownSeconds": machine.cooldown_seconds,
        "powerPolicy": machine.power_policy,
        "providerID": machine.provider_id,
        "poweredOnSeconds": machine.powered_on_seconds,
        "consecutiveFailures": machine.consecutive_failures,
        "warnings": list(machine.warnings),
        "powerReadback": (
            {
                "state": machine.readback_state,
                "driver": machine.readback_driver,
                "observedAt": _timestamp(machine.readback_at),
                "ageSeconds": machine.readback_age_seconds,
            }
            if machine.readback_state is not None
            else None
        ),
    }


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- power: boot and power-off durations per group -------------------------------------------------------------


def _learns_provision_time(group: Group | InvalidResource) -> bool:
    options = None if isinstance(group, InvalidResource) else group.spec.autoscaling_options
    return options is not None and options.max_node_provision_time == AUTO


def power_rows(
    groups: Sequence[GroupRow], nodes: Iterable[Node | InvalidResource], auto: Collection[tuple[str, str]] = ()
) -> tuple[PowerRow, ...]:
    """A power line per group (in `groups`' order), from its members' recorded durations. Pure.

    Groups whose members never recorded a boot nor a power-off get no line: a row of dashes tells nothing.
    """
    boots: dict[tuple[str, str], list[float]] = {}
    shutdowns: dict[tuple[str, str], list[float]] = {}
    for node in nodes:
        if isinstance(node, InvalidResource):
            continue
        member_of = node.metadata.labels.get(labels.GROUP_LABEL)
        if member_of is None:
            continue
        key = (node.metadata.namespace, member_of)
        boots.setdefault(key, []).extend(node.status.recent_boot_seconds)
        shutdowns.setdefault(key, []).extend(node.status.recent_shutdown_seconds)
    rows = []
    for group in groups:
        key = (group.namespace, group.name)
        recorded = boots.get(key, [])
        row = PowerRow(
            group.namespace, group.name, summarize(recorded), summarize(shutdowns.get(key, ())),
            learned_provision_seconds(recorded), key in auto,
        )
        if row.boots is not None or row.shutdowns is not None:
            rows.append(row)
    return tuple(rows)


def _summary_cells(summary: DurationSummary | None) -> list[_Cell]:
    if summary is None:
        return ["0", NO_VALUE, NO_VALUE, NO_VALUE]
    return [str(summary.count), human_age(summary.p50), human_age(summary.p90), human_age(summary.max)]


def _power_table(rows: Sequence[PowerRow], *, show_namespace: bool) -> str:
    headers = ["GROUP", "BOOTS", "BOOT P50", "P90", "MAX", "SHUTDOWNS", "SHUTDOWN P50", "P90", "MAX", "LEARNED WAIT"]
    cells = [
        [row.name, *_summary_cells(row.boots), *_summary_cells(row.shutdowns), _learned_cell(row)] for row in rows
    ]
    return _table(_with_namespace(headers, cells, [row.namespace for row in rows], show_namespace))


def _learned_cell(row: PowerRow) -> str:
    """The learned provisioning time, marked `(auto)` when CA is told it; `-` before enough boots."""
    if row.learned_provision_seconds is None:
        return NO_VALUE
    return human_age(row.learned_provision_seconds) + (" (auto)" if row.auto else "")


def _summary_document(summary: DurationSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {"count": summary.count, "p50Seconds": summary.p50, "p90Seconds": summary.p90, "maxSeconds": summary.max}


def _power_document(row: PowerRow) -> dict[str, Any]:
    return {
        "namespace": row.namespace,
        "name": row.name,
        "bootSeconds": _summary_document(row.boots),
        "shutdownSeconds": _summary_document(row.shutdowns),
        "learnedProvisionSeconds": row.learned_provision_seconds,
        "maxNodeProvisionTimeAuto": row.auto,
    }


# --- energy used and avoided per group -------------------------------------------------------------------------

UNKNOWN: Final = "unknown"
"""What the energy table shows for a group none of whose machines declares its power draw: never 0 kWh."""


def _energy_price(group: Group | InvalidResource) -> Decimal | None:
    if isinstance(group, InvalidResource) or group.spec.energy_price is None:
        return None
    return Decimal(group.spec.energy_price)


def energy_rows(
    groups: Sequence[GroupRow],
    nodes: Iterable[Node | InvalidResource],
    prices: Mapping[tuple[str, str], Decimal | None],
    now: datetime,
) -> tuple[EnergyRow, ...]:
    """An energy line per group that has members, from their statuses and declared draw at `now`. Pure."""
    members: dict[tuple[str, str], list[energy.MachineEnergy | None]] = {}
    for node in nodes:
        if isinstance(node, InvalidResource):
            continue
        member_of = node.metadata.labels.get(labels.GROUP_LABEL)
        if member_of is None:
            continue
        pricing = node.spec.pricing
        figures = energy.machine_energy(node.status, pricing.power_watts, pricing.standby_watts, _aware(now))
        members.setdefault((node.metadata.namespace, member_of), []).append(figures)
    rows = []
    for group in groups:
        key = (group.namespace, group.name)
        if key in members:
            rows.append(EnergyRow(group.namespace, group.name, energy.group_energy(members[key]), prices.get(key)))
    return tuple(rows)


def kwh_text(watt_hours: float) -> str:
    """Watt-hours as kWh with a precision that suits homelab figures: `0.42`, `12.3`, `1530`. Pure."""
    kwh = watt_hours / 1000
    return f"{kwh:.2f}" if kwh < 10 else f"{kwh:.1f}" if kwh < 1000 else f"{kwh:.0f}"


def _energy_cells(row: EnergyRow, span: energy.Energy) -> list[_Cell]:
    if row.figures.known == 0:
        return [UNKNOWN, UNKNOWN, NO_VALUE]
    cost = row.figures.cost(span.used_wh, row.price_per_kwh)
    return [kwh_text(span.used_wh), kwh_text(span.avoided_wh), NO_VALUE if cost is None else str(cost)]


def _energy_table(rows: Sequence[EnergyRow], *, show_namespace: bool) -> str:
    headers = [
        "GROUP", "DRAW", "KWH 24H", "AVOIDED 24H", "COST 24H", "KWH TOTAL", "AVOIDED TOTAL", "COST TOTAL", "UNKNOWN",
    ]
    cells: list[list[_Cell]] = []
    for row in rows:
        figures = row.figures
        draw = f"{figures.draw_watts}W" if figures.known else UNKNOWN
        unknown = f"{figures.unknown} of {figures.known + figures.unknown}" if figures.unknown else NO_VALUE
        cells.append(
            [row.name, draw, *_energy_cells(row, figures.last_day), *_energy_cells(row, figures.since_start), unknown]
        )
    return _table(_with_namespace(headers, cells, [row.namespace for row in rows], show_namespace))


def _span_document(row: EnergyRow, span: energy.Energy) -> dict[str, Any]:
    known = row.figures.known > 0
    cost = row.figures.cost(span.used_wh, row.price_per_kwh) if known else None
    return {
        "usedKWh": round(span.used_wh / 1000, 4) if known else None,
        "avoidedKWh": round(span.avoided_wh / 1000, 4) if known else None,
        "cost": str(cost) if cost is not None else None,
    }


def _energy_document(row: EnergyRow) -> dict[str, Any]:
    figures = row.figures
    return {
        "namespace": row.namespace,
        "name": row.name,
        "drawWatts": figures.draw_watts if figures.known else None,
        "pricePerKWh": str(row.price_per_kwh) if row.price_per_kwh is not None else None,
        "lastDay": _span_document(row, figures.last_day),
        "sinceStart": _span_document(row, figures.since_start),
        "knownMachines": figures.known,
        "unknownMachines": figures.unknown,
    }
