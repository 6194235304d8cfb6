"""The real Cluster Autoscaler scales a group up from zero for pending pods, and back down when they are gone.

Scale-up: two pods that only the Group's template fits (its pool label, its taint tolerated, 3 of its 4 CPUs each)
are pending; CA reads the template (`NodeGroupTemplateNodeInfo`), asks for two machines (`IncreaseSize`), the
operator powers them on through one startup Job each, their kubelets register, and the real scheduler binds the
pods to the new Nodes. Scale-down: once the pods are gone, CA finds the Nodes unneeded and calls `DeleteNodes`; the
operator cordons each, runs its shutdown Job, and the machine ends `Shutdown` with its Node deleted.
"""

from __future__ import annotations

import re

from ca_support import POOL_LABEL, AutoscaledHomelab

from schemas.node import OperationKind

GROUP = "workers"
MACHINES = ("m1", "m2", "m3")
_TEMPLATE_CALL = re.compile(r"NodeGroupTemplateNodeInfo")


def test_ca_scales_up_from_zero_for_pending_pods_then_removes_the_empty_nodes(autoscaled: AutoscaledHomelab) -> None:
    homelab = autoscaled
    homelab.add_group(GROUP, max_size=3)
    for priority, machine in enumerate(MACHINES):
        homelab.add_machine(machine, GROUP, priority=priority)
    homelab.start_simulator()
    homelab.start_operator()
    homelab.start_autoscaler("--expander=least-waste")
    homelab.wait(lambda: homelab.ca_group_status(GROUP), "CA to list the group in its status")

    homelab.add_workload("build", replicas=2, node_selector={POOL_LABEL: GROUP})

    bound = homelab.wait(lambda: len(nodes := homelab.bound_nodes("build")) == 2 and nodes,
                         "both pending pods to be bound to new Nodes")
    assert bound == ["m2", "m3"], "the two highest-priority machines were powered on and took the pods"
    for machine in ("m2", "m3"):
        homelab.wait(lambda machine=machine: homelab.state(machine) == "Ready",  # type: ignore[misc]
                     f"{machine}'s status to say Ready")
        node = homelab.kube_node(machine)
        assert node is not None
        assert node["spec"]["providerID"] == homelab.instance_id(machine)
    assert homelab.state("m1") == "Shutdown"
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"m2": 1, "m3": 1}
    assert homelab.autoscaler is not None
    assert homelab.autoscaler.lines(_TEMPLATE_CALL), "CA built the scale-from-zero option from our template"

    homelab.scale_workload("build", 0)

    for machine in ("m2", "m3"):
        homelab.wait(lambda machine=machine: homelab.state(machine) == "Shutdown"  # type: ignore[misc]
                     and homelab.kube_node(machine) is None, f"CA to remove {machine} and its Node to be deleted")
    assert homelab.jobs_per_machine(OperationKind.SHUTDOWN) == {"m2": 1, "m3": 1}
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"m2": 1, "m3": 1}
    assert homelab.status("m2")["reason"] == "PoweredOff"
    homelab.assert_ca_was_content()
    assert homelab.highest_target(GROUP) == 2

