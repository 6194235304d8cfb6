"""The simulator's one worker thread: a heap of actions due at given times on the simulator's clock.

Every change to a simulated machine (boot finished, heartbeat due, a Job observed, a fault injected from a
test) runs here, one at a time, so machine state needs no locking beyond publishing it for readers, and
one timer heap serves thousands of machines instead of a thread or timer object each. An action that
raises is logged and dropped; the thread keeps going.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from sim.machines.clock import Clock

logger = logging.getLogger(__name__)

Action = Callable[[], None]


class Scheduler:
    """Runs actions on one background thread, each no earlier than its due time."""

    def __init__(self, clock: Clock, name: str = "machine-scheduler") -> None:
        self._clock = clock
        self._name = name
        self._heap: list[tuple[float, int, Action]] = []
        self._sequence = itertools.count()  # equal due times run in the order they were scheduled
        self._wakeup = threading.Condition()
        self._stopping = False
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, action: Action) -> None:
        """Runs `action` on the scheduler thread after `delay` seconds (0 = as soon as possible)."""
        with self._wakeup:
            if self._stopping:
                return
            heapq.heappush(self._heap, (self._clock.monotonic() + max(delay, 0.0), next(self._sequence), action))
            self._wakeup.notify()

    def call_soon(self, action: Action) -> None:
        self.call_later(0.0, action)

    def stop(self, timeout: float = 10.0) -> None:
        """Drops every pending action and joins the thread (an action already running finishes first)."""
        with self._wakeup:
            self._stopping = True
            self._heap.clear()
            self._wakeup.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("scheduler thread %s did not stop within %.1f s", self._name, timeout)

    @property
    def pending(self) -> int:
        with self._wakeup:
            return len(self._heap)

    def wait_idle(self, timeout: float) -> bool:
        """Whether, within `timeout` seconds of real time, no action is running and none is scheduled: from then on
        nothing happens until something outside (a watch event, a test) schedules an action."""
        deadline = time.monotonic() + timeout
        with self._wakeup:
            while self._heap or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wakeup.wait(remaining)
            return True

    def _run(self) -> None:
        while True:
            with self._wakeup:
                action = self._next_due_action()
                if action is None:
                    return
            try:
                action()
            except Exception:
                logger.exception("simulator action failed; continuing")
            finally:
                with self._wakeup:
                    self._running = False
                    self._wakeup.notify_all()  # for wait_idle

    def _next_due_action(self) -> Action | None:
        """Blocks (holding the condition) until an action is due or the scheduler stops."""
        while not self._stopping:
            if not self._heap:
                self._wakeup.wait()
                continue
            due, _sequence, action = self._heap[0]
            remaining = due - self._clock.monotonic()
            if remaining <= 0:
                heapq.heappop(self._heap)
                self._running = True
                return action
            self._wakeup.wait(remaining)
        return None
