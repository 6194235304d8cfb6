"""What every driver offers the executor: the three operations, each optional, and its serialisation key.

A driver is built for one try of one request (credentials included) and thrown away after it. Operations a driver
cannot do raise `PowerFailure.UNSUPPORTED`; the executor never retries those.
"""

from __future__ import annotations

from typing import Protocol

from actors.power_port import PowerFailure
from power_drivers.errors import PowerDriverError
from schemas.power import DriverName, PowerState


class PowerDriver(Protocol):
    """One machine's power control through one protocol."""

    @property
    def name(self) -> DriverName: ...

    def power_on(self) -> None:
        """Apply power (returns once the device accepted the command, not once the machine is up)."""

    def power_off(self, force: bool) -> None:
        """Shut down gracefully, or cut the power when `force`."""

    def read_power_state(self) -> PowerState:
        """Whether the machine is on now."""


class PowerOnOnly:
    """Mixin for drivers that can only power on."""

    label: str

    def power_off(self, force: bool) -> None:
        raise PowerDriverError(PowerFailure.UNSUPPORTED, f"{self.label}: cannot power off")

    def read_power_state(self) -> PowerState:
        raise PowerDriverError(PowerFailure.UNSUPPORTED, f"{self.label}: cannot read the power state")
