"""Fixtures for the real control plane's own tests: the binaries (or a skip), logs on failure, no thread left."""

from __future__ import annotations

import pytest

from sim.controlplane import Binaries
from tests.support.control_plane import (
    binaries_or_skip,
    pytest_runtest_makereport,  # noqa: F401  # control-plane logs on failure
)
from tests.support.threads import no_thread_left_behind  # noqa: F401  # autouse: checked in this folder


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    return binaries_or_skip()
