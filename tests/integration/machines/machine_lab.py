"""Helpers shared by the machine simulator tests: a per-test `Lab` (polling with `tests.support.polling`).

Everything goes over real HTTP: the simulator talks to the fake through the official client, and the
tests look at the results through the official client too, the way a user (or the operator) would.
Kubernetes Nodes and Leases are cluster-wide, so every machine's Node name is prefixed with the test's
namespace to keep tests independent while sharing one server.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as kube_client

from schemas import labels as label_names
from sim.fakeapi import FakeApiServer
from sim.machines import MachineSimulator, SimulatedMachine
from tests.support.polling import wait_for

FAST_BOOT = 0.1
FAST_SHUTDOWN = 0.1
HEARTBEAT = 0.1
JOB_RUN = 0.05


class Lab:
    """One test's corner of the fake API: a namespace, its machines, simulators and helpers to look."""

    def __init__(self, fake_api: FakeApiServer, api_client: kube_client.ApiClient, namespace: str) -> None:
        self.fake_api = fake_api
        self.api_client = api_client
        self.namespace = namespace
        self.core = kube_client.CoreV1Api(api_client)
        self.batch = kube_client.BatchV1Api(api_client)
        self.coordination = kube_client.CoordinationV1Api(api_client)
        self._simulators: list[MachineSimulator] = []

    def machine(self, name: str, **fields: Any) -> SimulatedMachine:
        defaults: dict[str, Any] = {
            "namespace": self.namespace,
            "group": "group-1",
            "kubernetes_node_name": f"{self.namespace}-{name}",
            "boot_seconds": FAST_BOOT,
            "shutdown_seconds": FAST_SHUTDOWN,
        }
        return SimulatedMachine(name=name, **{**defaults, **fields})

    def simulate(self, *machines: SimulatedMachine, **options: Any) -> MachineSimulator:
        settings: dict[str, Any] = {
            "complete_jobs": True,
            "mark_not_ready": True,
            "heartbeat_seconds": HEARTBEAT,
            "job_seconds": JOB_RUN,
            "watch_timeout_seconds": 30,
        }
        simulator = MachineSimulator(self.api_client, machines, **{**settings, **options})
        self._simulators.append(simulator)
        simulator.start()
        return simulator

    def stop_all(self) -> None:
        for simulator in self._simulators:
            simulator.stop()

    def create_job(self, machine: SimulatedMachine, operation: str, attempt: int = 1) -> str:
        """Creates a power Job the way the operator labels it; returns its name."""
        name = f"{machine.name}-{operation}-{attempt}"
        labels = {
            label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
            label_names.MACHINE_LABEL: machine.name,
            label_names.GROUP_LABEL: machine.group,
            label_names.OPERATION_LABEL: operation,
            label_names.ATTEMPT_LABEL: str(attempt),
        }
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": {
                "backoffLimit": 1,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": operation, "image": "busybox:1.36", "command": ["true"]}],
                    },
                },
            },
        }
        self.batch.create_namespaced_job(self.namespace, kube_client.V1Job.from_dict(body))
        return name

    def job(self, name: str) -> kube_client.V1Job:
        return self.batch.read_namespaced_job(name, self.namespace)

    def finished_job(self, name: str) -> kube_client.V1Job:
        """Waits until the Job has a Complete or Failed condition and returns it."""

        def finished() -> kube_client.V1Job | None:
            job = self.job(name)
            conditions = (job.status.conditions if job.status else None) or []
            types = {condition.type for condition in conditions if condition.status == "True"}
            return job if types & {"Complete", "Failed"} else None

        return wait_for(finished, what=f"Job {name} to finish")

    def node(self, machine: SimulatedMachine) -> kube_client.V1Node | None:
        try:
            return self.core.read_node(machine.kubernetes_node_name)
        except kube_client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def ready_node(self, machine: SimulatedMachine) -> kube_client.V1Node:
        return wait_for(lambda: self._with_ready(machine, "True"), what=f"Node of {machine.name} to be Ready")

    def not_ready_node(self, machine: SimulatedMachine) -> kube_client.V1Node:
        return wait_for(
            lambda: self._with_ready(machine, "False") or self._with_ready(machine, "Unknown"),
            what=f"Node of {machine.name} to be NotReady",
        )

    def _with_ready(self, machine: SimulatedMachine, status: str) -> kube_client.V1Node | None:
        node = self.node(machine)
        if node is None or node.status is None:
            return None
        ready = ready_condition(node)
        return node if ready is not None and ready.status == status else None

    def lease_renew_time(self, machine: SimulatedMachine) -> Any:
        """The renewTime of the machine's node Lease, or None while there is no Lease."""
        try:
            lease = self.coordination.read_namespaced_lease(machine.kubernetes_node_name, "kube-node-lease")
        except kube_client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return lease.spec.renew_time


def ready_condition(node: kube_client.V1Node) -> kube_client.V1NodeCondition | None:
    return next((c for c in (node.status.conditions or []) if c.type == "Ready"), None)
