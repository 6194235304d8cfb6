"""A recording power port that plays machines' BMCs, for the actor and operator tests of native power (spec.power).

It stands in for our own seam (`actors.power_port.PowerPort`), never for a protocol library: the drivers themselves
are tested against protocol emulators in their own package. Each machine is a `FakeBmc` the test shapes: a healthy
one switches and reads back at once; others are flaky, say "on" but stay off, ignore a graceful off, or reject the
credentials. Outcomes are told to the request's `reply_to` through the runtime, like the real port's workers do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.power_port import PowerAction, PowerFailure, PowerOutcome, PowerRequest
from schemas.power import PowerState


@dataclass
class FakeBmc:
    """How one machine answers its drivers."""

    on: bool = False
    stays_off: bool = False
    """Answers a power-on with success but stays off (a dead PSU, a BIOS that ignores the command)."""
    ignores_graceful_off: bool = False
    """A graceful power-off is accepted but the machine stays on (a hung OS): only a force-off switches it off."""
    failure: PowerFailure | None = None
    """Every request fails with this (wrong credentials, a missing Secret, TLS verification)."""
    flaky: int = 0
    """The next this many requests fail as Unreachable (after the real port's own retries)."""
    readback_failure: PowerFailure | None = None
    """Readbacks alone fail with this; commands work."""


@dataclass
class FakePowerPort:
    """Records every request; answers each at once from its machine's `FakeBmc` unless the test holds answers.

    `on_switch(machine_key, on)` is called whenever a command switches a machine (an integration test powers its
    simulated machine from it); `read_state(machine_key)`, when given, is what a readback reads instead of the
    `FakeBmc`'s own flag.
    """

    tell: Callable[[Any, object], None] | None = None
    on_switch: Callable[[str, bool], None] | None = None
    read_state: Callable[[str], bool] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _requests: list[PowerRequest] = field(default_factory=list)
    _bmcs: dict[str, FakeBmc] = field(default_factory=dict)
    _held: list[PowerRequest] | None = None

    def bmc(self, machine_key: str) -> FakeBmc:
        """The machine's BMC (created healthy and off on first use); change its fields to shape its answers."""
        with self._lock:
            return self._bmcs.setdefault(machine_key, FakeBmc())

    def submit(self, request: PowerRequest) -> None:
        with self._lock:
            self._requests.append(request)
            if self._held is not None:
                self._held.append(request)
                return
        self._answer(request)

    def hold(self) -> None:
        """Keep answers back from now on (a BMC that is slow to answer)."""
        with self._lock:
            self._held = []

    def release(self) -> int:
        """Answer the requests held back, in order, and stop holding; how many there were."""
        with self._lock:
            held, self._held = self._held or [], None
        for request in held:
            self._answer(request)
        return len(held)

    @property
    def requests(self) -> list[PowerRequest]:
        with self._lock:
            return list(self._requests)

    def commands(self, machine_key: str | None = None) -> list[tuple[PowerAction, int]]:
        """(action, attempt) of every command sent (readbacks left out), in order."""
        return [
            (request.action, request.attempt) for request in self.requests
            if request.action is not PowerAction.READ_POWER_STATE
            and (machine_key is None or request.machine_key == machine_key)
        ]

    def readbacks(self, machine_key: str | None = None) -> int:
        return sum(
            1 for request in self.requests
            if request.action is PowerAction.READ_POWER_STATE
            and (machine_key is None or request.machine_key == machine_key)
        )

    def _answer(self, request: PowerRequest) -> None:
        outcome = self._play(request)
        assert self.tell is not None, "FakePowerPort.tell must be set to deliver outcomes"
        self.tell(request.reply_to, outcome)

    def _play(self, request: PowerRequest) -> PowerOutcome:
        bmc = self.bmc(request.machine_key)
        driver = request.driver

        def failed(failure: PowerFailure, message: str) -> PowerOutcome:
            return PowerOutcome(request.machine_key, request.action, request.attempt, driver, False,
                                failure=failure, message=message)

        with self._lock:
            if bmc.failure is not None:
                return failed(bmc.failure, f"the BMC refused: {bmc.failure.value}")
            if bmc.flaky > 0:
                bmc.flaky -= 1
                return failed(PowerFailure.UNREACHABLE, "no route to host")
            if driver is None:
                return failed(PowerFailure.UNSUPPORTED, f"no driver of this machine can {request.action.value}")
            if request.action is PowerAction.READ_POWER_STATE:
                if bmc.readback_failure is not None:
                    return failed(bmc.readback_failure, "readback refused")
                on = self.read_state(request.machine_key) if self.read_state is not None else bmc.on
                state = PowerState.ON if on else PowerState.OFF
                return PowerOutcome(request.machine_key, request.action, request.attempt, driver, True, observed=state)
            switched: bool | None = None
            if request.action is PowerAction.POWER_ON and not bmc.stays_off:
                switched = True
            elif request.action is PowerAction.FORCE_OFF or (
                request.action is PowerAction.POWER_OFF and not bmc.ignores_graceful_off
            ):
                switched = False
            if switched is not None:
                bmc.on = switched
        if switched is not None and self.on_switch is not None:
            self.on_switch(request.machine_key, switched)
        return PowerOutcome(request.machine_key, request.action, request.attempt, driver, True)
