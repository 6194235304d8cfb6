"""The end-to-end harness: a cluster (real, or our fake started by the suite), and one homelab per scenario on it.

A plain module (conftest files are not importable by name). Everything goes through the API server a kubeconfig
names, never around it, so the same scenarios run against kind, k3d, k3s or `sim.fakeapi`: the operator runs
in-process with its own client, the machine simulator attaches as a plain client, and the tests read what
`kubectl get` would show. Cluster-scoped Kubernetes Nodes are named `<namespace>-<machine>` so scenarios never
collide, and each homelab deletes its namespace and its Nodes (and their Leases) when it is done.

The CA side (a gRPC client the way Cluster Autoscaler dials us) and the polling helper are shared with the operator
integration tests (tests/support/operator_homelab.py). The scenarios themselves are in scenarios.py; the harness
reads only the API, so Jobs are counted by a watch that sees every one ever created (a duplicate deleted again
would still be caught), and the fake's store and request log are reached through `Cluster.fake` where the suite
started it.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
import pytest
import yaml
from kubernetes import client as kube_client

from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import Settings
from kubeapi.kube_client import KubeApi, KubeError, new_api_client
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import API_GROUP, API_VERSION, GROUP_VERSION
from schemas import labels as label_names
from schemas.node import OperationKind, default_provider_id
from sim.fakeapi import FakeApiServer
from sim.machines import MachineFailures, MachineSimulator, SimulatedMachine
from sim.machines.jobs import PowerJob, job_selector, read_power_job
from sim.machines.manifests import LEASE_NAMESPACE
from sim.machines.watcher import JobWatcher
from tests.support.operator_homelab import CREATING, DELETING, RUNNING, RunningOperator
from tests.support.polling import wait_for

__all__ = ["CREATING", "DELETING", "RUNNING", "Cluster", "E2eHomelab", "Pace", "RunningOperator", "wait_for"]

REPOSITORY: Final = Path(__file__).resolve().parents[2]
CRD_DIRECTORY: Final = REPOSITORY / "manifests" / "crds"
FAKE_VERSION_MARK: Final = "-fakeapi"
"""`sim.fakeapi` reports a gitVersion like `v1.32.0-fakeapi`: an API server with no controllers behind it."""

GROUP: Final = "workers"
SIMULATED_LABEL: Final = "homelab.example/simulated"
"""On every simulated machine's Kubernetes Node (registered by its kubelet) and as the key of the Group's taint."""
POOL_LABEL: Final = "homelab.example/pool"
"""One of the Group's nodeLabels: the operator must put it on each member's Kubernetes Node."""
SIMULATED_TAINT: Final = {"key": SIMULATED_LABEL, "value": "true", "effect": "NoSchedule"}
"""The Group's nodeTaints: on a real cluster it keeps real pods (power Jobs, Deployments) off Nodes no kubelet
runs; DaemonSet pods that tolerate everything still land there and simply never start."""
ALWAYS_ON: Final = "always-on"
"""On a cluster with no kubelet, the simulated machine of each homelab that is always on and runs its power Jobs'
pods (the Jobs are pinned to it by nodeSelector, as a real homelab pins them to a machine that never powers off)."""
ALWAYS_ON_LABEL: Final = "homelab.example/always-on"
E2E_NAMESPACE_LABEL: Final = "homelab.example/e2e"
"""On every scenario's namespace, so leftovers of an interrupted run are one `kubectl delete ns -l` away."""
NOT_FOUND: Final = 404
ALREADY_EXISTS: Final = 409
CRD_ESTABLISH_SECONDS: Final = 60.0


@dataclass(frozen=True)
class Pace:
    """How fast things happen, and how long the suite waits for each step, on one kind of cluster."""

    step_timeout: float
    """The longest a single awaited step may take (a Job run, a boot, a Node going NotReady)."""
    boot_seconds: float
    shutdown_seconds: float
    heartbeat_seconds: float
    job_seconds: float
    """How long the simulated Job controller runs a power Job (only where the simulator plays it)."""
    slow_job_seconds: float
    """A startup Job long enough to stop and restart the operator while it runs."""
    cooldown: str
    """The Group's cooldown after a failed boot: long enough to see a refusal, short enough to wait out."""

    @property
    def operation_timeout(self) -> str:
        """The Group's boot and shutdown timeouts: never the reason a scenario fails on a slow cluster."""
        return f"{max(20, round(self.step_timeout))}s"


FAKE_PACE: Final = Pace(
    step_timeout=15.0, boot_seconds=0.3, shutdown_seconds=0.3, heartbeat_seconds=0.5, job_seconds=0.1,
    slow_job_seconds=2.5, cooldown="2s",
)
REAL_TIMEOUT_SECONDS: Final = 240.0
"""A real cluster pulls an image, schedules a pod and marks a silent Node NotReady only after ~40-50 s."""


def real_pace(step_timeout: float) -> Pace:
    return Pace(
        step_timeout=step_timeout, boot_seconds=3.0, shutdown_seconds=2.0, heartbeat_seconds=10.0, job_seconds=1.0,
        slow_job_seconds=30.0, cooldown="30s",
    )


CONTROL_PLANE_TIMEOUT_SECONDS: Final = 60.0


def control_plane_pace(step_timeout: float) -> Pace:
    """The suite's own control plane: real controllers, node monitoring tuned to seconds, no image to pull."""
    return Pace(
        step_timeout=step_timeout, boot_seconds=1.0, shutdown_seconds=0.5, heartbeat_seconds=2.0, job_seconds=1.0,
        slow_job_seconds=8.0, cooldown="10s",
    )


# --- the cluster (one per session) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """The API server the whole session runs against, and what the simulator must play on it."""

    kubeconfig: Path
    context: str | None
    is_fake: bool
    """`sim.fakeapi` (detected from /version): no Job controller, no node-lifecycle controller."""
    plays_controllers: bool
    """The simulator finishes power Jobs and marks stopped Nodes NotReady (the fake, or --e2e-complete-jobs)."""
    pace: Pace
    job_image: str
    runs_pods: bool = False
    """No kubelet runs (a bare control plane): each homelab has an always-on simulated machine, its power Jobs are
    pinned there, and the simulator runs the pods the real Job controller creates and the real scheduler binds."""
    fake: FakeApiServer | None = None
    """The fake API the suite started (--e2e-fake): scenarios add checks of its store and request log."""

    def new_api_client(self) -> kube_client.ApiClient:
        return new_api_client(self.kubeconfig, self.context)


def is_fake_api(api_client: kube_client.ApiClient) -> bool:
    """Whether the server is `sim.fakeapi`, which has no controllers (so nothing would ever run a Job)."""
    version = KubeApi(api_client).get("/version")
    return FAKE_VERSION_MARK in str(version.get("gitVersion", ""))


def apply_crds(api_client: kube_client.ApiClient, timeout: float = CRD_ESTABLISH_SECONDS) -> list[str]:
    """Create or replace the CRDs users apply (`manifests/crds/`), then wait until they are served.

    Create-or-replace rather than server-side apply: the fake answers apply patches with 415, and replacing keeps
    a cluster's older copy of our CRDs from hiding a field the scenarios rely on.
    """
    rest = KubeApi(api_client)
    collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    names = []
    for path in sorted(CRD_DIRECTORY.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            name = crd["metadata"]["name"]
            names.append(name)
            try:
                rest.post(collection, crd)
            except KubeError as error:
                if error.status != ALREADY_EXISTS:
                    raise
                existing = rest.get(f"{collection}/{name}")
                crd["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                rest.put(f"{collection}/{name}", crd)
    wanted = {"groups", "nodes"}
    wait_for(
        lambda: wanted <= _served_resources(rest),
        timeout,
        f"the API server to serve {sorted(wanted)} of {GROUP_VERSION} after applying {names}",
    )
    return names


def _served_resources(rest: KubeApi) -> set[str]:
    try:
        document = rest.get(f"/apis/{API_GROUP}/{API_VERSION}")
    except KubeError:
        return set()
    return {str(resource.get("name")) for resource in document.get("resources") or ()}


# --- one scenario's homelab -------------------------------------------------------------------------------------


@dataclass
class _RecordedJob:
    job: PowerJob
    node_at_creation: dict[str, Any] | None
    """The machine's Kubernetes Node as it was when the Job was first seen (None: it did not exist)."""


class JobRecorder:
    """Every power Job created in a namespace, by uid, seen through a watch started before the operator."""

    def __init__(self, rest: KubeApi, namespace: str, kube_node_name: dict[str, str]) -> None:
        self._rest = rest
        self._kube_node_name = kube_node_name
        self._lock = threading.Lock()
        self._jobs: dict[str, _RecordedJob] = {}
        self._watcher = JobWatcher(
            rest, [namespace], job_selector(), on_listed=self._listed, on_event=self._event, watch_timeout_seconds=30
        )

    def start(self, timeout: float) -> None:
        self._watcher.start()
        if not self._watcher.wait_synced(timeout):
            pytest.fail(f"could not list power Jobs within {timeout:.0f} s")

    def stop(self) -> None:
        self._watcher.stop()

    def created(self, machine: str | None = None, operation: OperationKind | None = None) -> list[str]:
        """Names of every power Job ever created (for the machine and operation), once per Job: a name twice is a
        Job created twice."""
        with self._lock:
            jobs = [recorded.job for recorded in self._jobs.values()]
        return sorted(
            job.name for job in jobs
            if machine in (None, job.machine) and operation in (None, job.operation)
        )

    def node_at_creation(self, job_name: str) -> dict[str, Any] | None:
        with self._lock:
            found = [recorded for recorded in self._jobs.values() if recorded.job.name == job_name]
        if not found:
            pytest.fail(f"Job {job_name} was never seen")
        return found[0].node_at_creation

    def _listed(self, jobs: list[dict[str, Any]], first: bool) -> None:
        for job in jobs:
            self._event("ADDED", job)

    def _event(self, event_type: str, job: dict[str, Any]) -> None:
        power_job = read_power_job(job)
        if power_job is None or event_type == "DELETED":
            return
        with self._lock:
            if power_job.uid in self._jobs:
                return
        node_name = self._kube_node_name.get(power_job.machine, power_job.machine)
        node = _get_or_none(self._rest, f"/api/v1/nodes/{node_name}")
        with self._lock:
            self._jobs.setdefault(power_job.uid, _RecordedJob(power_job, node))


@dataclass
class JobScript:
    """What a power Job does on a real cluster; the simulator stands in for it where it plays the Job controller."""

    command: tuple[str, ...]
    backoff_limit: int = 1


def succeeding_job() -> JobScript:
    return JobScript(("sh", "-c", "echo power command sent"))


def slow_job(seconds: float) -> JobScript:
    return JobScript(("sh", "-c", f"echo waking the machine; sleep {seconds:.0f}"))


def failing_job() -> JobScript:
    # No pod retry: one failed pod fails the Job at once, as the simulator's failed Job does.
    return JobScript(("sh", "-c", "echo 'BMC unreachable' >&2; exit 1"), backoff_limit=0)


@dataclass
class E2eHomelab:
    """One scenario's homelab on the cluster: its namespace, Group, machines, simulator and operators."""

    cluster: Cluster
    api_client: kube_client.ApiClient
    namespace: str
    directory: Path
    machines: dict[str, SimulatedMachine] = field(default_factory=dict)
    operators: list[RunningOperator] = field(default_factory=list)
    simulator: MachineSimulator | None = None
    recorder: JobRecorder | None = None

    def __post_init__(self) -> None:
        self.rest = KubeApi(self.api_client)
        self._kube_node_names: dict[str, str] = {}
        if self.cluster.runs_pods:
            self._add_always_on_machine()

    @property
    def pace(self) -> Pace:
        return self.cluster.pace

    @property
    def group_id(self) -> str:
        return f"{self.namespace}/{GROUP}"

    def instance_id(self, machine: str) -> str:
        """The providerID the operator stamps, which is also CA's instance id."""
        return default_provider_id(self.namespace, machine)

    def kube_node_name(self, machine: str) -> str:
        return f"{self.namespace}-{machine}"

    # --- writing the homelab ----------------------------------------------------------------------------------

    def add_group(self, *, max_size: int, quarantine_after: int = 3) -> dict[str, Any]:
        pace = self.pace
        spec = {
            "maxSize": max_size,
            "bootTimeout": pace.operation_timeout,
            "shutdownTimeout": pace.operation_timeout,
            "failurePolicy": {
                "quarantineAfter": quarantine_after, "cooldownBase": pace.cooldown, "cooldownCap": pace.cooldown,
                "shutdownRetries": 1,
            },
            "nodeLabels": {POOL_LABEL: GROUP},
            "nodeTaints": [SIMULATED_TAINT],
        }
        body = {
            "apiVersion": GROUP_VERSION, "kind": "Group",
            "metadata": {"name": GROUP, "namespace": self.namespace}, "spec": spec,
        }
        return self.rest.post(self._custom("groups"), body)

    def add_machine(
        self, name: str, *, priority: int = 0, startup: JobScript | None = None, fail_boot: bool = False
    ) -> dict[str, Any]:
        """A Node resource and the simulated machine behind it (played once `start_simulator` runs)."""
        kube_node_name = self.kube_node_name(name)
        self._kube_node_names[name] = kube_node_name
        self.machines[name] = SimulatedMachine(
            name=name,
            namespace=self.namespace,
            group=GROUP,
            kubernetes_node_name=kube_node_name,
            boot_seconds=self.pace.boot_seconds,
            shutdown_seconds=self.pace.shutdown_seconds,
            labels={SIMULATED_LABEL: "true"},
            failures=MachineFailures(fail_boot=fail_boot),
        )
        body = {
            "apiVersion": GROUP_VERSION, "kind": "Node",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {label_names.GROUP_LABEL: GROUP}},
            "spec": {
                "kubernetesNodeName": kube_node_name,
                "priority": priority,
                "startupJob": self._job_template(startup or succeeding_job()),
                "shutdownJob": self._job_template(succeeding_job()),
            },
        }
        return self.rest.post(self._custom("nodes"), body)

    def _job_template(self, script: JobScript) -> dict[str, Any]:
        template: dict[str, Any] = {
            "image": self.cluster.job_image,
            "command": list(script.command),
            "backoffLimit": script.backoff_limit,
            "ttlSecondsAfterFinished": 3600,  # kept for the scenario's assertions however slow the cluster is
        }
        if self.cluster.runs_pods:
            template["nodeSelector"] = {"kubernetes.io/hostname": self.kube_node_name(ALWAYS_ON)}
        return template

    def _add_always_on_machine(self) -> None:
        """The machine that runs the power Jobs' pods: no Node resource, no group, on from the start."""
        kube_node_name = self.kube_node_name(ALWAYS_ON)
        self._kube_node_names[ALWAYS_ON] = kube_node_name
        self.machines[ALWAYS_ON] = SimulatedMachine(
            name=ALWAYS_ON,
            namespace=self.namespace,
            kubernetes_node_name=kube_node_name,
            boot_seconds=0.0,
            labels={ALWAYS_ON_LABEL: "true"},
            failures=MachineFailures(power_on_at=0.0),
        )

    def start_simulator(self, *, job_seconds: float | None = None) -> MachineSimulator:
        if self.simulator is not None:
            raise RuntimeError("the simulator is already running")
        self.simulator = MachineSimulator(
            self.api_client,
            self.machines.values(),
            namespaces=[self.namespace],
            complete_jobs=self.cluster.plays_controllers,
            mark_not_ready=self.cluster.plays_controllers,
            run_pods=self.cluster.runs_pods,
            heartbeat_seconds=self.pace.heartbeat_seconds,
            job_seconds=self.pace.job_seconds if job_seconds is None else job_seconds,
        )
        self.simulator.start(sync_timeout=self.pace.step_timeout)
        return self.simulator

    # --- operators ----------------------------------------------------------------------------------------------

    def settings(self) -> Settings:
        return Settings.from_flags(
            kubeconfig=self.cluster.kubeconfig,
            context=self.cluster.context,
            namespace=self.namespace,
            watch_namespace=self.namespace,
            grpc_address="127.0.0.1:0",
            metrics_address="127.0.0.1:0",
            webhook_address="",
            leader_elect=False,
            shutdown_grace_seconds=5.0,
            webhook_cert_dir=self.directory / f"webhook-certs-{len(self.operators)}",
        )

    def start_operator(self) -> RunningOperator:
        """The operator in this process, as `homelab-autoscaler run` would start it, acting once it has listed."""
        operator = Operator(self.settings())
        operator.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}")
        running = RunningOperator(operator, channel, externalgrpc_grpc.CloudProviderStub(channel))
        self.operators.append(running)
        wait_for(lambda: operator.wait_acting(0.1), self.pace.step_timeout, "the operator to act")
        return running

    def stop_operator(self, running: RunningOperator, *, kill: bool = False) -> None:
        """Stop as on SIGTERM, or `kill` as a crash would (nothing finished, nothing released)."""
        running.channel.close()
        if kill:
            running.operator.kill()
        else:
            running.operator.stop()
        self.operators.remove(running)

    def reset(self, machine: str, reason: str) -> None:
        """What a person does once a quarantined machine is fixed: `kubectl annotate` it with the reset annotation."""
        body = {"metadata": {"annotations": {label_names.RESET_ANNOTATION: reason}}}
        self.rest.patch(f"{self._custom('nodes')}/{machine}", body)

    # --- looking at the cluster -------------------------------------------------------------------------------

    def wait(self, condition: Any, what: str) -> Any:
        return wait_for(condition, self.pace.step_timeout, what)

    def machine(self, name: str) -> dict[str, Any]:
        return self.rest.get(f"{self._custom('nodes')}/{name}")

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.machine(name).get("status") or {})

    def state(self, name: str) -> str | None:
        state = self.status(name).get("state")
        return str(state) if state is not None else None

    def wait_state(self, name: str, state: str) -> dict[str, Any]:
        """Wait until the Node resource `name` is in `state`; its status then."""
        self.wait(lambda: self.state(name) == state, f"{name} to be {state}")
        return self.status(name)

    def group(self) -> dict[str, Any]:
        return self.rest.get(f"{self._custom('groups')}/{GROUP}")

    def jobs(self, machine: str | None = None) -> list[dict[str, Any]]:
        """The power Jobs there are now (for the machine)."""
        selector = job_selector()
        if machine is not None:
            selector += f",{label_names.MACHINE_LABEL}={machine}"
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        return list(self.rest.get(path, {"labelSelector": selector}).get("items") or ())

    def job(self, name: str) -> dict[str, Any] | None:
        return _get_or_none(self.rest, f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}")

    def created_jobs(self, machine: str | None = None, operation: OperationKind | None = None) -> list[str]:
        assert self.recorder is not None, "the homelab records Jobs from its start"
        return self.recorder.created(machine, operation)

    def kube_node_when_created(self, job_name: str) -> dict[str, Any] | None:
        """The Job's machine's Kubernetes Node as it was when the Job appeared (None: there was none)."""
        assert self.recorder is not None, "the homelab records Jobs from its start"
        return self.recorder.node_at_creation(job_name)

    def kube_node(self, machine: str) -> dict[str, Any] | None:
        return _get_or_none(self.rest, f"/api/v1/nodes/{self.kube_node_name(machine)}")

    def events(self, machine: str) -> list[dict[str, Any]]:
        """The Events recorded on the machine's Node resource (what `kubectl describe` lists)."""
        path = f"/api/v1/namespaces/{self.namespace}/events"
        items = self.rest.get(path, {"fieldSelector": f"involvedObject.name={machine}"}).get("items") or ()
        return [event for event in items if (event.get("involvedObject") or {}).get("kind") == "Node"]

    def group_events(self) -> list[dict[str, Any]]:
        """The Events recorded on the Group (what `kubectl describe group` lists)."""
        path = f"/api/v1/namespaces/{self.namespace}/events"
        items = self.rest.get(path, {"fieldSelector": f"involvedObject.name={GROUP}"}).get("items") or ()
        return [event for event in items if (event.get("involvedObject") or {}).get("kind") == "Group"]

    def event_counts(self, machine: str) -> dict[str, int]:
        """Reason → how many times it was reported (an Event repeated is one object with a count)."""
        counts: dict[str, int] = {}
        for event in self.events(machine):
            reason = str(event.get("reason"))
            counts[reason] = counts.get(reason, 0) + int(event.get("count") or 1)
        return counts

    def _custom(self, plural: str) -> str:
        return f"/apis/{GROUP_VERSION}/namespaces/{self.namespace}/{plural}"

    # --- setup and cleanup ------------------------------------------------------------------------------------

    def open(self) -> None:
        metadata = {"name": self.namespace, "labels": {E2E_NAMESPACE_LABEL: "true"}}
        self.rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
        self.recorder = JobRecorder(self.rest, self.namespace, self._kube_node_names)
        self.recorder.start(self.pace.step_timeout)

    def close(self) -> None:
        """Stop what runs here, then delete the namespace and every Kubernetes Node (and Lease) made for it."""
        for running in list(self.operators):
            self.stop_operator(running)
        if self.simulator is not None:
            self.simulator.stop()  # before the Nodes go: a live kubelet would register its Node again
        if self.recorder is not None:
            self.recorder.stop()
        _delete(self.rest, f"/api/v1/namespaces/{self.namespace}")
        for kube_node_name in self._kube_node_names.values():
            _delete(self.rest, f"/api/v1/nodes/{kube_node_name}")
            _delete(self.rest, f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{kube_node_name}")


def new_homelab(cluster: Cluster, directory: Path, scenario: str) -> Iterator[E2eHomelab]:
    """A fresh namespace on the cluster for one scenario; everything it made is removed afterwards."""
    readable = re.sub(r"[^a-z0-9]+", "-", scenario.lower().removeprefix("test_"))[:30].strip("-")
    namespace = f"e2e-{readable}-{uuid.uuid4().hex[:6]}"
    api_client = cluster.new_api_client()
    homelab = E2eHomelab(cluster, api_client, namespace, directory)
    try:
        homelab.open()
        yield homelab
    finally:
        try:
            homelab.close()
        finally:
            api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream


def _get_or_none(rest: KubeApi, path: str) -> dict[str, Any] | None:
    try:
        return rest.get(path)
    except KubeError as error:
        if error.status == NOT_FOUND:
            return None
        raise


def _delete(rest: KubeApi, path: str) -> None:
    try:
        rest.delete(path)
    except KubeError as error:
        if error.status != NOT_FOUND:
            raise
