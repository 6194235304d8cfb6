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


def _wired(homelab: Homelab, ports: list[FakePowerPort]) -> Any:
    """A power-port factory whose commands press the simulated machine m1's power button."""
    machine = homelab.simulators[-1].machine("m1", NAMESPACE)

    def switch(key: str, on: bool) -> None:
        if on:
            machine.power_on_unexpectedly()
        else:
            machine.power_off_unexpectedly()

    def power(api_client: Any, report: Any) -> FakePowerPort:
        port = FakePowerPort(tell=report, on_switch=switch, read_state=lambda key: machine.powered_on)
        ports.append(port)
        return port

    return power


def test_a_natively_powered_machine_scales_up_and_down_through_its_readback(homelab: Homelab) -> None:
    homelab.add_group(max_size=1, powerReadback={"transitionInterval": "200ms", "steadyInterval": "1s",
                                                 "powerOnGrace": "10s"})
    homelab.add_machine("m1", power=IPMI)
    homelab.simulate(simulated("m1"))
    ports: list[FakePowerPort] = []
    ca = homelab.start_operator(power=_wired(homelab, ports))
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


def test_an_operator_killed_mid_power_on_never_resends_that_attempt_and_the_readback_recovers(
    homelab: Homelab,
) -> None:
    homelab.add_group(max_size=1, powerReadback={"transitionInterval": "200ms", "steadyInterval": "1s",
                                                 "powerOnGrace": "2s"})
    homelab.add_machine("m1", power=IPMI)
    homelab.simulate(simulated("m1"))
    ports: list[FakePowerPort] = []
    first = homelab.start_operator(power=_wired(homelab, ports))
    ports[0].hold()  # the BMC has not answered (nor switched) when the operator dies
    first.increase_size(1)
    wait_for(lambda: ports[0].commands(KEY) == [(PowerAction.POWER_ON, 1)], what="the power-on sent")
    homelab.wait_state("m1", "StartingUp")
    homelab.stop_operator(first, kill=True)

    second = homelab.start_operator(power=_wired(homelab, ports))
    homelab.wait_state("m1", "Ready")
    assert second.target_size() == 1
    restarted = ports[1]
    # Attempt 1 is never sent again; the readback found the machine still off after the grace and sent attempt 2.
    assert restarted.commands(KEY) == [(PowerAction.POWER_ON, 2)]
    assert restarted.readbacks(KEY) >= 1
    assert "PowerOnRetry" in homelab.event_reasons("m1")
