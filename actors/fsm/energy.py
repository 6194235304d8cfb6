"""Energy accounting of one machine and one group: energy used and energy avoided compared with always-on.

Derived, never remembered: every figure is a pure function of the machine's durable status (the powered-on
total and the hour-by-hour record its state machine keeps at each change of state, see `account_stretch`), its
declared draw and `now`. So the accounting survives operator restarts, costs no status write of its own (the
hour-by-hour record changes only in the writes that record a change of state), and the Prometheus counters built
on it keep counting where they stood before a restart.

What counts as powered on (`drawing_since`): a boot from its startup Job's creation (the power command), Ready,
and shutting down until the power-off is confirmed. Every other state counts as off, at the standby draw: a failed
boot and a machine in maintenance are the operator's best guess, since it cannot see the power itself.

A machine without a declared draw (`powerWatts` unset or 0) is *unknown*: it has no figures, and groups count it
apart rather than adding a zero that would read as "nothing saved".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from schemas.node import ENERGY_HOURS, NodeState, NodeStatus

HOUR: Final = timedelta(hours=1)
DAY_SECONDS: Final = 24 * 3600.0
JOULES_PER_KWH: Final = 3_600_000.0


def drawing_since(status: NodeStatus) -> datetime | None:
    """When the machine's current powered-on stretch began; None while it counts as off. Pure."""
    if status.state in (NodeState.READY, NodeState.SHUTTING_DOWN):
        return status.since
    if status.state is NodeState.STARTING_UP and status.operation is not None:
        return status.operation.started  # waiting for a boot slot is not drawing yet
    return None


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _rolled(by_hour: tuple[float, ...], hours_end: datetime | None, to_hour: datetime) -> tuple[float, ...]:
    """The hour-by-hour record as of the hour `to_hour`, oldest first, always `ENERGY_HOURS` long. Pure."""
    if hours_end is None or by_hour == ():
        return (0.0,) * ENERGY_HOURS
    padded = (0.0,) * (ENERGY_HOURS - len(by_hour)) + by_hour
    shift = int((to_hour - hours_end) / HOUR)
    if shift <= 0:
        return padded  # a clock that went back: keep what was recorded
    if shift >= ENERGY_HOURS:
        return (0.0,) * ENERGY_HOURS
    return padded[shift:] + (0.0,) * shift


def add_stretch(
    by_hour: tuple[float, ...], hours_end: datetime | None, start: datetime, end: datetime
) -> tuple[tuple[float, ...], datetime]:
    """The hour-by-hour record with the powered-on stretch [start, end) added, and its new last hour. Pure."""
    last = _hour(end)
    if hours_end is not None and hours_end > last:
        last = hours_end  # a clock that went back
    hours = list(_rolled(by_hour, hours_end, last))
    first = last - (ENERGY_HOURS - 1) * HOUR
    cursor = max(start, first)
    while cursor < end:
        hour = _hour(cursor)
        index = int((hour - first) / HOUR)
        upto = min(end, hour + HOUR)
        if 0 <= index < ENERGY_HOURS:
            hours[index] += (upto - cursor).total_seconds()
        cursor = upto
    return tuple(round(seconds, 3) for seconds in hours), last


def account_stretch(before: NodeStatus, now: datetime) -> dict[str, object]:
    """The status changes that close the stretch `before` was in, at a change of state at `now`. Pure.

    Called by the state machine's bookkeeping (and only there), so the record is written with the change of
    state and never on its own.
    """
    changes: dict[str, object] = {}
    if before.accounting_since is None:
        changes["accounting_since"] = before.since or now
    start = drawing_since(before)
    if start is None or now <= start:
        return changes
    by_hour, hours_end = add_stretch(before.powered_on_by_hour, before.powered_on_hours_end, start, now)
    changes |= {
        "powered_on_seconds": before.powered_on_seconds + (now - start).total_seconds(),
        "powered_on_by_hour": by_hour,
        "powered_on_hours_end": hours_end,
    }
    return changes


def powered_on_seconds(status: NodeStatus, now: datetime) -> float:
    """Total time powered on, the current stretch included. Pure."""
    start = drawing_since(status)
    current = max(0.0, (now - start).total_seconds()) if start is not None else 0.0
    return status.powered_on_seconds + current


def accounting_start(status: NodeStatus, now: datetime) -> datetime:
    """When accounting of the machine began (before its first recorded change of state: when its state began)."""
    return status.accounting_since or status.since or now


def powered_on_last_day(status: NodeStatus, now: datetime) -> tuple[float, float]:
    """(seconds powered on, seconds accounted) over the last 24 hours. Pure.

    Exact but for the oldest recorded hour, which the window cuts: its powered-on time is counted in proportion
    to the part of the hour inside the window (where in the hour it fell is not recorded).
    """
    start = drawing_since(status)
    by_hour, hours_end = status.powered_on_by_hour, status.powered_on_hours_end
    if start is not None and now > start:
        by_hour, hours_end = add_stretch(by_hour, hours_end, start, now)
    hours = _rolled(by_hour, hours_end, _hour(now))
    window_start = now - timedelta(seconds=DAY_SECONDS)
    oldest_hour = _hour(now) - (ENERGY_HOURS - 1) * HOUR
    inside = ((oldest_hour + HOUR) - window_start) / HOUR
    on = sum(hours[1:]) + hours[0] * inside
    accounted = max(0.0, (now - max(window_start, accounting_start(status, now))).total_seconds())
    return min(on, accounted), accounted


@dataclass(frozen=True)
class Energy:
    """Energy over a span, in watt-hours: used, and avoided compared with the machine always on."""

    used_wh: float = 0.0
    avoided_wh: float = 0.0

    def __add__(self, other: Energy) -> Energy:
        return Energy(self.used_wh + other.used_wh, self.avoided_wh + other.avoided_wh)


def known_watts(power_watts: int | None) -> int | None:
    """The declared draw when on, or None when unknown (unset or 0: never read as "draws nothing"). Pure."""
    return power_watts if power_watts else None


def energy(on_seconds: float, accounted_seconds: float, power_watts: int, standby_watts: int | None) -> Energy:
    """Energy of a machine powered on `on_seconds` out of `accounted_seconds`. Pure."""
    standby = min(standby_watts or 0, power_watts)
    off_seconds = max(0.0, accounted_seconds - on_seconds)
    used = (power_watts * on_seconds + standby * off_seconds) / 3600
    avoided = (power_watts - standby) * off_seconds / 3600
    return Energy(used, avoided)


def draw_watts(status: NodeStatus, power_watts: int, standby_watts: int | None) -> int:
    """What the machine draws now by its state: its power draw while powered on, else its standby draw. Pure."""
    return power_watts if drawing_since(status) is not None else min(standby_watts or 0, power_watts)


@dataclass(frozen=True)
class MachineEnergy:
    """One machine's figures at one moment; None when its draw is unknown."""

    since_start: Energy
    last_day: Energy
    draw_watts: int


def machine_energy(
    status: NodeStatus, power_watts: int | None, standby_watts: int | None, now: datetime
) -> MachineEnergy | None:
    """A machine's energy since accounting began and over the last day, and its draw now. Pure."""
    watts = known_watts(power_watts)
    if watts is None:
        return None
    total_on = powered_on_seconds(status, now)
    accounted = max(total_on, (now - accounting_start(status, now)).total_seconds())
    day_on, day_accounted = powered_on_last_day(status, now)
    return MachineEnergy(
        since_start=energy(total_on, accounted, watts, standby_watts),
        last_day=energy(day_on, day_accounted, watts, standby_watts),
        draw_watts=draw_watts(status, watts, standby_watts),
    )


@dataclass(frozen=True)
class GroupEnergy:
    """A group's figures: the sum over its machines of known draw, and how many machines are unknown."""

    since_start: Energy
    last_day: Energy
    draw_watts: int
    known: int
    unknown: int

    def cost(self, energy_wh: float, price_per_kwh: Decimal | None) -> Decimal | None:
        """What `energy_wh` costs at the group's price; None without a price. Pure."""
        if price_per_kwh is None:
            return None
        return (Decimal(repr(energy_wh)) / 1000 * price_per_kwh).quantize(Decimal("0.01"))


def group_energy(machines: Iterable[MachineEnergy | None]) -> GroupEnergy:
    """Sum of the known machines' figures; unknown ones are counted, not added as zero. Pure."""
    since_start, last_day, draw, known, unknown = Energy(), Energy(), 0, 0, 0
    for machine in machines:
        if machine is None:
            unknown += 1
            continue
        since_start, last_day = since_start + machine.since_start, last_day + machine.last_day
        draw += machine.draw_watts
        known += 1
    return GroupEnergy(since_start, last_day, draw, known, unknown)
