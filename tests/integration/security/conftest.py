"""Fixtures for the security tests: a recorded fake cluster per test, and no thread left behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from security_support import Cluster, new_cluster

from tests.support.threads import no_thread_left_behind  # noqa: F401  # autouse: checked in this folder


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with new_cluster() as running:
        yield running
