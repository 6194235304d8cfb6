"""A schedule window opening on a running operator: the machines come on and CA is told the raised minimum.

The operator's wall clock runs at real speed from a few seconds before the window, so the window opens through
the operator's own timer (or, on a slow start, at its first look): either way what CA and `kubectl` see is the
same. Closing a window and a lowered maxSize are covered by the group actor's tests with a hand-moved clock.
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
