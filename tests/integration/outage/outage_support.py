"""A small homelab on a real control plane whose kube-apiserver a test kills and restarts, with the operator as
the `homelab-autoscaler run` process a user starts, so its log file is exactly what a person would read.

Only etcd and kube-apiserver run: the machine simulator plays the Job controller (`complete_jobs`) and the
machines, which keeps each start to a few seconds on a 2-core machine. The operator logs as text at INFO, the
default, which is the level whose lines the outage tests count.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import pytest

from kubeapi.kube_client import KubeApi, KubeError, new_api_client
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from sim.controlplane import ControlPlane, free_ports
from sim.controlplane.autoscaler import OperatorProcess
from sim.machines import MachineSimulator, SimulatedMachine
from sim.seed import install_crds
from tests.support.control_plane import show_on_failure
from tests.support.polling import wait_for

NAMESPACE: Final = "homelab"
GROUP: Final = "rack"
GROUP_ID: Final = f"{NAMESPACE}/{GROUP}"
API_SERVER: Final = "kube-apiserver"
CRD_DIRECTORY: Final = Path(__file__).resolve().parents[3] / "manifests" / "crds"
LOG_LINE: Final = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")
STEP_SECONDS: Final = 30.0


@dataclass(frozen=True)
class LogLine:
    level: str
    logger: str
    message: str


def parse_log(text: str) -> list[LogLine]:
    """The operator's text log as records; continuation lines (tracebacks) are attached to nothing and skipped."""
    lines = []
    for raw in text.splitlines():
        match = LOG_LINE.match(raw)
        if match is not None:
            lines.append(LogLine(match["level"], match["logger"], match["message"]))
    return lines


class OutageHomelab:
    """One Group of machines on a real control plane, the simulator, and the operator as a process."""

    def __init__(self, control_plane: ControlPlane, directory: Path) -> None:
        self.control_plane = control_plane
        self.directory = directory
        self.api_client = new_api_client(control_plane.kubeconfig)
        self.rest = KubeApi(self.api_client)
        self.grpc_port, self.metrics_port = free_ports(2)
        self.machines: list[SimulatedMachine] = []
        self.simulator: MachineSimulator | None = None
        self.operator: OperatorProcess | None = None
        self._channel: grpc.Channel | None = None

    # --- setting up

    def open(self, machines: dict[str, int], boot_seconds: float) -> None:
        self.rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        install_crds(self.api_client, timeout=STEP_SECONDS)
        self.rest.post(
            f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/groups",
            {"apiVersion": GROUP_VERSION, "kind": "Group", "metadata": {"name": GROUP, "namespace": NAMESPACE},
             "spec": {"minSize": 0, "maxSize": len(machines), "bootTimeout": "120s", "shutdownTimeout": "60s"}},
        )
        job = {"image": "busybox:1.36", "command": ["sh", "-c", "true"], "backoffLimit": 0}
        for name, priority in machines.items():
            self.machines.append(SimulatedMachine(
                name=name, namespace=NAMESPACE, group=GROUP, kubernetes_node_name=name, boot_seconds=boot_seconds,
                shutdown_seconds=0.5,
            ))
            self.rest.post(
                f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes",
                {"apiVersion": GROUP_VERSION, "kind": "Node",
                 "metadata": {"name": name, "namespace": NAMESPACE, "labels": {label_names.GROUP_LABEL: GROUP}},
                 "spec": {"priority": priority, "startupJob": job, "shutdownJob": job}},
            )
        self.simulator = MachineSimulator(
            self.api_client, self.machines, namespaces=[NAMESPACE], complete_jobs=True, heartbeat_seconds=2.0,
            job_seconds=0.3,
        )
        self.simulator.start(sync_timeout=STEP_SECONDS)

    def add_webhook_configuration(self, port: int) -> None:
        """The ValidatingWebhookConfiguration an install has (manifests/50-webhook.yaml), calling the operator's
        webhook on this port by URL, as no Service routes to a process. `Ignore`: nothing here tests admission."""
        self.rest.post(
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": "homelab-autoscaler"},
             "webhooks": [{
                 "name": "validate.infra.homecluster.dev", "admissionReviewVersions": ["v1"],
                 "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 5,
                 "clientConfig": {"url": f"https://127.0.0.1:{port}/validate"},
                 "rules": [{"apiGroups": ["infra.homecluster.dev"], "apiVersions": ["v1alpha1"],
                            "operations": ["CREATE", "UPDATE"], "resources": ["groups", "nodes"],
                            "scope": "Namespaced"}],
             }]},
        )

    def start_operator(self, request: pytest.FixtureRequest, *extra_args: str) -> OperatorProcess:
        self.operator = OperatorProcess(
            self.control_plane.kubeconfig, self.directory, namespace=NAMESPACE, grpc_port=self.grpc_port,
            metrics_port=self.metrics_port, extra_args=extra_args,
        )
        operator = self.operator
        show_on_failure(request, "homelab-autoscaler log", lambda: operator.process.tail(60))
        operator.start(STEP_SECONDS)
        return operator

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self.operator is not None:
            self.operator.stop()
        if self.simulator is not None:
            self.simulator.stop()
        self.api_client.close()

    # --- acting as Cluster Autoscaler and as a person

    def increase_size(self, delta: int = 1, timeout: float = 10.0) -> grpc.StatusCode:
        """Ask for `delta` more machines over gRPC, as CA does; the status code of the answer."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        stub = externalgrpc_grpc.CloudProviderStub(self._channel)
        try:
            stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id=GROUP_ID, delta=delta),
                                       timeout=timeout)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]  # grpc's error is untyped
        return grpc.StatusCode.OK

    def log_offset(self) -> int:
        assert self.operator is not None
        path = self.operator.process.log_path
        return path.stat().st_size if path.exists() else 0

    def log_since(self, offset: int) -> list[LogLine]:
        assert self.operator is not None
        with self.operator.process.log_path.open("rb") as log:
            log.seek(offset)
            return parse_log(log.read().decode(errors="replace"))

    def raw_log_since(self, offset: int) -> str:
        assert self.operator is not None
        with self.operator.process.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def http(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5.0)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            return answer.status, answer.read().decode()
        finally:
            connection.close()

    def metric(self, name: str) -> float | None:
        _, text = self.http("/metrics")
        for line in text.splitlines():
            if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def machine_status(self, name: str) -> dict[str, Any]:
        node = self.rest.get(f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes/{name}")
        return dict(node.get("status") or {})

    def state(self, name: str) -> str:
        try:
            return str(self.machine_status(name).get("state") or "")
        except KubeError:
            return ""

    def startup_jobs(self, name: str) -> list[str]:
        answer = self.rest.get(
            f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
            {"labelSelector": f"{label_names.MACHINE_LABEL}={name}"},
        )
        return sorted(item["metadata"]["name"] for item in answer.get("items") or [])

    def events(self, reason: str) -> list[dict[str, Any]]:
        answer = self.rest.get(f"/api/v1/namespaces/{NAMESPACE}/events")
        return [event for event in answer.get("items") or [] if event.get("reason") == reason]

    def kill_api_server(self) -> float:
        self.control_plane.stop_component(API_SERVER, kill=True)
        return time.monotonic()

    def restart_api_server(self) -> None:
        self.control_plane.start_component(API_SERVER)

    def wait(self, condition: Any, what: str, timeout: float = STEP_SECONDS) -> Any:
        return wait_for(condition, timeout, what)


@contextmanager
def outage_homelab(control_plane: ControlPlane, directory: Path) -> Iterator[OutageHomelab]:
    homelab = OutageHomelab(control_plane, directory)
    try:
        yield homelab
    finally:
        homelab.close()
