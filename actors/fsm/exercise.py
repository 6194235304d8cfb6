"""Exercise boots of a group (`spec.exercise`): which machine to exercise now, and when to look again.

Separate from the group policy because it answers a question CA never asks: a machine that has been off a long
time may no longer boot (a dead CMOS battery, a disk that does not spin up, a BIOS that lost Wake-on-LAN), and the
group should find out before CA needs it. The group actor asks two things: the machine to exercise now (at most one
per group at a time, only inside the window, only with a free boot slot) and the instant to look again. What an
exercise does to the machine (boot, check, power off, hidden from CA) is the node machine's (`actors.fsm.node`).
Pure: every function takes `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from actors.fsm.group import MachineView, boot_slots
from actors.fsm.schedules import is_open, next_opening
from schemas.common import parse_duration
from schemas.group import Exercise, GroupSpec
from schemas.node import NodeState, PowerPolicy


def due_at(machine: MachineView, exercise: Exercise) -> datetime | None:
    """When `machine` becomes due for an exercise; None: it never does in its present state. Pure.

    Only a powered-off machine with powerPolicy Auto is exercised; it is due `every` after it went off, and not
    before a failed boot's cooldown is over (a failed exercise counts as a failed boot).
    """
    if machine.state is not NodeState.SHUTDOWN or machine.power_policy is not PowerPolicy.AUTO:
        return None
    if machine.since is None:
        return None  # off since an unknown time: the first state change stamps it
    due = machine.since + timedelta(seconds=parse_duration(exercise.every))
    if machine.cooldown_until is not None and machine.cooldown_until > due:
        return machine.cooldown_until
    return due


def _longest_off_first(machine: MachineView) -> tuple[float, str]:
    return (machine.since.timestamp() if machine.since is not None else 0.0, machine.name)


def choose_for_exercise(machines: Sequence[MachineView], spec: GroupSpec, now: datetime) -> str | None:
    """The member to exercise now, or None: nothing due, one already exercised, outside the window, no boot slot.

    Of the machines due, the one off the longest. Pure.
    """
    exercise = spec.exercise
    if exercise is None or any(machine.exercising for machine in machines):
        return None
    if exercise.window is not None and not is_open(exercise.window, now):
        return None
    slots = boot_slots(machines, spec)
    if slots is not None and slots < 1:
        return None
    due = [
        machine for machine in machines if (when := due_at(machine, exercise)) is not None and when <= now
    ]
    return min(due, key=_longest_off_first).name if due else None


def next_look(machines: Sequence[MachineView], spec: GroupSpec, now: datetime) -> datetime | None:
    """When `choose_for_exercise` may next give another answer by the clock alone; None: not by the clock. Pure.

    The earliest instant a machine becomes due, moved to the window's next opening when the window is closed
    then. Changes the group hears of (a machine goes off, an exercise ends, a boot slot frees) are looked at
    when they happen, so they need no instant here. A machine already due waits for one of those, or for the
    window: its instant is `now` only when nothing else holds it back.
    """
    exercise = spec.exercise
    if exercise is None or any(machine.exercising for machine in machines):
        return None
    dues = [when for machine in machines if (when := due_at(machine, exercise)) is not None]
    if not dues:
        return None
    earliest = max(min(dues), now)
    window = exercise.window
    if window is None:
        return earliest if earliest > now else None
    opening = next_opening(window, earliest)
    if opening is None or opening <= now:
        return None  # open now with a machine due: held back by boot slots, which free with a member's report
    return opening
