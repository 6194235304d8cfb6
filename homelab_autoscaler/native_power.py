"""The operator's native power port: the drivers' executor, its Secret reader and its metrics, put together.

The composition root owns this because it is the only place allowed to know both sides: `power_drivers` (the
executor and the drivers) and `kubeapi` (the Secret reader). Each leadership term builds its own executor with the
term's API client and report function (`Operator(power=...)`), and closes it when the term ends, answering what
was still queued. The metrics are registered once per process on the operator's registry.
"""

from __future__ import annotations

from kubernetes.client import ApiClient

from actors import metrics
from homelab_autoscaler.operator import PowerReport
from kubeapi.kube_client import KubeApi
from kubeapi.secret_reader import KubeSecretReader
from power_drivers.executor import PowerExecutor
from power_drivers.metrics import PowerMetrics

POWER_METRICS = PowerMetrics(metrics.REGISTRY)
metrics.LABEL_NAMES.update(
    {
        f"{metrics.PREFIX}power_operations": ("driver", "action", "outcome"),
        f"{metrics.PREFIX}power_failures": ("driver", "reason"),
        f"{metrics.PREFIX}power_operation_seconds": ("driver", "action"),
    }
)
"""prometheus_client keeps a metric's label names to itself; the reference docs read them from here."""


def native_power_port(api_client: ApiClient, report: PowerReport) -> PowerExecutor:
    """One term's power port: the drivers run on the executor's workers and read Secrets through `api_client`."""
    return PowerExecutor(report, KubeSecretReader(KubeApi(api_client)), metrics=POWER_METRICS)
