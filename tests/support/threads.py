"""`no_thread_left_behind`: an autouse fixture that fails a test whose threads outlive it.

Every server, watch, writer and simulator a test starts must be stopped by the test, or threads pile up across the
suite and one test's leftovers break the next. A folder turns the check on by importing the fixture into its
conftest.py (pytest finds fixtures by name there); tests/e2e keeps its own, which ignores the cluster it shares
between tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Final

import pytest

THREAD_EXIT_BACKSTOP: Final = 5.0
"""Seconds a thread may take to end after its owner stopped: grpcio ends a stopped server's last helper thread just
after reporting the stop. Only reached when a thread really was left behind."""


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    started = set(threading.enumerate()) - before
    for thread in started:
        thread.join(THREAD_EXIT_BACKSTOP)
    left = [thread.name for thread in started if thread.is_alive()]
    assert left == [], f"threads left running: {left}"
