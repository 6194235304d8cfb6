"""A machine powered natively (spec.power) end to end: the operator sends power commands instead of Jobs and
follows the power-state readback.

The real operator runs against its own fake API with the machine simulator playing the machine; the power port is
the recording fake (the drivers themselves are tested against protocol emulators in their own package), wired so
that its commands press the simulated machine's power button and its readbacks read whether the machine is on.
"""

from __future__ import annotations

from typing import Any

from actors.power_port import PowerAction
from tests.support.operator_homelab import NAMESPACE, RUNNING, Homelab, simulated
from tests.support.polling import wait_for
from tests.support.power_fakes import FakePowerPort

IPMI = {"ipmi": {"host": "10.0.0.5", "credentials": {"name": "bmc-m1"}, "forceOffAfter": "5s"}}
KEY = f"{NAMESPACE}/m1"


def test_a_natively_powered_machine_scales_up_and_down_through_its_readback(homelab: Homelab) -> None:
    homelab.add_group(max_size=1, powerReadback={"transitionInterval": "200ms", "steadyInterval": "1s",
                                                 "powerOnGrace": "10s"})
    homelab.add_machine("m1", power=IPMI)
    simulator = homelab.simulate(simulated("m1"))
    machine = simulator.machine("m1", NAMESPACE)
    ports: list[FakePowerPort] = []

    def switch(key: str, on: bool) -> None:
        if on:
            machine.power_on_unexpectedly()
        else:
            machine.power_off_unexpectedly()

    def power(api_client: Any, report: Any) -> FakePowerPort:
        port = FakePowerPort(tell=report, on_switch=switch, read_state=lambda key: machine.powered_on)
        ports.append(port)
        return port

    ca = homelab.start_operator(power=power)
    ca.increase_size(1)

    status = homelab.wait_state("m1", "Ready")["status"]
    provider_id = status["providerID"]
    assert [(instance.id, instance.status.instanceState) for instance in ca.nodes()] == [(provider_id, RUNNING)]
    wait_for(
        lambda: (homelab.machine("m1")["status"].get("powerReadback") or {}).get("state") == "On",
        what="the readback On in the status",
    )
    assert homelab.created_jobs("m1") == [], "no Job for a machine powered natively"

    ca.delete_nodes(provider_id, names=["m1"])
    off = homelab.wait_state("m1", "Shutdown")["status"]
    assert off["reason"] == "PoweredOff"
    assert off["powerReadback"]["state"] == "Off"
    assert off["powerReadback"]["driver"] == "ipmi"
    wait_for(lambda: homelab.kube_node("m1") is None, what="the Kubernetes Node deleted after the readback Off")
    (port,) = ports
    assert port.commands(KEY) == [(PowerAction.POWER_ON, 1), (PowerAction.POWER_OFF, 2)], "each attempt once"
    assert {"PoweringOn", "Booted", "PoweringOff", "PoweredOff"} <= homelab.event_reasons("m1")
    assert homelab.created_jobs() == []
