"""Fixtures for the power drivers against protocol emulators on loopback: one executor per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from power_harness import Harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    test_harness = Harness()
    try:
        yield test_harness
    finally:
        if test_harness.executor is not None:
            test_harness.executor.close()
