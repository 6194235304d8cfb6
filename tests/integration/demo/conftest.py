"""Fixtures for the demo tests: no thread may outlive the demo that started it."""

from __future__ import annotations

from tests.support.threads import no_thread_left_behind  # noqa: F401  # autouse: checked in this folder
