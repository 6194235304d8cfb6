"""The operator on a homelab of the fake API: running operators and the CA-side gRPC client.

Shared by the operator and reliability integration tests; the e2e harness (tests/e2e/e2e_support.py) reuses the
running operator and the gRPC instance statuses. Every test gets its own `FakeApiServer` (it starts in
milliseconds), so Kubernetes Nodes, which are cluster-scoped, never collide between tests. Everything the operator
does goes over real HTTP through the official client and its kubeconfig; the tests look at the results in the
fake's store (what `kubectl get` would show) and through a real gRPC channel, the way Cluster Autoscaler would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import grpc
from kubernetes import client as kube_client

from homelab_autoscaler.operator import Operator, PowerPortFactory
from homelab_autoscaler.settings import Settings
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.crds import render_crds
from sim.fakeapi import FakeApiServer
from sim.machines import MachineFailures, MachineSimulator, SimulatedMachine
from tests.support.polling import wait_for

NAMESPACE: Final = "homelab"
OPERATOR_NAMESPACE: Final = "homelab-autoscaler"
GROUP: Final = "workers"
GROUP_ID: Final = f"{NAMESPACE}/{GROUP}"
WAIT: Final = 10.0

RUNNING: Final = externalgrpc.InstanceStatus.instanceRunning
CREATING: Final = externalgrpc.InstanceStatus.instanceCreating
DELETING: Final = externalgrpc.InstanceStatus.instanceDeleting


def job_template() -> dict[str, Any]:
    """A power Job pinned to a machine that stays on, as the examples pin theirs (`status` warns otherwise)."""
    return {
        "image": "busybox:1.36",
        "command": ["sh", "-c", "echo power"],
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
    }


def group_manifest(name: str = GROUP, *, max_size: int = 3, **spec: Any) -> dict[str, Any]:
    """A Group with short timeouts (tests wait seconds, not minutes) unless `spec` says otherwise."""
    body: dict[str, Any] = {
        "maxSize": max_size,
        "bootTimeout": "20s",
        "shutdownTimeout": "20s",
        "failurePolicy": {"quarantineAfter": 2, "cooldownBase": "1s", "cooldownCap": "2s", "shutdownRetries": 1},
        "nodeLabels": {"homelab.example/pool": name},
    }
    body.update(spec)
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Group",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


def machine_manifest(name: str, group: str = GROUP, **spec: Any) -> dict[str, Any]:
    """A Node resource powered by Jobs, or natively when `spec` has `power` (a Node sets one way, never both)."""
    jobs = {} if "power" in spec else {"startupJob": job_template(), "shutdownJob": job_template()}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {label_names.GROUP_LABEL: group}},
        "spec": {**jobs, **spec},
    }


@dataclass
class RunningOperator:
    """An operator started by a test, with a gRPC client the way Cluster Autoscaler dials it."""

    operator: Operator
    channel: grpc.Channel
    stub: externalgrpc_grpc.CloudProviderStub

    def nodes(self, group_id: str = GROUP_ID) -> list[externalgrpc.Instance]:
        return list(self.stub.NodeGroupNodes(externalgrpc.NodeGroupNodesRequest(id=group_id)).instances)

    def target_size(self, group_id: str = GROUP_ID) -> int:
        return int(self.stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id=group_id)).targetSize)

    def increase_size(self, delta: int = 1, group_id: str = GROUP_ID) -> None:
        self.stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id=group_id, delta=delta))

    def delete_nodes(self, *instance_ids: str, group_id: str = GROUP_ID, names: Iterable[str] = ()) -> None:
        """DeleteNodes as CA sends it: registered Nodes by name and providerID, stand-ins named by their id."""
        given = list(names)
        nodes = [
            externalgrpc.ExternalGrpcNode(
                name=given[index] if index < len(given) else instance_id, providerID=instance_id
            )
            for index, instance_id in enumerate(instance_ids)
        ]
        self.stub.NodeGroupDeleteNodes(externalgrpc.NodeGroupDeleteNodesRequest(id=group_id, nodes=nodes))

    def instance(self, instance_id: str, group_id: str = GROUP_ID) -> externalgrpc.Instance | None:
        return next((item for item in self.nodes(group_id) if item.id == instance_id), None)


@dataclass
class Homelab:
    """One test's cluster: the fake API (CRDs installed), its kubeconfig, simulated machines and operators."""

    fake: FakeApiServer
    directory: Path
    api_client: kube_client.ApiClient
    requests: RequestLog
    """Every request that reached the fake API since the homelab was made."""
    simulators: list[MachineSimulator] = field(default_factory=list)
    operators: list[RunningOperator] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    # --- writing the homelab ----------------------------------------------------------------------------------

    def add_group(self, name: str = GROUP, **spec: Any) -> dict[str, Any]:
        return self.fake.store.create(GROUP_VERSION, "groups", group_manifest(name, **spec), NAMESPACE)

    def add_machine(self, name: str, group: str = GROUP, **spec: Any) -> dict[str, Any]:
        return self.fake.store.create(GROUP_VERSION, "nodes", machine_manifest(name, group, **spec), NAMESPACE)

    def simulate(
        self,
        *machines: SimulatedMachine,
        job_seconds: float = 0.05,
        heartbeat_seconds: float = 0.5,
    ) -> MachineSimulator:
        simulator = MachineSimulator(
            self.api_client,
            machines,
            namespaces=[NAMESPACE],
            complete_jobs=True,
            mark_not_ready=True,
            job_seconds=job_seconds,
            heartbeat_seconds=heartbeat_seconds,
        )
        simulator.start()
        self.simulators.append(simulator)
        return simulator

    # --- operators --------------------------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kubeconfig": self.kubeconfig,
            "namespace": OPERATOR_NAMESPACE,
            "watch_namespace": NAMESPACE,
            "grpc_address": "127.0.0.1:0",
            "metrics_address": "127.0.0.1:0",
            "webhook_address": "",
            "shutdown_grace_seconds": 5.0,
            "webhook_cert_dir": self.directory / f"certs-{len(self.operators)}",
        }
        values.update(overrides)
        return Settings.from_flags(**values)

    def start_operator(
        self,
        *,
        wait_acting: bool = True,
        clock: Callable[[], datetime] | None = None,
        power: PowerPortFactory | None = None,
        **overrides: Any,
    ) -> RunningOperator:
        """An operator on this homelab; `clock` replaces its clock (a test that compresses time moves it), `power`
        builds its power port (machines with spec.power)."""
        settings = self.settings(**overrides)
        operator = Operator(settings, power=power) if clock is None else Operator(settings, clock=clock, power=power)
        operator.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}")
        running = RunningOperator(operator, channel, externalgrpc_grpc.CloudProviderStub(channel))
        self.operators.append(running)
        if wait_acting:
            wait_for(lambda: operator.wait_acting(0.1), what="the operator to act")
        return running

    def stop_operator(self, running: RunningOperator, *, kill: bool = False) -> None:
        running.channel.close()
        if kill:
            running.operator.kill()
        else:
            running.operator.stop()
        if running in self.operators:
            self.operators.remove(running)

    def close(self) -> None:
        """Stop every operator and simulator, each even when stopping another one failed."""
        stops: list[Callable[[], None]] = [partial(self.stop_operator, running) for running in list(self.operators)]
        stops += [simulator.stop for simulator in self.simulators]
        failures: list[Exception] = []
        for stop in stops:
            try:
                stop()
            except Exception as error:  # reported together below, once everything has been asked to stop
                failures.append(error)
        if failures:
            raise ExceptionGroup("stopping the homelab failed", failures)

    # --- looking at the cluster -------------------------------------------------------------------------------

    def machine(self, name: str) -> dict[str, Any]:
        return self.fake.store.get(GROUP_VERSION, "nodes", name, NAMESPACE)

    def state(self, name: str) -> str | None:
        state = (self.machine(name).get("status") or {}).get("state")
        return str(state) if state is not None else None

    def wait_state(self, name: str, state: str, timeout: float = WAIT) -> dict[str, Any]:
        wait_for(lambda: self.state(name) == state, timeout, f"{name} to be {state} (is {self.state(name)})")
        return self.machine(name)

    def jobs(self, machine: str | None = None) -> list[dict[str, Any]]:
        selector = f"{label_names.MANAGED_BY_LABEL}={label_names.MANAGED_BY_VALUE}"
        if machine is not None:
            selector += f",{label_names.MACHINE_LABEL}={machine}"
        return self.fake.store.list("batch/v1", "jobs", NAMESPACE, label_selector=selector)

    def job_names(self, machine: str | None = None, operation: str | None = None) -> list[str]:
        return sorted(
            job["metadata"]["name"]
            for job in self.jobs(machine)
            if operation is None or job["metadata"]["labels"][label_names.OPERATION_LABEL] == operation
        )

    def created_jobs(self, machine: str | None = None) -> list[str]:
        """Names of every power Job ever POSTed (for the machine), even ones deleted since; each name once."""
        names = set()
        for _method, _target, body in self.requests.matching("POST", "/apis/batch/v1/namespaces/"):
            job = json.loads(body)
            if machine is None or job["metadata"]["labels"].get(label_names.MACHINE_LABEL) == machine:
                names.add(str(job["metadata"]["name"]))
        return sorted(names)

    def kube_node(self, name: str) -> dict[str, Any] | None:
        found = self.fake.store.list("v1", "nodes", field_selector=f"metadata.name={name}")
        return found[0] if found else None

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.fake.store.list("v1", "events", NAMESPACE, field_selector=f"involvedObject.name={name}")

    def event_reasons(self, name: str) -> set[str]:
        return {str(event.get("reason")) for event in self.events(name)}


def simulated(
    name: str, *, boot_seconds: float = 0.2, shutdown_seconds: float = 0.1, **failures: Any
) -> SimulatedMachine:
    """A simulated machine of the test group, quick to boot, with the given standing faults."""
    return SimulatedMachine(
        name=name,
        namespace=NAMESPACE,
        group=GROUP,
        boot_seconds=boot_seconds,
        shutdown_seconds=shutdown_seconds,
        failures=MachineFailures(**failures),
    )


@dataclass
class RequestLog:
    """Requests that reached the fake API, recorded by an `on_request` hook (method, path, body)."""

    entries: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, method: str, target: str, body: bytes) -> None:
        with self.lock:
            self.entries.append((method, target, body))

    def matching(self, method: str, fragment: str) -> list[tuple[str, str, bytes]]:
        with self.lock:
            return [entry for entry in self.entries if entry[0] == method and fragment in entry[1]]


def new_homelab(directory: Path) -> Iterator[Homelab]:
    """A started fake with our CRDs and both namespaces; stopped (with everything on it) afterwards."""
    fake = FakeApiServer(host="127.0.0.1", port=0, bookmark_interval=0.2)
    fake.start()
    try:
        for crd in render_crds():
            fake.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
        for namespace in (NAMESPACE, OPERATOR_NAMESPACE):
            fake.store.create("v1", "namespaces", {"metadata": {"name": namespace}})
        fake.write_kubeconfig(directory / "kubeconfig")
        configuration = kube_client.Configuration()
        configuration.host = fake.url
        with kube_client.ApiClient(configuration) as api_client:
            requests = RequestLog()
            fake.on_request.append(requests)
            homelab = Homelab(fake, directory, api_client, requests)
            try:
                yield homelab
            finally:
                homelab.close()
    finally:
        fake.stop()
