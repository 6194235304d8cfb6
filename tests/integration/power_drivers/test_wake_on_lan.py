"""Wake-on-LAN: the driver's magic packet reaches a UDP listener that checks it, through the executor."""

from __future__ import annotations

from power_harness import Harness

from actors.power_port import PowerAction, PowerFailure
from schemas.power import DriverName
from sim.machines.emulators import WakeOnLanListener, magic_packet_target
from tests.support.polling import wait_for

MAC = "52:54:00:AB:cd:01"


class Switch:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


def test_power_on_sends_one_valid_magic_packet_for_the_machines_mac(harness: Harness) -> None:
    harness.start()
    switch = Switch()
    with WakeOnLanListener() as listener:
        listener.add(MAC, switch.wake)
        power = {
            "wakeOnLan": {"macAddress": MAC, "broadcastAddress": "127.0.0.1", "port": listener.port},
            "ssh": _ssh_block(),
        }

        outcome = harness.run(power, PowerAction.POWER_ON)

        assert (outcome.succeeded, outcome.driver, outcome.failure) == (True, DriverName.WAKE_ON_LAN, None)
        wait_for(lambda: switch.woken == 1, timeout=5, what="the machine to be woken")
        assert listener.packets == ["52:54:00:ab:cd:01"]
        assert listener.rejected == 0
    assert (
        harness.sample(
            "homelab_autoscaler_power_operations_total",
            {"driver": "wakeOnLan", "action": "power-on", "outcome": "succeeded"},
        )
        == 1.0
    )


def test_the_listener_refuses_what_is_not_a_magic_packet() -> None:
    mac = bytes.fromhex("525400abcd01")
    assert magic_packet_target(b"\xff" * 6 + mac * 16) == "52:54:00:ab:cd:01"
    assert magic_packet_target(b"\xff" * 6 + mac * 15) is None
    assert magic_packet_target(b"\xfe" + b"\xff" * 5 + mac * 16) is None
    assert magic_packet_target(b"\xff" * 6 + mac * 15 + bytes.fromhex("525400abcd02")) is None


def test_wake_on_lan_alone_cannot_read_back_or_power_off(harness: Harness) -> None:
    harness.start()
    power = {"wakeOnLan": {"macAddress": MAC}, "ssh": _ssh_block()}

    outcome = harness.run(power, PowerAction.READ_POWER_STATE)

    assert (outcome.succeeded, outcome.failure, outcome.driver) == (False, PowerFailure.UNSUPPORTED, None)
    assert "homelab/box-1" in outcome.message


def _ssh_block() -> dict[str, object]:
    return {
        "host": "127.0.0.1",
        "user": "power",
        "privateKey": {"name": "ssh-key", "key": "id_ed25519"},
        "knownHosts": "127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummy",
    }
