"""Fixtures for the fuzz tests: no thread may outlive a test (every example starts and stops its own servers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

THREAD_EXIT_BACKSTOP = 5.0
"""Seconds a thread may take to end after its owner stopped (grpcio ends its last helper just after stop)."""


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(THREAD_EXIT_BACKSTOP)
    left = [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive()]
    assert left == [], f"threads left running: {left}"
