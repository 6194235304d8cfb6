"""Power schedules: the window in force at an instant and when that next changes, as tables.

Instants are written in UTC so each row says exactly which moment it means; the windows are read on their own
zone's wall clock (Europe/Berlin is UTC+1 in winter, UTC+2 in summer; DST began 2026-03-29 01:00 UTC and ends
2026-10-25 01:00 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.fsm.schedules import active_window, effective_sizes, next_change
from schemas.group import GroupSpec, Schedule, Weekday

WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
OFFICE = Schedule(name="office", days=WEEKDAYS, start="08:00", end="18:00", time_zone="Europe/Berlin", min_size=3)
NIGHTS = Schedule(name="nights", days=tuple(Weekday), start="22:00", end="06:00", time_zone="Europe/Berlin", max_size=1)
FRIDAY_NIGHT = Schedule(name="friday-night", days=(Weekday.FRI,), start="23:00", end="02:00", max_size=0)
ALL_DAY_FRIDAY = Schedule(name="friday", days=(Weekday.FRI,), start="00:00", end="23:59", min_size=5)
DST_NIGHT = Schedule(name="dst", days=(Weekday.SUN,), start="01:30", end="03:30", time_zone="Europe/Berlin", max_size=2)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedules", "now", "expected"),
    [
        # 2026-03-02 is a Monday; Berlin is UTC+1 in March before the 29th.
        pytest.param((OFFICE,), "2026-03-02T06:59:59", None, id="before-office-hours-in-berlin"),
        pytest.param((OFFICE,), "2026-03-02T07:00:00", "office", id="start-is-inclusive"),
        pytest.param((OFFICE,), "2026-03-02T16:59:59", "office", id="last-second"),
        pytest.param((OFFICE,), "2026-03-02T17:00:00", None, id="end-is-exclusive"),
        pytest.param((OFFICE,), "2026-03-07T10:00:00", None, id="not-on-saturday"),
        # Summer time: the same wall-clock window is an hour earlier in UTC.
        pytest.param((OFFICE,), "2026-06-01T06:00:00", "office", id="summer-time-starts-an-hour-earlier-in-utc"),
        pytest.param((OFFICE,), "2026-06-01T16:00:00", None, id="summer-time-ends-an-hour-earlier-in-utc"),
        # Across midnight: the day named is the day the window starts on.
        pytest.param((FRIDAY_NIGHT,), "2026-03-06T23:30:00", "friday-night", id="friday-before-midnight"),
        pytest.param((FRIDAY_NIGHT,), "2026-03-07T01:59:00", "friday-night", id="saturday-morning-after-friday"),
        pytest.param((FRIDAY_NIGHT,), "2026-03-07T02:00:00", None, id="ends-saturday-02:00"),
        pytest.param((FRIDAY_NIGHT,), "2026-03-05T23:30:00", None, id="not-a-thursday-night"),
        pytest.param((FRIDAY_NIGHT,), "2026-03-06T01:00:00", None, id="thursday-night-does-not-run-into-friday"),
        # Overlaps: the first listed window that is active wins.
        pytest.param((ALL_DAY_FRIDAY, FRIDAY_NIGHT), "2026-03-06T23:30:00", "friday", id="first-match-wins"),
        pytest.param((FRIDAY_NIGHT, ALL_DAY_FRIDAY), "2026-03-06T23:30:00", "friday-night", id="order-decides"),
        pytest.param((ALL_DAY_FRIDAY, FRIDAY_NIGHT), "2026-03-06T23:59:30", "friday-night", id="second-after-first"),
        # Daylight saving: 2026-03-29 02:00-03:00 does not exist in Berlin; the window still runs, shorter.
        pytest.param((DST_NIGHT,), "2026-03-29T00:30:00", "dst", id="dst-spring-start-before-the-gap"),
        pytest.param((DST_NIGHT,), "2026-03-29T01:29:00", "dst", id="dst-spring-until-03:30-summer-time"),
        pytest.param((DST_NIGHT,), "2026-03-29T01:30:00", None, id="dst-spring-over"),
        # 2026-10-25 02:00-03:00 happens twice; the window runs from the first 01:30 to 03:30 (UTC+1).
        pytest.param((DST_NIGHT,), "2026-10-24T23:30:00", "dst", id="dst-autumn-start"),
        pytest.param((DST_NIGHT,), "2026-10-25T02:29:00", "dst", id="dst-autumn-through-the-repeated-hour"),
        pytest.param((DST_NIGHT,), "2026-10-25T02:30:00", None, id="dst-autumn-over"),
        pytest.param((), "2026-03-02T10:00:00", None, id="no-schedules"),
        pytest.param(
            (OFFICE.model_copy(update={"time_zone": "Mars/Olympus"}),), "2026-03-02T10:00:00", None, id="unknown-zone"
        ),
    ],
)
def test_active_window(schedules: tuple[Schedule, ...], now: str, expected: str | None) -> None:
    window = active_window(schedules, utc(now))
    assert (window.name if window is not None else None) == expected


@pytest.mark.parametrize(
    ("schedules", "now", "expected"),
    [
        pytest.param((OFFICE,), "2026-03-02T06:00:00", "2026-03-02T07:00:00", id="office-opens"),
        pytest.param((OFFICE,), "2026-03-02T10:00:00", "2026-03-02T17:00:00", id="office-closes"),
        pytest.param((OFFICE,), "2026-03-06T18:00:00", "2026-03-09T07:00:00", id="over-the-weekend"),
        pytest.param((OFFICE,), "2026-03-27T18:00:00", "2026-03-30T06:00:00", id="monday-after-dst-starts"),
        pytest.param((FRIDAY_NIGHT,), "2026-03-06T23:30:00", "2026-03-07T02:00:00", id="ends-after-midnight"),
        pytest.param((FRIDAY_NIGHT,), "2026-03-07T02:00:00", "2026-03-13T23:00:00", id="a-week-later"),
        # Handing over from one window to the other is a change; the first window's later end is not.
        pytest.param((ALL_DAY_FRIDAY, FRIDAY_NIGHT), "2026-03-06T12:00:00", "2026-03-06T23:59:00", id="hand-over"),
        pytest.param((FRIDAY_NIGHT, ALL_DAY_FRIDAY), "2026-03-06T12:00:00", "2026-03-06T23:00:00", id="overridden"),
        pytest.param((FRIDAY_NIGHT, ALL_DAY_FRIDAY), "2026-03-06T23:00:00", "2026-03-07T02:00:00", id="then-ends"),
        pytest.param((), "2026-03-02T10:00:00", None, id="no-schedules"),
    ],
)
def test_next_change(schedules: tuple[Schedule, ...], now: str, expected: str | None) -> None:
    assert next_change(schedules, utc(now)) == (utc(expected) if expected is not None else None)


def test_two_windows_covering_every_hour_still_change_at_their_boundaries() -> None:
    day = Schedule(name="day", days=tuple(Weekday), start="06:00", end="22:00", min_size=2)
    night = Schedule(name="night", days=tuple(Weekday), start="22:00", end="06:00", max_size=1)
    assert next_change((day, night), utc("2026-03-02T12:00:00")) == utc("2026-03-02T22:00:00")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param("2026-03-02T10:00:00", (3, 10, "office"), id="window-raises-min-keeps-max"),
        pytest.param("2026-03-02T22:00:00", (1, 1, "nights"), id="window-lowers-max-keeps-min"),
        pytest.param("2026-03-07T12:00:00", (1, 10, None), id="spec-outside-windows"),
    ],
)
def test_effective_sizes(now: str, expected: tuple[int, int, str | None]) -> None:
    spec = GroupSpec(min_size=1, max_size=10, schedules=(OFFICE, NIGHTS))
    sizes = effective_sizes(spec, utc(now))
    assert (sizes.min_size, sizes.max_size, sizes.window.name if sizes.window else None) == expected



_CLOCK = st.builds(lambda hour, minute: f"{hour:02d}:{minute:02d}", st.integers(0, 23), st.sampled_from((0, 30, 59)))
_WINDOW = st.builds(
    lambda name, days, start, end, zone: Schedule(
        name=name, days=tuple(sorted(days, key=list(Weekday).index)), start=start, end=end, time_zone=zone,
        max_size=1,
    ),
    st.sampled_from(("a", "b", "c")),
    st.sets(st.sampled_from(tuple(Weekday)), min_size=1),
    _CLOCK,
    _CLOCK,
    st.sampled_from(("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")),
).filter(lambda window: window.start != window.end)


@settings(max_examples=150, deadline=None)
@given(
    schedules=st.lists(_WINDOW, min_size=1, max_size=3).map(tuple),
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
)
def test_the_window_in_force_holds_until_the_next_change_and_differs_at_it(
    schedules: tuple[Schedule, ...], now: datetime
) -> None:
    current = active_window(schedules, now)
    change = next_change(schedules, now)
    assert change is not None  # every window starts and ends within a week
    assert now < change <= now + timedelta(days=8)
    assert active_window(schedules, change) != current
    step = (change - now) / 7
    assert all(active_window(schedules, now + step * index) == current for index in range(7))
