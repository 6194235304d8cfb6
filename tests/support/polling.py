"""Waiting in tests for something another thread or process does: one poll loop, failing with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

import pytest

T = TypeVar("T")

WAIT: Final = 10.0
"""Long enough for a loaded 2-core CI machine; a passing wait returns as soon as its condition holds."""
POLL: Final = 0.02


def wait_for(condition: Callable[[], T | None], timeout: float = WAIT, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail the test naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(POLL)
