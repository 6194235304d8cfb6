"""Fixtures for the actor tests: a running `ActorRuntime` that is always stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.runtime import ActorRuntime


@pytest.fixture
def runtime() -> Iterator[ActorRuntime]:
    """A started runtime with a fast tick (10 ms), stopped at teardown even if the test failed."""
    actor_runtime = ActorRuntime(tick_interval=0.01, name="test-runtime")
    actor_runtime.start()
    try:
        yield actor_runtime
    finally:
        actor_runtime.stop(timeout=10.0)
