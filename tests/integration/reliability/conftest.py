"""Fixtures for the reliability tests: the operator tests' homelab on a fake API per test, no thread left behind.

The homelab comes from tests/support/operator_homelab.py, so this folder and the operator integration tests drive
the operator the same way instead of keeping two copies in step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.operator_homelab import Homelab, new_homelab

THREAD_EXIT_BACKSTOP = 5.0
"""Seconds a thread may take to finish after its owner stopped (grpcio ends its last helper just after stop)."""


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(THREAD_EXIT_BACKSTOP)
    left = [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive()]
    assert left == [], f"threads left running: {left}"


@pytest.fixture
def homelab(tmp_path: Path) -> Iterator[Homelab]:
    yield from new_homelab(tmp_path)
