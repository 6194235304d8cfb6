"""Fixtures for the security tests: a recorded fake cluster per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from security_support import Cluster, new_cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with new_cluster() as running:
        yield running
