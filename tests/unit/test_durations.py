"""The figures over recorded boot and power-off durations: percentiles for `status`, and the provisioning time
`maxNodeProvisionTime: auto` tells Cluster Autoscaler."""

from __future__ import annotations

import pytest

from actors.fsm.durations import DurationSummary, learned_provision_seconds, percentile, summarize


@pytest.mark.parametrize(
    ("boots", "expected"),
    [
        pytest.param([], None, id="no-boots-keeps-cas-default"),
        pytest.param([60.0] * 4, None, id="four-boots-are-too-few"),
        pytest.param([100.0, 90.0, 110.0, 95.0, 400.0], 600.0, id="the-slowest-of-few-times-1.5"),
        pytest.param([100.0] * 99 + [2000.0], 150.0, id="one-in-a-hundred-is-ignored"),
        pytest.param([30.0] * 5, 120.0, id="never-below-the-floor"),
        pytest.param([3000.0] * 5, 3600.0, id="never-above-the-ceiling"),
    ],
)
def test_learned_provision_time(boots: list[float], expected: float | None) -> None:
    assert learned_provision_seconds(boots) == expected


def test_percentiles_are_boots_that_happened() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 20.0
    assert percentile([], 0.5) is None
    assert summarize([3.0, 1.0, 2.0]) == DurationSummary(count=3, p50=2.0, p90=3.0, max=3.0)
    assert summarize([]) is None
