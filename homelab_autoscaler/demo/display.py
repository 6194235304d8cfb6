"""The demo's terminal output while it runs: a live view redrawn in place, one line per change, or nothing.

Which one is the command's choice: the live view when stdout is a terminal, lines when it is a pipe or a file (CI
logs stay readable, and nothing there understands cursor movement), nothing with `--quiet`. What is drawn is decided
by pure functions of an observation (`render_frame`, `format_change`); the classes only write and remember how many
lines the previous frame took, so the next one can be drawn over it.

The machine table is `homelab-autoscaler status`'s own (the same rows, the same columns), so what the demo shows is
what a person will later see on a real cluster. Unlike `status` it is fitted to the terminal's width, read again for
every frame: it needs about 160 columns whole, and a line cut at the edge would lose COOLDOWN and POLICY, the very
columns a step can be about. So columns are given up by priority instead: the step's own columns (`Step.columns`)
keep their whole length while any other column can go, the rest go in reverse `COLUMN_PRIORITY` order, and the
free-text ones are shortened with an ellipsis.

Below the table, the machines the operator switches natively get a line each: how they are switched (no Job shows
it) and the power state their BMC last read back, with its age; the full-width `READBACK` column of `status -o wide`
would not fit beside the others.
"""

from __future__ import annotations

import math
import re
import shutil
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from os import terminal_size
from typing import Final, TextIO

from homelab_autoscaler.demo.observation import Change, ChangeKind, GroupSeen, Observation, StepStatus
from homelab_autoscaler.status_view import (
    MachineColumn,
    MachineRow,
    readback_text,
    render_machine_table,
    seconds_between,
    warning_lines,
)
from schemas.node import NodeState

TAIL_LENGTH: Final = 8
"""Recent changes kept at the bottom of the live view."""
BAR_WIDTH: Final = 24
ANSI_SEQUENCE: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR: Final = "\x1b[?25l"
SHOW_CURSOR: Final = "\x1b[?25h"
CLEAR_TO_END: Final = "\x1b[J"
BOLD: Final = "\x1b[1m"
DIM: Final = "\x1b[2m"
GREEN: Final = "\x1b[32m"
RESET: Final = "\x1b[0m"
COLUMN_PRIORITY: Final = (
    MachineColumn.MACHINE,
    MachineColumn.STATE,
    MachineColumn.COOLDOWN,
    MachineColumn.LAST_ERROR,
    MachineColumn.POLICY,
    MachineColumn.OPERATION,
    MachineColumn.SINCE,
    MachineColumn.GROUP,
)
"""The machine table's columns, the last given up first when the terminal is narrow.

Which machine and its state are the view's subject. COOLDOWN takes a few characters and is the only sign of why a
machine that failed is not chosen again, and LAST ERROR says what failed. POLICY is short and the only sign of a
machine pinned on or off. The power Jobs of OPERATION are also told by the Booting and Recent lines, SINCE by the
Recent lines, and GROUP by the machines' names and the Cluster Autoscaler lines above, so they go first."""


# --- pure rendering ----------------------------------------------------------------------------------------------


def format_change(change: Change) -> str:
    """One log line: `[  4.2s] nuc-1: Shutdown → StartingUp (...)`. Pure."""
    if change.kind is ChangeKind.STEP:
        text = f"── {change.subject}: {change.text}"
    elif change.kind is ChangeKind.CALL:
        text = f"CA → {change.text}"
    elif change.kind in (ChangeKind.TARGET, ChangeKind.INSTANCE):
        text = f"CA sees {change.subject}: {change.text}"
    else:
        text = f"{change.subject}: {change.text}"
    return f"[{change.elapsed:6.1f}s] {text}"


def ca_lines(groups: Sequence[GroupSeen]) -> list[str]:
    """What Cluster Autoscaler reads, one line per group. Pure."""
    if not groups:
        return ["  (no node groups yet)"]
    width = max(len(group.id) for group in groups)
    lines = []
    for group in groups:
        counts: dict[str, int] = {}
        errors = 0
        for instance in group.instances:
            counts[instance.state] = counts.get(instance.state, 0) + 1
            errors += bool(instance.error_code)
        listed = ", ".join(f"{count} {state}" for state, count in sorted(counts.items())) or "no instances"
        if errors:
            listed += f" ({errors} with an error)"
        lines.append(
            f"  {group.id.ljust(width)}   min {group.min_size}  max {group.max_size}  target {group.target}   {listed}"
        )
    return lines


def boot_progress_lines(observation: Observation, expected_boot: Mapping[str, float]) -> list[str]:
    """A progress bar per machine in StartingUp, against its expected boot time. Pure."""
    lines = []
    for machine in observation.view.machines:
        if machine.state != NodeState.STARTING_UP.value or machine.since is None:
            continue
        took = seconds_between(machine.since, observation.now)
        expected = expected_boot.get(machine.name, 0.0)
        fraction = min(1.0, took / expected) if expected > 0 else 1.0
        filled = math.floor(fraction * BAR_WIDTH)
        bar = "█" * filled + "░" * (BAR_WIDTH - filled)
        note = "" if fraction < 1.0 else "  waiting for its Node to register"
        lines.append(f"  {machine.name:<12} [{bar}] {took:4.1f} s of ~{expected:.1f} s{note}")
    return lines


def native_power_lines(observation: Observation, native: Mapping[str, str]) -> list[str]:
    """Per natively powered machine: how it is switched and its last readback (`native` gives the first). Pure."""
    if not native:
        return []
    width = max(len(name) for name in native)
    lines = []
    for name, how in native.items():
        machine = observation.machine(name)
        readback = readback_text(machine) if machine is not None else ""
        lines.append(f"  {name.ljust(width)}   {how} · read back: {readback or 'not yet'}")
    return lines


def render_frame(
    observation: Observation,
    step: StepStatus | None,
    tail: Sequence[Change],
    expected_boot: Mapping[str, float],
    *,
    width: int,
    colour: bool = True,
    native: Mapping[str, str] | None = None,
    height: int | None = None,
) -> list[str]:
    """The whole live view as lines for a terminal `width` columns wide, before `fit` cuts what still overflows.

    Only the machine table is laid out for the width; the other lines are short, or free text that `fit` cuts.
    Given the terminal's `height`, the Recent section keeps the newest changes that fit below the rest (`fit` cuts
    from the bottom, which would otherwise drop the newest first). Pure.
    """
    bold, dim, reset = (BOLD, DIM, RESET) if colour else ("", "", "")
    heading = f"homelab-autoscaler demo · {observation.elapsed:.1f} s"
    if step is not None:
        heading += f" · step {step.number}/{step.total}: {step.title}"
    lines = [f"{bold}{heading}{reset}"]
    if step is not None:
        lines.append(f"  {dim}{step.explanation}{reset}")
    lines += ["", f"{bold}Cluster Autoscaler sees{reset}", *ca_lines(observation.groups), ""]
    lines += machine_lines(observation.view.machines, step, width=width, colour=colour)
    switched = native_power_lines(observation, native or {})
    if switched:
        lines += ["", f"{bold}Powered natively, no power Jobs{reset}", *switched]
    progress = boot_progress_lines(observation, expected_boot)
    if progress:
        lines += ["", f"{bold}Booting{reset}", *progress]
    if step is not None and step.checks:
        lines += ["", f"{bold}Waiting for{reset}"]
        for check in step.checks:
            mark = f"{GREEN}✓{reset}" if check.done and colour else ("✓" if check.done else "·")
            lines.append(f"  {mark} {check.text}")
    if tail:
        shown = list(tail)
        if height is not None:
            room = (height - 1) - len(lines) - 2  # `fit` keeps height - 1 lines; a blank and the heading first
            shown = shown[-room:] if room > 0 else []
        if shown:
            lines += ["", f"{bold}Recent{reset}", *(f"  {format_change(change)}" for change in shown)]
    return lines


def column_priority(step: StepStatus | None) -> tuple[MachineColumn, ...]:
    """The machine table's columns, most important first: MACHINE, then the step's own columns. Pure."""
    focus = step.columns if step is not None else ()
    first = (MachineColumn.MACHINE, *focus)
    return (*dict.fromkeys(first), *(column for column in COLUMN_PRIORITY if column not in first))


def machine_lines(
    machines: Sequence[MachineRow], step: StepStatus | None, *, width: int, colour: bool = True
) -> list[str]:
    """The machine table with its lines shorter than `width`, then `status`'s warnings (which `fit` cuts). Pure."""
    if not machines:
        return []
    # One column is left free: `fit` keeps every line short of the last column, as a line that fills it makes
    # some terminals wrap, and the next redraw counts lines to find the top of the frame.
    lines = render_machine_table(
        machines,
        width=width - 1,
        priority=column_priority(step),
        keep_whole=step.columns if step is not None else (),
        colour=colour,
    ).split("\n")
    warnings = warning_lines(machines)
    return [*lines, "", *warnings] if warnings else lines


def fit(lines: Sequence[str], width: int, height: int) -> list[str]:
    """Lines cut to the terminal so none wraps and the frame never scrolls (which would break redrawing). Pure."""
    fitted = []
    for line in lines[: max(1, height - 1)]:
        visible = ANSI_SEQUENCE.sub("", line)
        fitted.append(line if len(visible) < width else visible[: max(1, width - 2)] + "…")
    return fitted


# --- the displays --------------------------------------------------------------------------------------------


class LineDisplay:
    """One line per change, for pipes, files and CI logs."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def show(self, observation: Observation, changes: Sequence[Change], step: StepStatus | None) -> None:
        for change in changes:
            self._stream.write(format_change(change) + "\n")
            if change.detail:
                self._stream.write(f"{'':10}{change.detail}\n")
        if changes:
            self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class LiveDisplay:
    """The whole view redrawn in place on a terminal (ANSI cursor movement).

    `terminal` gives the size for each frame; `shutil.get_terminal_size` honours COLUMNS and LINES when they are
    set, asks the terminal otherwise, and falls back to 80 columns by 24 lines when there is none to ask.
    """

    def __init__(
        self,
        stream: TextIO,
        expected_boot: Mapping[str, float],
        *,
        colour: bool = True,
        terminal: Callable[[], terminal_size] = shutil.get_terminal_size,
        native: Mapping[str, str] | None = None,
    ) -> None:
        """`native`: how each natively powered machine is switched, by name (e.g. "Wake-on-LAN on, IPMI off")."""
        self._stream = stream
        self._native = dict(native or {})
        self._expected_boot = expected_boot
        self._colour = colour
        self._terminal = terminal
        self._tail: deque[Change] = deque(maxlen=TAIL_LENGTH)
        self._drawn = 0

    def show(self, observation: Observation, changes: Sequence[Change], step: StepStatus | None) -> None:
        self._tail.extend(changes)
        size = self._terminal()  # every frame: the terminal may have been resized since the last one
        lines = fit(
            render_frame(
                observation,
                step,
                list(self._tail),
                self._expected_boot,
                width=size.columns,
                colour=self._colour,
                native=self._native,
                height=size.lines,
            ),
            size.columns,
            size.lines,
        )
        # Back to the first line of the previous frame, clear everything below, draw the new frame.
        moves = f"\x1b[{self._drawn}F" if self._drawn else HIDE_CURSOR
        self._stream.write(moves + CLEAR_TO_END + "\n".join(lines) + "\n")
        self._stream.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        """Leave the last frame on screen and give the cursor back."""
        self._stream.write(SHOW_CURSOR)
        self._stream.flush()


class QuietDisplay:
    """Shows nothing (`--quiet`: only the summary is printed)."""

    def show(self, observation: Observation, changes: Sequence[Change], step: StepStatus | None) -> None:
        return None

    def close(self) -> None:
        return None

