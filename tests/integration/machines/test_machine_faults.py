"""Injected faults: failing and hanging boots, failing shutdowns, machines switching on or off alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client as kube_client
from machine_lab import FAST_BOOT, HEARTBEAT, Lab, ready_condition

from sim.machines import MachineFailures, MachineHandle, PowerState
from tests.support.polling import wait_for


def no_fault(handle: MachineHandle) -> None:
    """A fault table entry that injects nothing at run time."""


def true_condition_types(job: kube_client.V1Job) -> set[str]:
    return {condition.type for condition in job.status.conditions or [] if condition.status == "True"}


@pytest.mark.parametrize(
    ("failures", "inject", "job_condition", "final_state"),
    [
        pytest.param(
            MachineFailures(fail_boot=True), no_fault, "Failed", PowerState.OFF, id="boot-fails-always"
        ),
        pytest.param(
            MachineFailures(), MachineHandle.fail_next_boot, "Failed", PowerState.OFF, id="boot-fails-once"
        ),
        pytest.param(
            MachineFailures(hang_boot=True), no_fault, "Complete", PowerState.HUNG, id="boot-hangs-always"
        ),
        pytest.param(
            MachineFailures(), MachineHandle.hang_next_boot, "Complete", PowerState.HUNG, id="boot-hangs-once"
        ),
    ],
)
def test_a_faulty_boot_never_registers_a_node(
    lab: Lab,
    failures: MachineFailures,
    inject: Callable[[MachineHandle], None],
    job_condition: str,
    final_state: PowerState,
) -> None:
    machine = lab.machine("box-1", failures=failures)
    simulator = lab.simulate(machine)
    handle = simulator.machine("box-1")
    inject(handle)

    job = lab.finished_job(lab.create_job(machine, "startup"))

    assert job_condition in true_condition_types(job)
    if job_condition == "Failed":
        assert job.status.failed == 1
        failed = next(c for c in job.status.conditions if c.type == "Failed")
        assert failed.reason == "BackoffLimitExceeded"
        assert failed.message
    assert handle.wait_until(lambda m: m.state is final_state, timeout=5)
    # Nothing left scheduled: no boot is still on its way to registering a Node.
    assert simulator.wait_idle(timeout=FAST_BOOT * 10)
    assert lab.node(machine) is None
    assert handle.registrations == 0


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(MachineHandle.fail_next_boot, id="after-a-failed-boot"),
        pytest.param(MachineHandle.hang_next_boot, id="after-a-hung-boot"),
    ],
)
def test_a_one_shot_fault_affects_only_the_next_boot(
    lab: Lab, inject: Callable[[MachineHandle], None]
) -> None:
    machine = lab.machine("box-1")
    handle = lab.simulate(machine).machine("box-1")
    inject(handle)
    lab.finished_job(lab.create_job(machine, "startup", attempt=1))
    if handle.powered_on:  # a hung machine must be powered off before it can boot again
        lab.finished_job(lab.create_job(machine, "shutdown", attempt=1))
        assert handle.wait_until(lambda m: not m.powered_on, timeout=5)

    job = lab.finished_job(lab.create_job(machine, "startup", attempt=2))

    assert "Complete" in true_condition_types(job)
    lab.ready_node(machine)


@pytest.mark.parametrize(
    ("failures", "inject"),
    [
        pytest.param(MachineFailures(fail_shutdown=True), no_fault, id="shutdown-fails-always"),
        pytest.param(MachineFailures(), MachineHandle.fail_next_shutdown, id="shutdown-fails-once"),
    ],
)
def test_a_failed_shutdown_leaves_the_machine_on_and_heartbeating(
    lab: Lab, failures: MachineFailures, inject: Callable[[MachineHandle], None]
) -> None:
    machine = lab.machine("box-1", failures=failures)
    handle = lab.simulate(machine).machine("box-1")
    lab.create_job(machine, "startup")
    lab.ready_node(machine)
    inject(handle)

    job = lab.finished_job(lab.create_job(machine, "shutdown"))

    assert "Failed" in true_condition_types(job)
    assert job.status.failed == 1
    heartbeats = handle.heartbeats
    assert handle.wait_until(lambda m: m.heartbeats >= heartbeats + 3, timeout=5)
    assert (handle.state, handle.shutdowns) == (PowerState.RUNNING, 0)
    lab.ready_node(machine)


def test_a_machine_powered_on_by_hand_registers_without_any_job(lab: Lab) -> None:
    machine = lab.machine("box-1")
    handle = lab.simulate(machine).machine("box-1")

    handle.power_on_unexpectedly()

    lab.ready_node(machine)
    assert lab.batch.list_namespaced_job(lab.namespace).items == []
    # The counter moves once the server has acknowledged the whole registration, just after the Node shows.
    assert handle.wait_until(lambda m: m.registrations == 1, timeout=5)
    assert handle.boots == 1


def test_a_machine_losing_power_goes_unknown_and_silent(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine)
    handle = simulator.machine("box-1")
    lab.create_job(machine, "startup")
    lab.ready_node(machine)

    handle.power_off_unexpectedly()

    node = lab.not_ready_node(machine)
    ready = ready_condition(node)
    assert ready is not None
    assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
    assert {c.status for c in node.status.conditions} == {"Unknown"}
    assert handle.wait_until(lambda m: m.state is PowerState.OFF, timeout=5)
    heartbeats = handle.heartbeats
    assert simulator.wait_idle(timeout=HEARTBEAT * 4)  # no heartbeat is due any more
    assert handle.heartbeats == heartbeats


def test_scheduled_power_on_and_off_happen_by_themselves(lab: Lab) -> None:
    machine = lab.machine("box-1", failures=MachineFailures(power_on_at=0.05, power_off_at=1.0))
    handle = lab.simulate(machine).machine("box-1")

    lab.ready_node(machine)
    node = lab.not_ready_node(machine)

    ready = ready_condition(node)
    assert ready is not None
    assert ready.reason == "NodeStatusUnknown"
    assert (handle.boots, handle.shutdowns, handle.powered_on) == (1, 1, False)


def test_a_node_deleted_while_the_machine_runs_is_registered_again(lab: Lab) -> None:
    machine = lab.machine("box-1")
    handle = lab.simulate(machine).machine("box-1")
    lab.create_job(machine, "startup")
    first_uid = lab.ready_node(machine).metadata.uid

    lab.core.delete_node(machine.kubernetes_node_name)

    def registered_again() -> kube_client.V1Node | None:
        node = lab.node(machine)
        return node if node is not None and node.metadata.uid != first_uid else None

    node = wait_for(registered_again, what="the Node to be registered again")
    ready = ready_condition(node)
    assert ready is not None
    assert ready.status == "True"
    assert handle.wait_until(lambda m: m.registrations == 2, timeout=5)
    assert handle.boots == 1
