"""The real Cluster Autoscaler scales a group whose machine the operator switches natively, with readback.

The machine has no power Jobs: its Node resource's `spec.power` names a Wake-on-LAN NIC and an IPMI BMC, both
simulated on loopback (`sim.machines.native_power`), and the BMC's credentials are a Secret on the real API server.
CA scales the group up for a pending pod; the operator sends the magic packet itself (no Job), the kubelet
registers, the real scheduler binds the pod, and the BMC reads the machine back On into the Node resource's
status. Once the pod is gone CA removes the Node; the operator powers the machine off through the BMC, and only
the readback Off confirms it: then the Kubernetes Node is deleted. Everything is asserted from what kubectl and
CA's log show, plus what the simulated NIC and BMC received.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ca_support import NAMESPACE, POOL_LABEL, AutoscaledHomelab

from schemas.node import OperationKind

GROUP = "native"
MACHINE = "bmc-1"
CA_INCREASED = re.compile(rf"gRPC call NodeGroupIncreaseSize for node group {NAMESPACE}/{GROUP}")
CA_DELETED = re.compile(rf"gRPC call NodeGroupDeleteNodes for node group {NAMESPACE}/{GROUP}")


def test_ca_scales_a_natively_powered_machine_up_by_wake_on_lan_and_down_by_ipmi_with_readback(
    autoscaled: AutoscaledHomelab,
) -> None:
    homelab = autoscaled
    # Readbacks while switching every second, so each step is confirmed within a CA scan or two.
    homelab.add_group(GROUP, max_size=1, powerReadback={"transitionInterval": "1s"})
    homelab.add_native_machine(MACHINE, GROUP)
    simulator = homelab.start_simulator()
    native = homelab.start_native_power()
    machine = simulator.machine(MACHINE)
    bmc = native.bmcs[(NAMESPACE, MACHINE)]
    homelab.start_operator()
    autoscaler = homelab.start_autoscaler()
    homelab.wait(lambda: homelab.ca_group_status(GROUP), "CA to list the group in its status")
    assert homelab.status(MACHINE).get("powerReadback", {}).get("state") in (None, "Off")

    homelab.add_workload("native-app", replicas=1, node_selector={POOL_LABEL: GROUP})

    homelab.wait(lambda: homelab.bound_nodes("native-app") == [MACHINE], "the pending pod to be bound to bmc-1")
    homelab.wait(lambda: homelab.state(MACHINE) == "Ready", "bmc-1's status to say Ready")
    on = homelab.wait(lambda: _readback(homelab, MACHINE, "On"), "the BMC's readback On in bmc-1's status")
    assert on["driver"] == "ipmi"
    node = homelab.kube_node(MACHINE)
    assert node is not None
    assert node["spec"]["providerID"] == homelab.instance_id(MACHINE)
    assert autoscaler.lines(CA_INCREASED), "CA asked for the machine"
    # Switched on by the magic packet, not by a Job nor the BMC.
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {}
    assert machine.boots == 1
    assert bmc.commands == []
    assert any("wakeOnLan" in message for message in _events(homelab, MACHINE, "PoweringOn"))

    homelab.scale_workload("native-app", 0)

    homelab.wait(lambda: homelab.state(MACHINE) == "Shutdown" and homelab.kube_node(MACHINE) is None,
                 "CA to remove bmc-1, the BMC to power it off and its Node to be deleted")
    assert autoscaler.lines(CA_DELETED), "CA removed the machine"
    off = _readback(homelab, MACHINE, "Off")
    assert off is not None, f"the power-off is confirmed by the readback: {homelab.status(MACHINE)}"
    assert _at(off) >= _at(on)
    status = homelab.status(MACHINE)
    assert status["reason"] == "PoweredOff"
    assert bmc.commands == ["soft"], "one graceful power-off through IPMI, never a second command"
    assert machine.shutdowns == 1
    assert any("ipmi" in message for message in _events(homelab, MACHINE, "PoweredOff"))
    assert homelab.jobs_per_machine(OperationKind.SHUTDOWN) == {}
    assert homelab.jobs_per_machine(OperationKind.STARTUP) == {}
    homelab.assert_ca_was_content()
    assert homelab.highest_target(GROUP) == 1


def _readback(homelab: AutoscaledHomelab, machine: str, state: str) -> dict[str, Any] | None:
    readback = homelab.status(machine).get("powerReadback") or {}
    return dict(readback) if readback.get("state") == state else None


def _at(readback: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(readback["observedAt"]).replace("Z", "+00:00"))


def _events(homelab: AutoscaledHomelab, machine: str, reason: str) -> list[str]:
    selector = f"involvedObject.name={machine},reason={reason}"
    events = homelab.rest.get(f"/api/v1/namespaces/{NAMESPACE}/events", {"fieldSelector": selector})
    return [str(event.get("message") or "") for event in events.get("items") or ()]
