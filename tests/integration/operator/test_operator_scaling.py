"""The operator follows machines CA did not ask about: powered on or off by hand, or cancelled mid-boot.

Each test runs the real operator in-process against its own fake API server over HTTP, with the machine simulator
playing the machines, the Job controller and the node-lifecycle controller, and drives it through a real gRPC
channel the way CA does. Scale-up, scale-down and failed boots as CA drives them are the user scenarios of
tests/e2e/scenarios.py, which run on this fake (with its store) and on a real control plane.
"""

from __future__ import annotations

from protos import externalgrpc_pb2 as externalgrpc
from tests.support.operator_homelab import GROUP, NAMESPACE, RUNNING, Homelab, simulated
from tests.support.polling import wait_for


def test_a_machine_powered_on_by_hand_is_adopted_and_one_powered_off_is_let_go(homelab: Homelab) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    simulator = homelab.simulate(simulated("m1"))
    ca = homelab.start_operator()

    simulator.machine("m1").power_on_unexpectedly()

    assert homelab.wait_state("m1", "Ready")["status"]["reason"] == "StartedOutsideAutoscaler"
    assert [instance.status.instanceState for instance in ca.nodes()] == [RUNNING]
    assert ca.target_size() == 1
    assert homelab.created_jobs("m1") == []  # adopted, never powered on by us

    # Power is cut and the dead Node object is removed, as an administrator (or a cloud controller) does.
    simulator.machine("m1").power_off_unexpectedly()
    wait_for(lambda: not simulator.machine("m1").powered_on, what="the machine to lose power")
    homelab.fake.store.delete("v1", "nodes", "m1")

    assert homelab.wait_state("m1", "Shutdown")["status"]["reason"] == "StoppedOutsideAutoscaler"
    assert ca.nodes() == []
    assert ca.target_size() == 0
    assert homelab.created_jobs("m1") == []


def test_a_boot_cancelled_after_its_power_on_went_out_is_powered_off_when_the_machine_comes_up(
    homelab: Homelab,
) -> None:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    # The startup Job is done long before the machine has booted: a cancel cannot call the power-on back.
    homelab.simulate(simulated("m1", boot_seconds=1.5), job_seconds=0.05)
    ca = homelab.start_operator()
    ca.increase_size(1)
    wait_for(
        lambda: any(
            condition.get("type") == "Complete"
            for job in homelab.jobs("m1")
            for condition in (job.get("status") or {}).get("conditions") or []
        ),
        what="the startup Job to succeed",
    )
    assert homelab.kube_node("m1") is None, "the machine must still be booting"

    ca.stub.NodeGroupDecreaseTargetSize(externalgrpc.NodeGroupDecreaseTargetSizeRequest(id=f"{NAMESPACE}/{GROUP}",
                                                                                        delta=-1))
    assert homelab.wait_state("m1", "Shutdown")["status"]["reason"] == "BootCancelled"
    targets = []

    def powered_off_again() -> bool:
        targets.append(ca.target_size())
        return homelab.created_jobs("m1") == ["m1-shutdown-2", "m1-startup-1"] and homelab.state("m1") == "Shutdown"

    wait_for(powered_off_again, what="the machine to be powered off once it came up")
    assert set(targets) == {0}, "CA asked for the machine to go: it never counts again"
    assert "ReleasedBootCameUp" in homelab.event_reasons("m1")
    assert ca.nodes() == []
    wait_for(lambda: homelab.kube_node("m1") is None, what="the powered-off Node to be deleted")
