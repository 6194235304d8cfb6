"""Fixtures for the API server outage tests: the real binaries (or a one-line skip), logs on failure."""

from __future__ import annotations

import pytest

from sim.controlplane import Binaries
from tests.support.control_plane import (
    binaries_or_skip,
    pytest_runtest_makereport,  # noqa: F401  # control-plane logs on failure
)


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    return binaries_or_skip()
