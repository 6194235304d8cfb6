"""Wake-on-LAN: power a machine on with a magic packet (six 0xFF bytes, then its MAC sixteen times) over UDP.

Fire and forget: nothing answers a magic packet, so success means only that the packet left this host. The packet
is a broadcast by default, which reaches the machine only from its own layer-2 segment (the operator pod needs
`hostNetwork`, or the broadcast address of a directed-broadcast-enabled router or relay); docs/power/wake-on-lan.md.
"""

from __future__ import annotations

import socket
from typing import Final

from actors.power_port import PowerFailure
from power_drivers.driver import PowerOnOnly
from power_drivers.errors import PowerDriverError
from schemas.power import DriverName, WakeOnLan

SYNC_STREAM: Final = b"\xff" * 6
MAC_REPEATS: Final = 16


def magic_packet(mac_address: str) -> bytes:
    """The 102-byte packet that wakes the NIC with `mac_address` (colons or dashes)."""
    mac = bytes.fromhex(mac_address.replace(":", "").replace("-", ""))
    if len(mac) != 6:
        raise ValueError(f"not a MAC address: {mac_address!r}")
    return SYNC_STREAM + mac * MAC_REPEATS


class WakeOnLanDriver(PowerOnOnly):
    """Sends the magic packet to `broadcastAddress:port`."""

    def __init__(self, machine: str, spec: WakeOnLan, timeout_seconds: float) -> None:
        self._spec = spec
        self._timeout = timeout_seconds
        self.label = f"{machine} (wakeOnLan {spec.mac_address} via {spec.broadcast_address}:{spec.port})"

    @property
    def name(self) -> DriverName:
        return DriverName.WAKE_ON_LAN

    def power_on(self) -> None:
        packet = magic_packet(self._spec.mac_address)
        address = self._spec.broadcast_address.strip("[]")
        try:
            family = socket.getaddrinfo(address, self._spec.port, type=socket.SOCK_DGRAM)[0][0]
        except socket.gaierror as error:
            raise PowerDriverError(PowerFailure.UNREACHABLE, f"{self.label}: cannot resolve: {error}") from error
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sender:
                sender.settimeout(self._timeout)
                if family == socket.AF_INET:
                    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sender.sendto(packet, (address, self._spec.port))
        except TimeoutError as error:
            raise PowerDriverError(PowerFailure.TIMED_OUT, f"{self.label}: sending timed out") from error
        except OSError as error:
            raise PowerDriverError(
                PowerFailure.UNREACHABLE, f"{self.label}: cannot send: {error.strerror or error}"
            ) from error
