"""Refusals raised by the pure state machines.

Separate from the machines so shells and the gateway can map them (to log levels, to gRPC status codes)
without importing the tables. Every error keeps its constructor arguments as `args`, so it pickles and
can travel in a reply message.

    OperatorError (actors.errors)
    └── FsmError
        ├── InvalidTransition   an event that is not allowed in the machine's current state
        ├── NotEnoughMachines   a scale-up asked for more machines than may be powered on
        ├── CannotDecrease      a target decrease that would need registered machines stopped
        └── DeleteRefused       a machine that must not be powered off now
"""

from __future__ import annotations

from typing import Any

from actors.errors import OperatorError


class FsmError(OperatorError):
    """Base of every refusal of the pure core."""


class InvalidTransition(FsmError):
    """`event` is not allowed in `state`; the machine is unchanged."""

    def __init__(self, state: str, event: Any, reason: str) -> None:
        super().__init__(state, event, reason)
        self.state = state
        self.event = event
        self.reason = reason

    def __str__(self) -> str:
        return f"{type(self.event).__name__} is not allowed in state {self.state}: {self.reason}"


class NotEnoughMachines(FsmError):
    """Fewer machines may be powered on than were requested; none were chosen."""

    def __init__(self, requested: int, eligible: int, reason: str) -> None:
        super().__init__(requested, eligible, reason)
        self.requested = requested
        self.eligible = eligible
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot power on {self.requested} machine(s), {self.eligible} eligible: {self.reason}"


class CannotDecrease(FsmError):
    """Fewer unregistered boots exist than the decrease asks to cancel; none were chosen."""

    def __init__(self, requested: int, available: int) -> None:
        super().__init__(requested, available)
        self.requested = requested
        self.available = available

    def __str__(self) -> str:
        return (
            f"cannot cancel {self.requested} boot(s): only {self.available} machine(s) are booting without a "
            "registered Kubernetes Node, and registered nodes are only removed through DeleteNodes"
        )


class DeleteRefused(FsmError):
    """A machine that must not be powered off now (maintenance, or kept on by its policy)."""

    def __init__(self, machine: str, reason: str) -> None:
        super().__init__(machine, reason)
        self.machine = machine
        self.reason = reason

    def __str__(self) -> str:
        return f"machine {self.machine} cannot be powered off: {self.reason}"
