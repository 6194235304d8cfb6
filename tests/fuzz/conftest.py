"""Fixtures for the fuzz tests: no thread may outlive a test (every example starts and stops its own servers)."""

from __future__ import annotations

from tests.support.threads import no_thread_left_behind  # noqa: F401  # autouse: checked in this folder
