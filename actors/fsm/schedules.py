"""Power schedules: which of a Group's weekly windows is in force at an instant, and when that next changes.

Separate from the group policy because it is calendar arithmetic (time zones, daylight saving, midnight) that
the group only needs two answers from: the window in force now, and the instant to look again. Pure: every
function takes `now` (an aware datetime); zones come from the standard library's tz database (`zoneinfo`, with
the `tzdata` package where the system has none).

Semantics: a window is active from `start` on each of its `days` until the next `end`, both read on the wall
clock of its zone; an `end` before `start` ends on the following day. A wall time a daylight-saving change skips
or repeats is resolved as `zoneinfo` does with fold=0 (the offset in force before the change), so a window never
vanishes on a DST night. A zone the tz database does not know makes the window never active (the webhook refuses
such a zone; this only guards a Group that bypassed it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.group import GroupSpec, Schedule, Weekday, WeeklyWindow

_WEEKDAYS: Final = tuple(Weekday)
"""Weekday members in `date.weekday()` order (Monday is 0)."""

_HORIZON_DAYS: Final = 8
"""How far `next_change` looks ahead: every weekly window starts or ends within a week, plus a day of margin."""


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _occurrences(
    window: WeeklyWindow, around: datetime, days_before: int, days_after: int
) -> Iterator[tuple[datetime, datetime]]:
    """The window's (start, end) instants in UTC for start days from `days_before` before to `days_after` after."""
    zone = _zone(window.time_zone)
    if zone is None:
        return
    start, end = _clock(window.start), _clock(window.end)
    local_day = around.astimezone(zone).date()
    for offset in range(-days_before, days_after + 1):
        day = local_day + timedelta(days=offset)
        if _WEEKDAYS[day.weekday()] not in window.days:
            continue
        end_day: date = day if end > start else day + timedelta(days=1)
        yield (
            datetime.combine(day, start, tzinfo=zone).astimezone(UTC),
            datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC),
        )


def _is_active(window: WeeklyWindow, now: datetime) -> bool:
    return any(start <= now < end for start, end in _occurrences(window, now, 1, 0))


def is_open(window: WeeklyWindow, now: datetime) -> bool:
    """Whether `now` falls inside one of the window's weekly occurrences. Pure."""
    return _is_active(window, now)


def next_opening(window: WeeklyWindow, now: datetime) -> datetime | None:
    """The first instant at or after `now` at which the window is open; None: never (an unknown zone). Pure."""
    if _is_active(window, now):
        return now
    starts = sorted(start for start, _end in _occurrences(window, now, 0, _HORIZON_DAYS) if start > now)
    return next(iter(starts), None)


def active_window(schedules: Sequence[Schedule], now: datetime) -> Schedule | None:
    """The first of `schedules` active at `now`, or None. Pure."""
    return next((window for window in schedules if _is_active(window, now)), None)


def next_change(schedules: Sequence[Schedule], now: datetime) -> datetime | None:
    """The first instant after `now` at which `active_window` gives another answer; None: none within a week. Pure.

    Only a window's start or end can change the answer, so the candidates are those instants, in order.
    """
    current = active_window(schedules, now)
    boundaries = sorted(
        {
            instant
            for window in schedules
            for occurrence in _occurrences(window, now, 1, _HORIZON_DAYS)
            for instant in occurrence
            if instant > now
        }
    )
    return next((instant for instant in boundaries if active_window(schedules, instant) != current), None)


@dataclass(frozen=True)
class EffectiveSizes:
    """The group's limits at one instant: the spec's, overridden by the window in force."""

    min_size: int
    max_size: int
    window: Schedule | None


def effective_sizes(spec: GroupSpec, now: datetime) -> EffectiveSizes:
    """minSize and maxSize in force at `now`, and the window that set them (None: the spec's own). Pure."""
    window = active_window(spec.schedules, now)
    if window is None:
        return EffectiveSizes(spec.min_size, spec.max_size, None)
    return EffectiveSizes(
        window.min_size if window.min_size is not None else spec.min_size,
        window.max_size if window.max_size is not None else spec.max_size,
        window,
    )
