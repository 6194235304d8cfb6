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
from typing import Final


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


# --- the provisioning time Cluster Autoscaler is told (spec.autoscalingOptions.maxNodeProvisionTime: auto) ------

LEARNING_PERCENTILE: Final = 0.99
"""The boot the answer is based on: all but the slowest one in a hundred."""
SAFETY_FACTOR: Final = 1.5
"""Head room over that boot: a machine a little slower than any seen so far is still waited for."""
MIN_BOOTS: Final = 5
"""Boots a group must have recorded before its own figure replaces CA's default: one or two fast boots say little."""
FLOOR_SECONDS: Final = 120.0
"""Never less: the startup Job's pod must be scheduled and pull its image before the machine even powers on."""
CEILING_SECONDS: Final = 3600.0
"""Never more: a machine that has not registered within an hour is broken, whatever it did before."""


def learned_provision_seconds(boots: Iterable[float]) -> float | None:
    """How long CA should wait for a booting machine of a group whose recorded boots are `boots`. Pure.

    The group's p99 boot (nearest rank: a boot that happened) times `SAFETY_FACTOR`, within
    [`FLOOR_SECONDS`, `CEILING_SECONDS`]; None (CA keeps its own default) with fewer than `MIN_BOOTS` boots.
    """
    recorded = list(boots)
    if len(recorded) < MIN_BOOTS:
        return None
    slow = percentile(recorded, LEARNING_PERCENTILE)
    assert slow is not None  # MIN_BOOTS > 0
    return min(CEILING_SECONDS, max(FLOOR_SECONDS, round(slow * SAFETY_FACTOR, 3)))
