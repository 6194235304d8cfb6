"""The readback-age metric of machines powered natively: how stale the operator's knowledge of each machine's power is.

Its own module (beside `actors.metrics`, on the same registry) because it is a custom collector computed at scrape
time: the age grows with the clock between readbacks, so storing a number at each readback would be wrong a second
later. Node actors set the moment of each machine's last good readback (from its status, so a restart resumes
it); machines without a BMC, which cannot be read back, have no series.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from actors.metrics import LABEL_NAMES, PREFIX, REGISTRY

READBACK_AGE: str = PREFIX + "machine_power_readback_age_seconds"


class ReadbackAgeCollector:
    """`machine_power_readback_age_seconds{group,node}`: seconds since the machine's last good power readback."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._table: dict[tuple[str, str], tuple[datetime, Callable[[], datetime]]] = {}
        self.labels_by_name: Mapping[str, tuple[str, ...]] = {READBACK_AGE: ("group", "node")}
        registry.register(self)

    def set_machine(self, group: str, node: str, observed_at: datetime | None, clock: Callable[[], datetime]) -> None:
        """Record the last good readback (None: never read back, or no BMC: the series is removed)."""
        with self._lock:
            if observed_at is None:
                self._table.pop((group, node), None)
            else:
                self._table[(group, node)] = (observed_at, clock)

    def forget(self, group: str, node: str) -> None:
        with self._lock:
            self._table.pop((group, node), None)

    def clear(self) -> None:
        with self._lock:
            self._table.clear()

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            rows = list(self._table.items())
        family = self._family()
        readings: dict[int, datetime] = {}  # one reading per clock per scrape
        for (group, node), (observed_at, clock) in rows:
            now = readings.get(id(clock)) or readings.setdefault(id(clock), clock())
            family.add_metric((group, node), max(0.0, (now - observed_at).total_seconds()))
        return [family]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            READBACK_AGE,
            "Seconds since a machine's power state was last read back successfully (machines whose spec.power "
            "names a BMC; a growing value means the readback is failing, see the PowerReadbackFailing condition).",
            labels=self.labels_by_name[READBACK_AGE],
        )


READBACK_AGES = ReadbackAgeCollector(REGISTRY)
LABEL_NAMES.update(READBACK_AGES.labels_by_name)
