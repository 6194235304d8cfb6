"""Benchmark of what energy accounting and learned boot times cost; prints figures, asserts nothing.

At 1000 and 5000 machines: the time of one `/metrics` scrape of the energy series alone (`EnergyCollector.collect`,
which computes every machine's counters from its status at scrape time), the time the group actor spends on the
learned provisioning time when a boot finishes (the p99 of every member's last 10 boots), and the size of a Node
status with the new fields filled (the bytes each status write carries; the number of writes does not change).

Run from the repository root: `.venv/bin/python -m bench.energy` (or `.venv/bin/python bench/energy.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file, this folder would come first on sys.path; the packages live one level up.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import json
import statistics
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from actors.fsm.durations import learned_provision_seconds
from actors.metrics import EnergyBasis, EnergyCollector
from schemas.node import ENERGY_HOURS, RECENT_DURATIONS, NodeState, NodeStatus

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
ROUNDS = 20


def _status(index: int) -> NodeStatus:
    on = index % 3 == 0
    return NodeStatus(
        state=NodeState.READY if on else NodeState.SHUTDOWN,
        since=NOW - timedelta(minutes=index % 600),
        accounting_since=NOW - timedelta(days=30),
        powered_on_seconds=3600.0 * (index % 200),
        powered_on_by_hour=tuple(float((index + hour) % 3600) for hour in range(ENERGY_HOURS)),
        powered_on_hours_end=NOW.replace(minute=0),
        recent_boot_seconds=tuple(60.0 + (index * 7 + n) % 240 for n in range(RECENT_DURATIONS)),
        recent_shutdown_seconds=tuple(20.0 + (index + n) % 40 for n in range(RECENT_DURATIONS)),
    )


def _milliseconds(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms   max {ordered[-1] * 1000:7.2f} ms"


def main() -> None:
    for machines in (1000, 5000):
        statuses = [_status(index) for index in range(machines)]
        collector = EnergyCollector(CollectorRegistry())

        def clock() -> datetime:
            return NOW

        for index, status in enumerate(statuses):
            basis = EnergyBasis.of(status, 60 + index % 200, 5, None, clock)
            collector.set_machine(f"lab/group-{index % 4}", f"machine-{index:05d}", basis)
        scrapes = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            list(collector.collect())
            scrapes.append(time.perf_counter() - started)
        boots = [seconds for status in statuses for seconds in status.recent_boot_seconds]
        learning = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            learned_provision_seconds(boots)
            learning.append(time.perf_counter() - started)
        print(f"{machines} machines")
        print(f"  energy series of one scrape ({machines} machines, 4 groups): {_milliseconds(scrapes)}")
        print(f"  learned provisioning time over {len(boots)} boots (one group): {_milliseconds(learning)}")
    before = NodeStatus(state=NodeState.READY, since=NOW, accounting_since=None)
    after = _status(0)
    size = len(json.dumps(after.model_dump(mode="json", by_alias=True, exclude_none=True)))
    base = len(json.dumps(before.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={
        "powered_on_by_hour", "recent_boot_seconds", "recent_shutdown_seconds"})))
    print(f"Node status bytes with a full day, 10 boots and 10 shutdowns recorded: {size} (without them: {base})")


if __name__ == "__main__":
    main()
