"""Fixtures for the reliability tests: the operator tests' homelab on a fake API per test, no thread left behind.

The homelab helpers live with the operator integration tests; they are put on the import path here so both
folders drive the operator the same way instead of keeping two copies in step.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

OPERATOR_TESTS = Path(__file__).resolve().parent.parent / "operator"
if str(OPERATOR_TESTS) not in sys.path:
    sys.path.insert(0, str(OPERATOR_TESTS))

from operator_test_support import Homelab, new_homelab  # noqa: E402  # needs the path above

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
