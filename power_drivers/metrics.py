"""The power drivers' Prometheus metrics, on whatever registry the operator exports.

Self-contained (this package may not import `actors.metrics`): the composition root builds one `PowerMetrics` on
the operator's registry and hands it to the executor; tests build theirs on a private registry. Labels are the
driver, the action and the outcome or failure reason: a handful of values each, never the machine (5000 machines
would make 5000 times the series; the per-machine readback age belongs to the node's status metrics).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from actors.power_port import PowerAction, PowerFailure
from schemas.power import DriverName

PREFIX: Final = "homelab_autoscaler_"
NO_DRIVER: Final = "none"
# One try against a device on the LAN: a Wake-on-LAN packet takes microseconds, a BMC tens of milliseconds to
# seconds, an unanswering one the whole per-try timeout.
LATENCY_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PowerMetrics:
    """Operations by outcome, failed tries by reason, and try latency, per driver."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.operations = Counter(
            f"{PREFIX}power_operations",
            "Native power requests answered, by driver, action and outcome (succeeded or failed, after retries).",
            ["driver", "action", "outcome"],
            registry=registry,
        )
        self.failures = Counter(
            f"{PREFIX}power_failures",
            "Failed tries of native power operations, by driver and reason (a retried try counts each time).",
            ["driver", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}power_operation_seconds",
            "Duration of one try of a native power operation, by driver and action.",
            ["driver", "action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def answered(self, driver: DriverName | None, action: PowerAction, succeeded: bool) -> None:
        self.operations.labels(driver or NO_DRIVER, action.value, "succeeded" if succeeded else "failed").inc()

    def tried(
        self, driver: DriverName | None, action: PowerAction, seconds: float, failure: PowerFailure | None
    ) -> None:
        self.latency.labels(driver or NO_DRIVER, action.value).observe(seconds)
        if failure is not None:
            self.failures.labels(driver or NO_DRIVER, failure.value).inc()
