"""An exercise boot with the real Cluster Autoscaler: the operator boots, checks and powers off a machine alone.

m1 was recorded off two hours ago and the Group exercises every hour, so the operator exercises it as soon as it
starts; m2 is new (off since the operator first saw it). CA runs all along. While m1 is exercised, CA must never see
it: the group's target stays 0 (the sampler reads it several times a second), NodeGroupNodes lists nothing, and the
registered Kubernetes Node, tainted with our exercise taint, is claimed by no group, so CA neither counts it in the
group nor considers it for scale-down. The slow simulated power-off keeps the Node registered through several CA
loops.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ca_support import AutoscaledHomelab

from schemas.labels import EXERCISE_TAINT
from schemas.node import OperationKind

GROUP = "spares"
CA_CHANGED_SIZE = re.compile(r"gRPC call NodeGroup(?:IncreaseSize|DeleteNodes|DecreaseTargetSize)")
CA_ASKED_FOR_M1 = re.compile(r"gRPC call NodeGroupForNode for node m1 - homelab://homelab/m1")
CA_LEFT_M1_ALONE = re.compile(r"Node m1 should not be processed by cluster autoscaler \(no node group config\)")


def _exercised_node_seen(homelab: AutoscaledHomelab, seen: dict[str, Any]) -> bool:
    """Record m1's Kubernetes Node while it is registered, and CA's view of the group meanwhile."""
    node = homelab.kube_node("m1")
    if node is not None:
        taints = {taint.get("key") for taint in node["spec"].get("taints") or ()}
        seen["tainted"] = seen.get("tainted", False) or EXERCISE_TAINT in taints
        entry = homelab.ca_group_status(GROUP)
        if entry is not None:
            seen.setdefault("ca_views", []).append(entry)
    record = homelab.status("m1").get("lastExercise") or {}
    return record.get("outcome") == "Succeeded"


def test_ca_never_sees_a_machine_the_operator_exercises(autoscaled: AutoscaledHomelab) -> None:
    homelab = autoscaled
    homelab.add_group(GROUP, max_size=2, exercise={"every": "1h"})
    homelab.add_machine("m1", GROUP, boot_seconds=5.0, shutdown_seconds=10.0)
    homelab.add_machine("m2", GROUP)
    homelab.record_off_since("m1", datetime.now(UTC) - timedelta(hours=2))
    homelab.start_simulator()
    homelab.start_operator()
    autoscaler = homelab.start_autoscaler()

    seen: dict[str, Any] = {}
    homelab.wait(lambda: _exercised_node_seen(homelab, seen), "the operator to exercise m1 and power it off")

    assert seen.get("tainted"), "m1's Node carried the exercise taint while registered"
    assert homelab.state("m1") == "Shutdown"
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {"m1": 1}
    assert homelab.jobs_per_machine(OperationKind.SHUTDOWN) == {"m1": 1}
    assert homelab.highest_target(GROUP) == 0, "CA was never told of a target for the exercise"
    assert autoscaler.lines(CA_CHANGED_SIZE) == [], "CA never scaled the group, up or down"
    # CA asked about the registered Node with its providerID, was told "no group", and left it out of scale-down.
    assert autoscaler.lines(CA_ASKED_FOR_M1), "CA saw m1's Node registered"
    assert autoscaler.lines(CA_LEFT_M1_ALONE), "CA left m1 out of its scale-down processing"
    views = seen.get("ca_views") or []
    assert views, "CA's status was read while m1's Node was registered"
    registered = {view["health"]["nodeCounts"]["registered"]["total"] for view in views}
    targets = {view["health"]["cloudProviderTarget"] for view in views}
    assert (registered, targets) == ({0}, {0}), f"CA never counted m1 in the group: {views[-1]}"
    homelab.assert_ca_was_content()
