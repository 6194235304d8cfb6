"""Fixtures for the operator integration tests: a homelab on its own fake API per test, and no thread left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.operator_homelab import Homelab, new_homelab


@pytest.fixture
def homelab(tmp_path: Path) -> Iterator[Homelab]:
    yield from new_homelab(tmp_path)
