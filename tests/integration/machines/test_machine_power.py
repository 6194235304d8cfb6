"""A power Job makes a simulated machine boot, register and heartbeat, or stop; the Job itself finishes."""

from __future__ import annotations

import pytest
from machine_lab import HEARTBEAT, Lab, ready_condition

from sim.machines import PowerState, ProviderIdMode
from tests.support.polling import wait_for


@pytest.mark.parametrize(
    ("mode", "expected_provider_id"),
    [
        pytest.param(ProviderIdMode.EMPTY, None, id="empty-like-kubeadm"),
        pytest.param(ProviderIdMode.PRESET, "homelab://{namespace}/box-1", id="preset-homelab-scheme"),
        pytest.param(ProviderIdMode.K3S, "k3s://{namespace}-box-1", id="k3s-agent"),
    ],
)
def test_startup_job_succeeds_and_a_ready_node_registers(
    lab: Lab, mode: ProviderIdMode, expected_provider_id: str | None
) -> None:
    machine = lab.machine(
        "box-1",
        provider_id_mode=mode,
        capacity={"cpu": "8", "memory": "32Gi", "pods": "110"},
        labels={"rack": "a"},
    )
    simulator = lab.simulate(machine)

    job_name = lab.create_job(machine, "startup")

    job = lab.finished_job(job_name)
    assert job.status.succeeded == 1
    assert job.status.start_time is not None
    assert job.status.completion_time is not None
    assert {c.type for c in job.status.conditions if c.status == "True"} == {"Complete", "SuccessCriteriaMet"}
    node = lab.ready_node(machine)
    expected = expected_provider_id.format(namespace=lab.namespace) if expected_provider_id else None
    assert (node.spec.provider_id or None) == expected
    assert node.metadata.labels["kubernetes.io/hostname"] == machine.kubernetes_node_name
    assert node.metadata.labels["kubernetes.io/os"] == "linux"
    assert node.metadata.labels["rack"] == "a"
    assert node.status.capacity == {"cpu": "8", "memory": "32Gi", "pods": "110"}
    assert node.status.allocatable == node.status.capacity
    assert {c.type: c.status for c in node.status.conditions} == {
        "Ready": "True",
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
    }
    assert {address.type for address in node.status.addresses} == {"InternalIP", "Hostname"}
    assert node.status.node_info.kubelet_version.startswith("v1.")
    handle = simulator.machine("box-1")
    assert (handle.powered_on, handle.state, handle.boots) == (True, PowerState.RUNNING, 1)


def test_the_job_runs_a_pod_owned_by_the_job(lab: Lab) -> None:
    machine = lab.machine("box-1")
    lab.simulate(machine)

    job_name = lab.create_job(machine, "startup")

    job = lab.finished_job(job_name)
    pods = lab.core.list_namespaced_pod(lab.namespace, label_selector=f"job-name={job_name}").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.metadata.labels["controller-uid"] == job.metadata.uid
    owner = pod.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Job", job_name, job.metadata.uid, True)
    assert pod.status.phase == "Succeeded"


def test_a_running_machine_heartbeats_its_node_and_lease(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine)
    lab.create_job(machine, "startup")
    lab.ready_node(machine)
    handle = simulator.machine("box-1")

    first_renewal = wait_for(lambda: lab.lease_renew_time(machine), what="the node Lease")
    assert handle.wait_until(lambda m: m.heartbeats >= 3, timeout=5)

    lease = lab.coordination.read_namespaced_lease(machine.kubernetes_node_name, "kube-node-lease")
    assert lease.spec.holder_identity == machine.kubernetes_node_name
    assert lease.spec.renew_time > first_renewal
    assert lease.metadata.owner_references[0].kind == "Node"


def test_shutdown_job_makes_the_node_not_ready_and_stops_heartbeats(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine)
    lab.create_job(machine, "startup")
    lab.ready_node(machine)
    handle = simulator.machine("box-1")

    job = lab.finished_job(lab.create_job(machine, "shutdown"))

    assert job.status.succeeded == 1
    node = lab.not_ready_node(machine)
    ready = ready_condition(node)
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
    assert handle.wait_until(lambda m: not m.powered_on, timeout=5)
    assert (handle.state, handle.shutdowns) == (PowerState.OFF, 1)
    renewed = lab.lease_renew_time(machine)
    heartbeats = handle.heartbeats
    # Nothing left scheduled (no heartbeat due) means nothing renews the Lease again, however long one waits.
    assert simulator.wait_idle(timeout=HEARTBEAT * 4)
    assert lab.lease_renew_time(machine) == renewed
    assert handle.heartbeats == heartbeats


def test_a_second_startup_after_shutdown_registers_again(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine)
    handle = simulator.machine("box-1")
    lab.create_job(machine, "startup", attempt=1)
    lab.ready_node(machine)
    lab.create_job(machine, "shutdown", attempt=1)
    lab.not_ready_node(machine)
    assert handle.wait_until(lambda m: not m.powered_on, timeout=5)

    lab.create_job(machine, "startup", attempt=2)

    lab.ready_node(machine)
    assert handle.wait_until(lambda m: m.registrations == 2, timeout=5)
    assert (handle.boots, handle.shutdowns) == (2, 1)


def test_without_mark_not_ready_a_powered_off_node_is_left_as_it_was(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine, mark_not_ready=False)
    handle = simulator.machine("box-1")
    lab.create_job(machine, "startup")
    lab.ready_node(machine)

    lab.create_job(machine, "shutdown")

    assert handle.wait_until(lambda m: not m.powered_on, timeout=5)
    assert simulator.wait_idle(timeout=HEARTBEAT * 4)  # everything the power-off set off has run
    node = lab.node(machine)
    assert node is not None
    ready = ready_condition(node)
    assert ready is not None
    assert ready.status == "True"  # on a real cluster the node-lifecycle controller flips it, not us
