"""With `run_pods`, the simulator runs the pods bound to its machines, as their kubelets would on a real cluster.

A real control plane with no kubelet (tests/e2e on the binaries of ../shared/k8s) has a real Job controller and a
real scheduler: they create and bind the power Jobs' pods, and the simulator must run them. The fake has neither,
so these tests bind the pods themselves (spec.nodeName), as the scheduler would, and look at what a user of
`kubectl get pods` would see.
"""

from __future__ import annotations

from typing import Any

import pytest
from machine_lab import Lab

from kubeapi.kube_client import KubeApi
from schemas import labels as label_names
from sim.machines import MachineFailures, PowerState, SimulatedMachine
from tests.support.polling import wait_for

JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def _pod(lab: Lab, name: str, node: SimulatedMachine, labels: dict[str, str] | None = None) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": lab.namespace, "labels": labels or {}},
        "spec": {
            "nodeName": node.kubernetes_node_name,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
        },
    }
    return KubeApi(lab.api_client).post(f"/api/v1/namespaces/{lab.namespace}/pods", body)


def _power_pod_labels(target: SimulatedMachine, operation: str, job_uid: str) -> dict[str, str]:
    return {
        label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
        label_names.MACHINE_LABEL: target.name,
        label_names.GROUP_LABEL: target.group,
        label_names.OPERATION_LABEL: operation,
        label_names.ATTEMPT_LABEL: "1",
        JOB_UID_LABEL: job_uid,
    }


def _phase(lab: Lab, name: str) -> str | None:
    return lab.core.read_namespaced_pod(name, lab.namespace).status.phase


def _always_on(lab: Lab) -> SimulatedMachine:
    return lab.machine("always-on", group="", boot_seconds=0.0, failures=MachineFailures(power_on_at=0.0))


def test_a_pod_bound_to_a_running_machine_starts_and_keeps_running(lab: Lab) -> None:
    host = _always_on(lab)
    simulator = lab.simulate(host, complete_jobs=False, run_pods=True)
    assert simulator.machine("always-on").wait_until(lambda handle: handle.state is PowerState.RUNNING, 5)

    _pod(lab, "web", host)

    wait_for(lambda: _phase(lab, "web") == "Running", what="the pod to run")
    pod = lab.core.read_namespaced_pod("web", lab.namespace)
    (container,) = pod.status.container_statuses
    assert container.ready
    assert container.state.running is not None
    ready = {condition.type: condition.status for condition in pod.status.conditions}
    assert ready["Ready"] == "True"


@pytest.mark.parametrize(
    ("failures", "operation", "phase", "exit_code"),
    [
        pytest.param(MachineFailures(), "startup", "Succeeded", 0, id="startup-succeeds"),
        pytest.param(MachineFailures(fail_boot=True), "startup", "Failed", 1, id="dead-bmc-fails-startup"),
        pytest.param(MachineFailures(fail_shutdown=True), "shutdown", "Failed", 1, id="dead-bmc-fails-shutdown"),
        pytest.param(MachineFailures(fail_boot=True), "shutdown", "Succeeded", 0, id="boot-fault-spares-shutdown"),
    ],
)
def test_a_power_job_pod_ends_by_the_fault_schedule_of_the_machine_it_powers(
    lab: Lab, failures: MachineFailures, operation: str, phase: str, exit_code: int
) -> None:
    host = _always_on(lab)
    target = lab.machine("box-1", failures=failures)
    simulator = lab.simulate(host, target, complete_jobs=False, run_pods=True, job_seconds=0.1)
    assert simulator.machine("always-on").wait_until(lambda handle: handle.state is PowerState.RUNNING, 5)

    _pod(lab, "box-1-power", host, _power_pod_labels(target, operation, "job-uid-1"))

    wait_for(lambda: _phase(lab, "box-1-power") == phase, what=f"the power pod to end {phase}")
    pod = lab.core.read_namespaced_pod("box-1-power", lab.namespace)
    assert pod.status.container_statuses[0].state.terminated.exit_code == exit_code


def test_every_pod_of_one_job_shares_the_outcome_of_a_one_shot_fault(lab: Lab) -> None:
    host = _always_on(lab)
    target = lab.machine("box-1")
    simulator = lab.simulate(host, target, complete_jobs=False, run_pods=True, job_seconds=0.1)
    simulator.machine("box-1").fail_next_boot()
    assert simulator.machine("always-on").wait_until(lambda handle: handle.state is PowerState.RUNNING, 5)

    _pod(lab, "try-1", host, _power_pod_labels(target, "startup", "job-uid-1"))
    wait_for(lambda: _phase(lab, "try-1") == "Failed", what="the first pod to fail")
    _pod(lab, "try-2", host, _power_pod_labels(target, "startup", "job-uid-1"))
    _pod(lab, "next-job", host, _power_pod_labels(target, "startup", "job-uid-2"))

    wait_for(lambda: _phase(lab, "next-job") == "Succeeded", what="the next Job's pod to succeed")
    wait_for(lambda: _phase(lab, "try-2") == "Failed", what="the retried pod of the failed Job to fail too")


def test_a_pod_bound_to_a_machine_that_is_off_is_not_run(lab: Lab) -> None:
    host = _always_on(lab)
    off = lab.machine("box-off")
    simulator = lab.simulate(host, off, complete_jobs=False, run_pods=True)
    assert simulator.machine("always-on").wait_until(lambda handle: handle.state is PowerState.RUNNING, 5)

    _pod(lab, "stranded", off)
    _pod(lab, "marker", host)  # started after the stranded pod was seen: the runner has looked at both

    wait_for(lambda: _phase(lab, "marker") == "Running", what="the pod on the running machine to run")
    assert _phase(lab, "stranded") == "Pending"
