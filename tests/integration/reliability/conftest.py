"""Fixtures for the reliability tests: the operator tests' homelab on a fake API per test, no thread left behind.

The homelab comes from tests/support/operator_homelab.py, so this folder and the operator integration tests drive
the operator the same way instead of keeping two copies in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.operator_homelab import Homelab, new_homelab
from tests.support.threads import no_thread_left_behind  # noqa: F401  # autouse: checked in this folder


@pytest.fixture
def homelab(tmp_path: Path) -> Iterator[Homelab]:
    yield from new_homelab(tmp_path)
