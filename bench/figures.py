"""Small measuring helpers every benchmark prints its figures with: process memory and percentiles."""

from __future__ import annotations

from collections.abc import Sequence


def rss_mib(field_name: str = "VmRSS") -> float:
    """This process's resident memory in MiB from /proc/self/status (`VmHWM` for the peak); NaN elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field_name}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The sample at `fraction` (0.99 for p99) of the sorted samples (nearest rank, no interpolation)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
