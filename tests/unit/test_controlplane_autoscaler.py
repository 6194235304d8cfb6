"""Reading Cluster Autoscaler's klog lines: when each was written (what bench/scale_up.py times CA's steps by)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sim.controlplane.autoscaler import klog_time


@pytest.mark.parametrize(
    ("line", "want"),
    [
        pytest.param(
            "I1206 07:37:00.799185   18931 orchestrator.go:177] Final scale-up plan: [{homelab/workers 0->2}]",
            datetime(2026, 12, 6, 7, 37, 0, 799185, tzinfo=UTC),
            id="info",
        ),
        pytest.param(
            "W0101 23:59:59.000001   1 clusterstate.go:404] Disabling scale-up for node group homelab/workers",
            datetime(2026, 1, 1, 23, 59, 59, 1, tzinfo=UTC),
            id="warning",
        ),
        pytest.param("==== 2026-12-06T07:36:53.920+00:00 starting cluster-autoscaler", None, id="our-start-marker"),
        pytest.param("E1206 7:37:00.1 short", None, id="not-klog-shaped"),
        pytest.param("", None, id="empty"),
    ],
)
def test_klog_time(line: str, want: datetime | None) -> None:
    assert klog_time(line, year=2026) == want
