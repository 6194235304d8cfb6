"""A homelab driven by the real Cluster Autoscaler on a real control plane: the harness of tests/e2e/autoscaler.

Everything is real but the machines: etcd, kube-apiserver, kube-controller-manager and kube-scheduler from
`HOMELAB_K8S_BIN` (one control plane per scenario, since CA looks at every Node and pod of its cluster), the
operator as the `homelab-autoscaler run` process a user starts (so a scenario can SIGKILL it), and
`cluster-autoscaler` (externalgrpc build) dialling its gRPC port. The machine simulator plays the machines and
their kubelets, including the one always-on machine that runs the power Jobs' pods and never powers off.

What every scenario checks afterwards (`assert_ca_was_content`): CA's own log has no provider error and removed no
unregistered node, its `cluster-autoscaler-status` ConfigMap is there, and no group's target was ever seen above its
maxSize (a sampler reads the operator's NodeGroupTargetSize the way CA does, several times a second).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import grpc
import pytest
import yaml
from e2e_support import ALWAYS_ON_LABEL, SIMULATED_LABEL, SIMULATED_TAINT, JobRecorder

from kubeapi.kube_client import KubeApi, KubeError, new_api_client
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.node import OperationKind, default_provider_id
from sim.controlplane import ControlPlane, free_ports
from sim.controlplane.autoscaler import ClusterAutoscaler, OperatorProcess
from sim.machines import MachineFailures, MachineSimulator, SimulatedMachine
from sim.machines.native_power import NativePower
from sim.seed import install_crds
from tests.support.polling import wait_for

NAMESPACE: Final = "homelab"
CA_NAMESPACE: Final = "kube-system"
STATUS_CONFIGMAP: Final = "cluster-autoscaler-status"
POOL_LABEL: Final = "homelab.example/pool"
ALWAYS_ON: Final = "always-on"
STEP_SECONDS: Final = 90.0
"""The longest wait for one step: CA decides in a scan or two, a boot takes a second, a silent Node is NotReady
in 10 s."""
NOT_FOUND: Final = 404
CAPACITY: Final = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}
JOB_TEMPLATE_IMAGE: Final = "busybox:1.36"

PROVIDER_ERROR: Final = re.compile(r"^[EW]\d{4} .*(?:gRPC call|externalgrpc|rpc error)")
"""A warning or error line of CA's (klog `E1206`, `W1206`) about a call to us."""
UNREGISTERED_REMOVED: Final = re.compile(r"Remov(?:ed|ing) unregistered node")


@dataclass
class ScaledGroup:
    """What a scenario declared of a Group, to check CA's view against."""

    name: str
    max_size: int
    min_size: int = 0


@dataclass
class AutoscaledHomelab:
    """One scenario: a control plane, its always-on machine, the Groups and machines, the operator and CA."""

    control_plane: ControlPlane
    directory: Path
    machines: dict[str, SimulatedMachine] = field(default_factory=dict)
    groups: dict[str, ScaledGroup] = field(default_factory=dict)
    simulator: MachineSimulator | None = None
    operator: OperatorProcess | None = None
    autoscaler: ClusterAutoscaler | None = None
    native_machines: dict[str, int] = field(default_factory=dict)
    """Machines powered natively (`add_native_machine`), with their priorities; their Node resources are written
    by `start_native_power`, once their BMCs' ports are known."""
    native_power: NativePower | None = None

    def __post_init__(self) -> None:
        self.api_client = new_api_client(self.control_plane.kubeconfig)
        self.rest = KubeApi(self.api_client)
        self.grpc_port, self.metrics_port = free_ports(2)
        self._sampler = TargetSampler(self.grpc_port)
        self.recorder: JobRecorder | None = None
        self.machines[ALWAYS_ON] = SimulatedMachine(
            name=ALWAYS_ON, namespace=NAMESPACE, kubernetes_node_name=ALWAYS_ON, boot_seconds=0.0,
            capacity={"cpu": "8", "memory": "16Gi", "pods": "110"}, labels={ALWAYS_ON_LABEL: "true"},
            failures=MachineFailures(power_on_at=0.0),
        )

    # --- the homelab -------------------------------------------------------------------------------------------

    def open(self) -> None:
        self.rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        install_crds(self.api_client, timeout=STEP_SECONDS)
        self.recorder = JobRecorder(self.rest, NAMESPACE, {})
        self.recorder.start(STEP_SECONDS)

    def add_group(self, name: str, *, max_size: int, min_size: int = 0, **spec: Any) -> None:
        """A Group whose template fits the scenario's pods: pool label, the simulated taint, 4 CPUs."""
        body = {
            "minSize": min_size,
            "maxSize": max_size,
            "bootTimeout": "90s",
            "shutdownTimeout": "60s",
            # Cooling down longer than CA backs a group off (20 s), so its next try picks another machine.
            "failurePolicy": {"quarantineAfter": 3, "cooldownBase": "60s", "cooldownCap": "120s", "shutdownRetries": 1},
            "nodeLabels": {POOL_LABEL: name},
            "nodeTaints": [SIMULATED_TAINT],
            "template": {"capacity": dict(CAPACITY)},
            **spec,
        }
        self.rest.post(
            f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/groups",
            {"apiVersion": GROUP_VERSION, "kind": "Group", "metadata": {"name": name, "namespace": NAMESPACE},
             "spec": body},
        )
        self.groups[name] = ScaledGroup(name, max_size, min_size)

    def add_machine(
        self, name: str, group: str, *, priority: int = 0, hourly_price: str | None = None,
        failures: MachineFailures | None = None, boot_seconds: float = 1.0, shutdown_seconds: float = 0.5,
    ) -> None:
        self.machines[name] = SimulatedMachine(
            name=name, namespace=NAMESPACE, group=group, kubernetes_node_name=name, boot_seconds=boot_seconds,
            shutdown_seconds=shutdown_seconds, capacity=dict(CAPACITY), labels={SIMULATED_LABEL: "true"},
            failures=failures or MachineFailures(),
        )
        job = {
            "image": JOB_TEMPLATE_IMAGE,
            "command": ["sh", "-c", "echo power command sent"],
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            # Pinned to the machine that never powers off, as docs/operations show: a power Job that could land on
            # a machine of a scaled group would make CA scale up for the power Job itself.
            "nodeSelector": {ALWAYS_ON_LABEL: "true"},
        }
        spec: dict[str, Any] = {"priority": priority, "startupJob": job, "shutdownJob": job}
        if hourly_price is not None:
            spec["pricing"] = {"hourlyPrice": hourly_price}
        self._post_node(name, group, spec)

    def add_native_machine(self, name: str, group: str, *, priority: int = 0, boot_seconds: float = 1.0) -> None:
        """A machine switched by the operator's own drivers: Wake-on-LAN on, its IPMI BMC off and read back (both
        on loopback, `start_native_power`), instead of power Jobs."""
        self.machines[name] = SimulatedMachine(
            name=name, namespace=NAMESPACE, group=group, kubernetes_node_name=name, boot_seconds=boot_seconds,
            shutdown_seconds=0.5, capacity=dict(CAPACITY), labels={SIMULATED_LABEL: "true"},
        )
        self.native_machines[name] = priority

    def start_native_power(self) -> NativePower:
        """After `start_simulator`: the native machines' Wake-on-LAN listener and BMCs, the BMC credentials Secret
        on the API server, and their Node resources pointing at both."""
        assert self.simulator is not None, "start_simulator() first"
        self.native_power = NativePower([self.simulator.machine(name, NAMESPACE) for name in self.native_machines])
        self.native_power.start()
        self.native_power.create_credentials_secret(self.rest, NAMESPACE)
        for name, priority in self.native_machines.items():
            power = self.native_power.spec_for(name, NAMESPACE)
            self._post_node(name, self.machines[name].group, {"priority": priority, "power": power})
        return self.native_power

    def _post_node(self, name: str, group: str, spec: dict[str, Any]) -> None:
        self.rest.post(
            f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes",
            {"apiVersion": GROUP_VERSION, "kind": "Node",
             "metadata": {"name": name, "namespace": NAMESPACE, "labels": {label_names.GROUP_LABEL: group}},
             "spec": spec},
        )

    def record_off_since(self, machine: str, since: datetime) -> None:
        """Write the machine's status as off since `since`, as an operator that saw it go off then would have."""
        status = {"state": "Shutdown", "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.rest.patch(f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes/{machine}/status", {"status": status})

    def start_simulator(self) -> MachineSimulator:
        self.simulator = MachineSimulator(
            self.api_client, self.machines.values(), namespaces=[NAMESPACE], run_pods=True, heartbeat_seconds=2.0,
            job_seconds=0.5,
        )
        self.simulator.start(sync_timeout=STEP_SECONDS)
        wait_for(lambda: self._schedulable(ALWAYS_ON), STEP_SECONDS, "the always-on machine to be schedulable")
        return self.simulator

    def start_operator(self) -> OperatorProcess:
        self.operator = OperatorProcess(
            self.control_plane.kubeconfig, self.directory, namespace=NAMESPACE, grpc_port=self.grpc_port,
            metrics_port=self.metrics_port,
        )
        self.operator.start()
        self._sampler.watch(self.groups)
        return self.operator

    def start_autoscaler(self, *args: str) -> ClusterAutoscaler:
        binary = self.control_plane.binaries.require("cluster-autoscaler")
        self.autoscaler = ClusterAutoscaler(
            binary, self.control_plane.kubeconfig, self.directory, grpc_port=self.grpc_port, args=args
        )
        self.autoscaler.start()
        return self.autoscaler

    def add_workload(
        self, name: str, *, replicas: int, node_selector: dict[str, str], cpu: str = "3",
    ) -> None:
        """A Deployment whose pods each need most of one machine, tolerating the simulated machines' taint."""
        labels = {"app": name}
        pod_spec = {
            "nodeSelector": node_selector,
            "tolerations": [{"key": SIMULATED_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                            "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}],
        }
        self.rest.post(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
             "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels}, "spec": pod_spec}}},
        )

    def scale_workload(self, name: str, replicas: int) -> None:
        self.rest.patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/scale", {"spec": {"replicas": replicas}},
        )

    # --- looking -------------------------------------------------------------------------------------------------

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = STEP_SECONDS) -> Any:
        def checked() -> Any:
            self._check_processes()
            return condition()

        return wait_for(checked, timeout, what)

    def pods(self, app: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        return list(self.rest.get(path, {"labelSelector": f"app={app}"}).get("items") or ())

    def bound_nodes(self, app: str) -> list[str]:
        """The Nodes the workload's pods are bound to (one entry per bound pod), sorted."""
        return sorted(str(pod["spec"]["nodeName"]) for pod in self.pods(app) if pod["spec"].get("nodeName"))

    def kube_node(self, name: str) -> dict[str, Any] | None:
        try:
            return self.rest.get(f"/api/v1/nodes/{name}")
        except KubeError as error:
            if error.status == NOT_FOUND:
                return None
            raise

    def state(self, machine: str) -> str | None:
        status = self.rest.get(f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes/{machine}").get("status") or {}
        return status.get("state")

    def status(self, machine: str) -> dict[str, Any]:
        return dict(self.rest.get(f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes/{machine}").get("status")
                    or {})

    def jobs_per_machine(self, operation: OperationKind) -> dict[str, int]:
        """How many power Jobs of `operation` were ever created for each machine (none: not listed)."""
        assert self.recorder is not None
        counts: dict[str, int] = {}
        for machine in self.machines:
            created = self.recorder.created(machine, operation)
            if created:
                counts[machine] = len(created)
        return counts

    def ca_status(self) -> dict[str, Any] | None:
        """CA's `cluster-autoscaler-status` ConfigMap, its `status` key parsed (None until CA wrote it)."""
        try:
            configmap = self.rest.get(f"/api/v1/namespaces/{CA_NAMESPACE}/configmaps/{STATUS_CONFIGMAP}")
        except KubeError as error:
            if error.status == NOT_FOUND:
                return None
            raise
        text = (configmap.get("data") or {}).get("status", "")
        parsed = yaml.safe_load(text) if text else None
        return parsed if isinstance(parsed, dict) else {"raw": text}

    def ca_group_status(self, group: str) -> dict[str, Any] | None:
        status = self.ca_status() or {}
        for entry in status.get("nodeGroups") or ():
            if entry.get("name") == f"{NAMESPACE}/{group}":
                return dict(entry)
        return None

    def instance_id(self, machine: str) -> str:
        return default_provider_id(NAMESPACE, machine)

    def highest_target(self, group: str) -> int:
        return self._sampler.highest(f"{NAMESPACE}/{group}")

    # --- the checks every scenario ends with -----------------------------------------------------------------

    def assert_ca_was_content(
        self, *, allowed_provider_errors: tuple[str, ...] = (), unregistered_removed: bool = False
    ) -> None:
        """CA's own view: no provider error (but those allowed), no unregistered node removed (unless the scenario
        is about one), its status ConfigMap lists every group with its maxSize, no target ever above maxSize."""
        assert self.autoscaler is not None, "the scenario ran CA"
        errors = [line for line in self.autoscaler.lines(PROVIDER_ERROR)
                  if not any(allowed in line for allowed in allowed_provider_errors)]
        assert errors == [], "CA logged provider errors:\n" + "\n".join(errors[:20])
        removed = self.autoscaler.lines(UNREGISTERED_REMOVED)
        assert bool(removed) == unregistered_removed, "CA removed unregistered nodes:\n" + "\n".join(removed)
        status = self.ca_status()
        assert status is not None, "CA writes its status ConfigMap"
        for name, group in self.groups.items():
            assert self._sampler.sampled(f"{NAMESPACE}/{name}"), f"the target of group {name} was never read"
            assert self.highest_target(name) <= group.max_size, f"group {name} went past maxSize {group.max_size}"
            entry = self.ca_group_status(name)
            assert entry is not None, f"CA's status lists group {name}: {status}"
            assert entry["health"]["maxSize"] == group.max_size, f"CA's view of group {name}: {entry}"

    # --- cleanup -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        errors: list[BaseException] = []
        for stop in (
            lambda: self.autoscaler and self.autoscaler.stop(),
            self._sampler.stop,
            lambda: self.operator and self.operator.stop(),
            lambda: self.simulator and self.simulator.stop(),
            lambda: self.native_power and self.native_power.stop(),
            lambda: self.recorder and self.recorder.stop(),
            self.api_client.close,
        ):
            try:
                stop()
            except Exception as error:  # every part stops; the errors are raised together
                errors.append(error)
        if errors:
            raise ExceptionGroup("stopping the autoscaled homelab", errors)

    def process_tails(self) -> str:
        parts = []
        for process in (self.operator and self.operator.process, self.autoscaler and self.autoscaler.process):
            if process is not None:
                parts.append(f"== {process.name} (last lines)\n{process.tail(60)}")
        return "\n".join(parts)

    def _check_processes(self) -> None:
        for process in (self.operator and self.operator.process, self.autoscaler and self.autoscaler.process):
            if process is not None and process.returncode is not None and process.returncode != -9:
                pytest.fail(f"{process.name} exited with {process.returncode}:\n{process.tail(60)}")

    def _schedulable(self, name: str) -> bool:
        node = self.kube_node(name)
        if node is None:
            return False
        taints = node["spec"].get("taints") or ()
        return not any(taint.get("key") == "node.kubernetes.io/not-ready" for taint in taints)


class TargetSampler:
    """Reads every group's NodeGroupTargetSize over gRPC several times a second and keeps the highest seen."""

    def __init__(self, grpc_port: int, interval: float = 0.2) -> None:
        self._port = grpc_port
        self._interval = interval
        self._highest: dict[str, int] = {}
        self._groups: list[str] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, groups: dict[str, ScaledGroup]) -> None:
        self._groups = [f"{NAMESPACE}/{name}" for name in groups]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ca-target-sampler", daemon=True)
            self._thread.start()

    def highest(self, group_id: str) -> int:
        return self._highest.get(group_id, 0)

    def sampled(self, group_id: str) -> bool:
        """Whether the group's target was read at least once (else `highest` would say 0 for nothing)."""
        return group_id in self._highest

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{self._port}")
        stub = externalgrpc_grpc.CloudProviderStub(channel)
        try:
            while not self._stopping.wait(self._interval):
                for group_id in self._groups:
                    try:
                        answer = stub.NodeGroupTargetSize(
                            externalgrpc.NodeGroupTargetSizeRequest(id=group_id), timeout=1.0
                        )
                    except grpc.RpcError:
                        continue  # the operator is down (a kill scenario) or starting
                    self._highest[group_id] = max(self._highest.get(group_id, 0), answer.targetSize)
        finally:
            channel.close()

