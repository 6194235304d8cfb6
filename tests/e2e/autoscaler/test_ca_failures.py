"""What the real Cluster Autoscaler and the operator make of failures: a boot that fails, a machine that never
registers, and the operator SIGKILLed in the middle of a scale-up.

- Failed boot: the startup Job fails (a dead BMC). CA sees the instance `instanceCreating` with an error, backs the
  group off, deletes the instance; the machine cools down, and CA's next try powers on the other machine.
- Never registers: the startup Job succeeds but the machine hangs in boot. CA gives up after its
  `--max-node-provision-time` and deletes the unregistered instance; the operator cancels the boot and counts it
  as failed, so CA's next try is refused while the machine cools down instead of booting it again and again.
- SIGKILL: the operator dies while both machines boot and comes back on the same port. The new operator adopts the
  running boots (no second Job), CA converges on two machines and never asks for a third.
"""

from __future__ import annotations

import re
import time

from ca_support import POOL_LABEL, AutoscaledHomelab

from schemas.node import OperationKind
from sim.machines import MachineFailures

GROUP = "workers"
CA_BACKED_OFF = re.compile(r"Disabling scale-up for node group homelab/workers")
CA_DELETED = re.compile(r"gRPC call NodeGroupDeleteNodes for node group homelab/workers")
CA_INCREASE = re.compile(r"gRPC call NodeGroupIncreaseSize for node group homelab/workers")
REFUSED = ("ResourceExhausted", "cooling down", "cooldown")
"""What CA logs when the operator refuses a scale-up because every machine cools down: expected there only."""
OPERATOR_DOWN = ("Unavailable", "connection refused", "Connection refused", "context deadline exceeded")
"""What CA logs while the operator is killed and restarting: expected in that scenario only."""


def test_a_failed_boot_is_backed_off_by_ca_and_the_other_machine_takes_the_pod(
    autoscaled: AutoscaledHomelab,
) -> None:
    homelab = autoscaled
    homelab.add_group(GROUP, max_size=2)
    homelab.add_machine("dead-bmc", GROUP, priority=10, failures=MachineFailures(fail_boot=True))
    homelab.add_machine("spare", GROUP, priority=0)
    homelab.start_simulator()
    homelab.start_operator()
    autoscaler = homelab.start_autoscaler("--expander=least-waste")
    homelab.wait(lambda: homelab.ca_group_status(GROUP), "CA to list the group")

    homelab.add_workload("build", replicas=1, node_selector={POOL_LABEL: GROUP})

    homelab.wait(lambda: autoscaler.lines(CA_BACKED_OFF), "CA to back the group off after the failed boot")
    # CA logs the back-off a few milliseconds before the delete call: wait for both, never read the log once.
    homelab.wait(lambda: autoscaler.lines(CA_DELETED), "CA to delete the instance whose creation failed")
    failed = homelab.wait(lambda: (status := homelab.status("dead-bmc")).get("cooldownUntil") and status,
                          "the failed machine to cool down")
    assert failed["consecutiveFailures"] == 1
    assert homelab.wait(lambda: homelab.bound_nodes("build"), "CA's next try to bring up the spare") == ["spare"]
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"dead-bmc": 1, "spare": 1}
    assert homelab.highest_target(GROUP) == 1, "one machine at a time: the failed one was taken out of the target"
    homelab.assert_ca_was_content()


def test_a_machine_that_never_registers_is_given_up_by_ca_and_its_boot_cancelled(
    autoscaled: AutoscaledHomelab,
) -> None:
    homelab = autoscaled
    homelab.add_group(GROUP, max_size=1)  # bootTimeout 90 s: CA gives up first, after 20 s
    homelab.add_machine("hangs", GROUP, failures=MachineFailures(hang_boot=True))
    homelab.start_simulator()
    homelab.start_operator()
    autoscaler = homelab.start_autoscaler("--expander=least-waste", "--max-node-provision-time=20s")
    homelab.wait(lambda: homelab.ca_group_status(GROUP), "CA to list the group")

    homelab.add_workload("build", replicas=1, node_selector={POOL_LABEL: GROUP})

    homelab.wait(lambda: homelab.state("hangs") == "StartingUp", "the boot to start")
    given_up = homelab.wait(lambda: (status := homelab.status("hangs")).get("reason") == "CoolingDown" and status,
                            "CA to give up on the unregistered instance and the operator to count a failed boot")
    assert given_up["state"] == "Shutdown"
    assert given_up["consecutiveFailures"] == 1
    homelab.wait(lambda: autoscaler.lines(CA_DELETED), "CA to delete the instance that never registered")
    increases = len(autoscaler.lines(CA_INCREASE))
    homelab.wait(lambda: len(autoscaler.lines(CA_INCREASE)) > increases, "CA to try the group again", timeout=60)
    # The machine cools down, so CA's next try is refused instead of booting it again under the instance id CA
    # has just given up on (which it would delete again at once: a Job every few hundred milliseconds).
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"hangs": 1}
    assert homelab.kube_node("hangs") is None
    homelab.assert_ca_was_content(unregistered_removed=True, allowed_provider_errors=REFUSED)


def test_the_operator_sigkilled_during_a_scale_up_comes_back_without_a_second_job(
    autoscaled: AutoscaledHomelab,
) -> None:
    homelab = autoscaled
    homelab.add_group(GROUP, max_size=3)
    for machine in ("m1", "m2", "m3"):
        homelab.add_machine(machine, GROUP, boot_seconds=8.0)
    homelab.start_simulator()
    operator = homelab.start_operator()
    homelab.start_autoscaler("--expander=least-waste")
    homelab.wait(lambda: homelab.ca_group_status(GROUP), "CA to list the group")

    homelab.add_workload("build", replicas=2, node_selector={POOL_LABEL: GROUP})
    booting = homelab.wait(
        lambda: len(jobs := homelab.jobs_per_machine(OperationKind.STARTUP)) == 2 and sorted(jobs),
        "CA's scale-up to start two boots",
    )

    operator.kill()
    time.sleep(2.0)  # a CA loop or two with the operator gone
    homelab.start_operator()

    assert sorted(homelab.wait(lambda: len(nodes := homelab.bound_nodes("build")) == 2 and nodes,
                               "both pods to be bound after the restart")) == booting
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {machine: 1 for machine in booting}
    assert homelab.highest_target(GROUP) == 2, "CA converged on two machines and never asked for a third"
    homelab.assert_ca_was_content(allowed_provider_errors=OPERATOR_DOWN)
