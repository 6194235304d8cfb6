"""The simulator's sense of time: a monotonic clock for scheduling and a wall clock for timestamps.

Kept behind a small protocol so every delay in the simulator is a plain float of seconds measured on one
clock: tests scale machines down to 0.05 to 0.5 s boots without touching the code, and a test that needs to
stamp objects with a chosen wall time can pass its own clock. The default is real time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the simulator asks of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences matter."""
        ...

    def now(self) -> datetime:
        """The current wall time, timezone-aware UTC, for timestamps written to the API."""
        ...


class RealClock:
    """Real time: `time.monotonic()` and the system's UTC wall clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)
