"""Which group the real Cluster Autoscaler grows: the one the pods fit, and with `--expander=price` the cheaper one.

Nodeselector: pods that select one group's pool label make CA grow that group and leave the other alone (its
template fails the NodeAffinity predicate). Price: pods that both groups fit; CA's price expander asks
`PricingNodePrice` for each group's template node and picks the group whose machines cost less per hour.
Template labels: pods select a label only the Group's template declares; the operator puts it on the new member's
Node, so the one scale-up is enough.
"""

from __future__ import annotations

import re

from ca_support import POOL_LABEL, AutoscaledHomelab

from schemas.node import OperationKind

CLASS_LABEL = "homelab.example/class"
GROUP_NAME = "storage"
_PRICED = re.compile(r"gRPC call PricingNodePrice")


def test_ca_grows_only_the_group_whose_template_the_pods_select(autoscaled: AutoscaledHomelab) -> None:
    homelab = autoscaled
    homelab.add_group("cpu", max_size=2)
    homelab.add_group("gpu", max_size=2)
    homelab.add_machine("cpu-1", "cpu")
    homelab.add_machine("cpu-2", "cpu")
    homelab.add_machine("gpu-1", "gpu")
    homelab.add_machine("gpu-2", "gpu")
    homelab.start_simulator()
    homelab.start_operator()
    homelab.start_autoscaler("--expander=least-waste")
    homelab.wait(lambda: homelab.ca_group_status("cpu") and homelab.ca_group_status("gpu"), "CA to list both groups")

    homelab.add_workload("render", replicas=1, node_selector={POOL_LABEL: "gpu"})

    (bound,) = homelab.wait(lambda: homelab.bound_nodes("render"), "the pod to be bound to a new gpu Node")
    assert bound.startswith("gpu-")
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {bound: 1}
    assert homelab.highest_target("cpu") == 0, "the group the pods do not select was never grown"
    assert homelab.highest_target("gpu") == 1
    assert homelab.state("cpu-1") == homelab.state("cpu-2") == "Shutdown"
    homelab.assert_ca_was_content()


def test_the_price_expander_picks_the_group_whose_machines_cost_less(autoscaled: AutoscaledHomelab) -> None:
    homelab = autoscaled
    shared = {CLASS_LABEL: "general"}
    homelab.add_group("dear", max_size=2, nodeLabels={POOL_LABEL: "dear", **shared})
    homelab.add_group("cheap", max_size=2, nodeLabels={POOL_LABEL: "cheap", **shared})
    homelab.add_machine("dear-1", "dear", hourly_price="0.90")
    homelab.add_machine("cheap-1", "cheap", hourly_price="0.05")
    homelab.start_simulator()
    homelab.start_operator()
    homelab.start_autoscaler("--expander=price")
    homelab.wait(lambda: homelab.ca_group_status("dear") and homelab.ca_group_status("cheap"), "CA to list both groups")

    homelab.add_workload("batch", replicas=1, node_selector=shared)

    assert homelab.wait(lambda: homelab.bound_nodes("batch"), "the pod to be bound") == ["cheap-1"]
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"cheap-1": 1}
    assert homelab.highest_target("dear") == 0
    assert homelab.autoscaler is not None
    assert homelab.autoscaler.lines(_PRICED), "CA priced the groups through PricingNodePrice"
    homelab.assert_ca_was_content()


def test_pods_that_select_a_template_label_the_machines_lack_are_bound_after_the_scale_up(
    autoscaled: AutoscaledHomelab,
) -> None:
    # The template promises `disk: ssd`; the machines' kubelets register without it. The operator puts it on the
    # member's Node, so the pods CA scaled up for are bound instead of staying Pending (issue seen with the real CA).
    homelab = autoscaled
    disk = {"homelab.example/disk": "ssd"}
    homelab.add_group(GROUP_NAME, max_size=2, template={"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                                                         "labels": disk})
    homelab.add_machine("m1", GROUP_NAME)
    homelab.add_machine("m2", GROUP_NAME)
    homelab.start_simulator()
    homelab.start_operator()
    homelab.start_autoscaler("--expander=least-waste")
    homelab.wait(lambda: homelab.ca_group_status(GROUP_NAME), "CA to list the group")

    homelab.add_workload("db", replicas=1, node_selector=disk)

    (bound,) = homelab.wait(lambda: homelab.bound_nodes("db"), "the pod to be bound to the new machine")
    node = homelab.kube_node(bound)
    assert node is not None
    assert node["metadata"]["labels"]["homelab.example/disk"] == "ssd"
    assert homelab.highest_target(GROUP_NAME) == 1, "one scale-up, not a second for pods the first could not take"
    homelab.assert_ca_was_content()
