"""Figures over the boot and power-off durations that each machine's status keeps: percentiles per group.

Separate from the state machine, which only records durations (`recent_boot_seconds`, `recent_shutdown_seconds`
in the Node status), because the figures are read by three consumers that must agree: `homelab-autoscaler status`
(p50, p90, max per group), the group actor (the learned provisioning time it publishes for Cluster Autoscaler) and
the documentation. The inputs are the durable statuses, so every figure survives an operator restart. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (`fraction` in (0, 1]); None when there are none. Pure.

    Nearest rank, not interpolation: the answer is always a duration that was observed, so with few boots the
    p99 is the slowest boot seen rather than a value between two boots.
    """
    if not values:
        return None
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class DurationSummary:
    """How long a group's machines took, over the durations their statuses keep."""

    count: int
    p50: float
    p90: float
    max: float


def summarize(values: Iterable[float]) -> DurationSummary | None:
    """p50, p90 and max of `values`; None when there are none. Pure."""
    ordered = sorted(values)
    if not ordered:
        return None
    p50, p90 = percentile(ordered, 0.5), percentile(ordered, 0.9)
    assert p50 is not None  # not empty
    assert p90 is not None
    return DurationSummary(len(ordered), p50, p90, ordered[-1])
