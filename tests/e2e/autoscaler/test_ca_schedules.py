"""A schedule window that raises a Group's minSize, with the real Cluster Autoscaler: CA keeps the machine on.

The window is active now: the operator powers a machine on to the window's minSize by itself and reports min 1 to
CA. The machine runs no pod, yet CA leaves it out of its scale-down candidates because the group is at its minimum
(its own log says so at every loop) and never calls DeleteNodes for it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ca_support import AutoscaledHomelab

from schemas.node import OperationKind

GROUP = "office"
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
CA_AT_MINIMUM = re.compile(r"Skipping m1 - node group min size reached \(current: 1, min: 1\)")
CA_DELETED = re.compile(r"gRPC call NodeGroupDeleteNodes")


def test_ca_keeps_the_minimum_a_schedule_window_raises(autoscaled: AutoscaledHomelab) -> None:
    homelab = autoscaled
    now = datetime.now(UTC)
    window = {
        "name": "office-hours", "days": DAYS, "timeZone": "UTC", "minSize": 1,
        # An hour either side of now, whatever the time of day (a window may cross midnight).
        "start": (now - timedelta(hours=1)).strftime("%H:%M"), "end": (now + timedelta(hours=1)).strftime("%H:%M"),
    }
    homelab.add_group(GROUP, max_size=2, schedules=[window])
    homelab.add_machine("m1", GROUP, priority=1)
    homelab.add_machine("m2", GROUP)
    homelab.start_simulator()
    homelab.start_operator()

    homelab.wait(lambda: homelab.state("m1") == "Ready", "the operator to power on the window's minimum itself")
    autoscaler = homelab.start_autoscaler("--expander=least-waste")

    entry = homelab.wait(lambda: homelab.ca_group_status(GROUP), "CA to list the group")
    # Past --scale-down-unneeded-time (6 s) an idle machine would be removed: CA must keep skipping this one.
    homelab.wait(lambda: len(autoscaler.lines(CA_AT_MINIMUM)) >= 5, "CA to keep skipping it: the group is at its min")
    assert entry["health"]["minSize"] == 1, f"CA was told the window's minimum: {entry}"
    assert autoscaler.lines(CA_DELETED) == []
    assert homelab.state("m1") == "Ready"
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"m1": 1}
    assert homelab.jobs_per_machine(OperationKind.SHUTDOWN) == {}
    homelab.assert_ca_was_content()
