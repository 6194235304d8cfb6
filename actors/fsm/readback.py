"""The arithmetic of native power: when to read a machine's power state back, and how long a command may take.

Kept apart from the transition table so the rules are small pure functions the table, the shell (which gives each
power request its deadline) and the status views share. Only machines whose `spec.power` names a BMC (ipmi or
redfish) can be read back; Wake-on-LAN and SSH cannot, and such machines keep the Job-era rules (a power-off is
confirmed by the Kubernetes Node going away).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Final

from actors.power_port import PowerAction
from schemas.common import parse_duration
from schemas.node import NodeState
from schemas.power import DriverName, PowerSpec

TRANSITION_STATES: Final = frozenset({NodeState.STARTING_UP, NodeState.SHUTTING_DOWN})
"""States in which a machine is being switched, so its power state is read back at the fast interval."""
UNPOLLED_STATES: Final = frozenset({NodeState.MAINTENANCE})
"""States in which the machine is in a person's hands: no readback."""
READBACK_DEADLINE_SECONDS: Final = 10.0
"""A readback that takes longer failed (TimedOut): a BMC answers a power-state query in well under a second."""
FORCE_OFF_DEADLINE_SECONDS: Final = 30.0
MINIMUM_COMMAND_DEADLINE_SECONDS: Final = 5.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def reads_back(power: PowerSpec | None) -> bool:
    """Whether the machine's power state can be read back (its spec.power names a BMC). Pure."""
    return power is not None and power.readback_driver is not None


def force_off_after_seconds(power: PowerSpec | None) -> float | None:
    """How long a graceful power-off may take before the BMC cuts the power; None without a BMC. Pure."""
    if power is None:
        return None
    if power.ipmi is not None:
        return parse_duration(power.ipmi.force_off_after)
    if power.redfish is not None:
        return parse_duration(power.redfish.force_off_after)
    return None


def readback_interval_seconds(state: NodeState, transition_seconds: float, steady_seconds: float) -> float:
    """The fast interval while the machine is switched, the slow one otherwise. Pure."""
    return transition_seconds if state in TRANSITION_STATES else steady_seconds


def next_readback(
    state: NodeState,
    last_requested: datetime | None,
    since: datetime | None,
    transition_seconds: float,
    steady_seconds: float,
) -> tuple[datetime, datetime]:
    """(basis, due): when the next readback is due, counted from the last one asked for, else from `since`. Pure.

    A machine that just entered a transition is due at once when its last readback is older than the fast interval.
    """
    basis = last_requested or since or _EPOCH
    return basis, basis + timedelta(seconds=readback_interval_seconds(state, transition_seconds, steady_seconds))


def first_readback_after_restart(
    name: str, state: NodeState, now: datetime, transition_seconds: float, steady_seconds: float
) -> datetime:
    """When a restarted operator counts a machine's last readback as asked for. Pure.

    A machine being switched is read back at once (its operation waits on it); the others are spread over one
    steady interval by their name, so thousands of machines do not all query their BMCs in the first second.
    """
    interval = readback_interval_seconds(state, transition_seconds, steady_seconds)
    if state in TRANSITION_STATES:
        return now - timedelta(seconds=interval)
    fraction = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2**32
    return now - timedelta(seconds=interval * (1 - fraction))


def command_deadline_seconds(
    action: PowerAction, power: PowerSpec | None, power_on_grace_seconds: float, shutdown_timeout_seconds: float
) -> float:
    """How long the power port may spend on one request, retries included. Pure.

    A power-on must be answered within half the grace after which its readback is checked; a graceful power-off
    before the forced one would follow (or, without a BMC, within half the shutdown timeout).
    """
    match action:
        case PowerAction.READ_POWER_STATE:
            return READBACK_DEADLINE_SECONDS
        case PowerAction.FORCE_OFF:
            return FORCE_OFF_DEADLINE_SECONDS
        case PowerAction.POWER_ON:
            return max(MINIMUM_COMMAND_DEADLINE_SECONDS, power_on_grace_seconds / 2)
        case PowerAction.POWER_OFF:
            force_after = force_off_after_seconds(power)
            bound = force_after if force_after is not None else shutdown_timeout_seconds / 2
            return max(MINIMUM_COMMAND_DEADLINE_SECONDS, bound)


def driver_text(driver: DriverName | None) -> str:
    """`ipmi`, or `no driver` when the combination has none for the action. Pure."""
    return driver.value if driver is not None else "no driver"
