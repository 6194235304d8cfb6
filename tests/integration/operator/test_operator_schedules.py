"""Schedule windows opening and closing on a running operator: what CA is told, and what the operator powers.

The operator's wall clock runs at real speed from a few seconds before the change, so the window opens (closes) through
the operator's own timer (or, on a slow start, at its first look): either way what CA and `kubectl` see is the
same. A closing window gives CA the group's own minimum back and powers nothing off; a lowered maxSize is covered
by the group actor's tests with a hand-moved clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from protos import externalgrpc_pb2 as externalgrpc
from schemas import GROUP_VERSION
from tests.support.operator_homelab import GROUP, GROUP_ID, NAMESPACE, Homelab, simulated
from tests.support.polling import wait_for

WINDOW_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
OFFICE = {"name": "office", "days": ["Mon"], "start": "08:00", "end": "18:00", "timeZone": "UTC", "minSize": 2}


class RunningClock:
    """Wall-clock time that starts at `start` and runs at real speed."""

    def __init__(self, start: datetime) -> None:
        self._start, self._began = start, time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._began)


def _group_status(homelab: Homelab) -> dict[str, Any]:
    group = homelab.fake.store.get(GROUP_VERSION, "groups", GROUP, NAMESPACE)
    status: dict[str, Any] = group.get("status", {})
    return status


def test_an_office_hours_window_powers_machines_on_and_ca_sees_the_raised_minimum(homelab: Homelab) -> None:
    homelab.add_group(max_size=3, schedules=[OFFICE])
    for name in ("m1", "m2", "m3"):
        homelab.add_machine(name, priority=10 if name == "m3" else 0)
    homelab.simulate(simulated("m1"), simulated("m2"), simulated("m3"))

    ca = homelab.start_operator(clock=RunningClock(WINDOW_START - timedelta(seconds=3)))

    def reported() -> externalgrpc.NodeGroup | None:
        groups = ca.stub.NodeGroups(externalgrpc.NodeGroupsRequest()).nodeGroups
        found = next(group for group in groups if group.id == GROUP_ID)
        return found if found.minSize == 2 else None

    group = wait_for(reported, what="CA told the office window's minSize")
    assert (group.minSize, group.maxSize) == (2, 3)
    assert ca.target_size() == 2  # the operator powered them on: CA keeps them rather than starting its own
    homelab.wait_state("m3", "Ready")
    started = {name for name in ("m1", "m2", "m3") if homelab.job_names(name, "startup")}
    assert len(started) == 2
    assert "m3" in started  # best first: the higher priority
    status = wait_for(lambda: _group_status(homelab).get("activeSchedule") and _group_status(homelab), what="status")
    assert (status["activeSchedule"], status["nextScheduleChange"]) == ("office", "2026-03-02T18:00:00Z")
    assert {"ScheduleStarted", "ScheduleScaleUp"} <= homelab.event_reasons(GROUP)


def test_a_closing_window_gives_ca_the_minimum_back_and_powers_nothing_off(homelab: Homelab) -> None:
    homelab.add_group(max_size=3, schedules=[OFFICE])
    for name in ("m1", "m2", "m3"):
        homelab.add_machine(name)
    homelab.simulate(simulated("m1"), simulated("m2"), simulated("m3"))
    window_end = WINDOW_START.replace(hour=18)

    ca = homelab.start_operator(clock=RunningClock(window_end - timedelta(seconds=8)))

    def group_reported(min_size: int) -> externalgrpc.NodeGroup | None:
        groups = ca.stub.NodeGroups(externalgrpc.NodeGroupsRequest()).nodeGroups
        found = next(group for group in groups if group.id == GROUP_ID)
        return found if found.minSize == min_size else None

    wait_for(lambda: group_reported(2), what="CA told the office window's minSize while it is open")
    wait_for(lambda: group_reported(0), what="CA told the group's own minSize once the window closed")
    status = wait_for(
        lambda: "activeSchedule" not in _group_status(homelab) and _group_status(homelab), what="status"
    )
    assert status["nextScheduleChange"] == "2026-03-09T08:00:00Z"  # next Monday's opening
    assert "ScheduleEnded" in homelab.event_reasons(GROUP)
    # Removing what is no longer needed is CA's decision, in its own time: the operator powers nothing off.
    assert ca.target_size() == 2
    assert not any(homelab.job_names(name, "shutdown") for name in ("m1", "m2", "m3"))
