"""Fixtures and hooks every test folder shares; a folder's own conftest.py keeps only what is its own.

- `no_thread_left_behind` (autouse): a test whose threads outlive it fails. Every server, watch, writer and
  simulator a test starts must be stopped by the test, or threads pile up across the suite and one test's
  leftovers break the next. A folder that keeps a server running across its tests (a module- or session-scoped
  fake API) names that server's threads in `long_lived_thread_prefixes`, so only they are exempt.
- `binaries`: the real Kubernetes binaries, or a one-line skip saying how to provide them.
- The report hook of tests/support/control_plane.py: a failed test shows the log tail of every control plane
  running then (and of the programs it registered with `show_on_failure`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Final

import pytest

from sim.controlplane import Binaries
from tests.support.control_plane import (
    binaries_or_skip,
    pytest_runtest_makereport,  # noqa: F401  # control-plane logs on failure
)

THREAD_EXIT_BACKSTOP: Final = 5.0
"""Seconds a thread may take to end after its owner stopped: grpcio ends a stopped server's last helper thread just
after reporting the stop. Only reached when a thread really was left behind."""


PROCESS_WIDE_LIBRARY_THREADS: Final = ("pyghmi.",)
"""Modules whose threads live as long as the process by design: pyghmi starts one I/O worker for every IPMI
session of the process on first use and never stops it (its `join` is not even the standard one)."""


def _is_process_wide_library_thread(thread: threading.Thread) -> bool:
    return type(thread).__module__.startswith(PROCESS_WIDE_LIBRARY_THREADS)


@pytest.fixture
def long_lived_thread_prefixes() -> tuple[str, ...]:
    """Name prefixes of threads that may outlive a test: those of servers the folder shares between tests."""
    return ()


@pytest.fixture(autouse=True)
def no_thread_left_behind(long_lived_thread_prefixes: tuple[str, ...]) -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    started = [
        thread for thread in set(threading.enumerate()) - before
        if not thread.name.startswith(long_lived_thread_prefixes) and not _is_process_wide_library_thread(thread)
    ]
    for thread in started:
        thread.join(THREAD_EXIT_BACKSTOP)
    left = [thread.name for thread in started if thread.is_alive()]
    assert left == [], f"threads left running: {left}"


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    return binaries_or_skip()
