"""Retry pacing for every Kubernetes caller that retries: the effect writer and the watches.

Both wait longer after each consecutive failure, doubling from an initial delay up to a ceiling, with jitter so that
machines or watches that failed together do not retry together. Both honour the Retry-After an API server sends
with a throttling answer (`details.retryAfterSeconds` of its Status), capped at the same ceiling: a server asking for
an hour must not stall a machine's writes or blind a watch that long. And both wait in a way that ends at once when
their owner is stopping, or, while the server is unreachable, as soon as it answers again (`ApiReachability`), since
the back-off grown during a long outage would otherwise outlast the outage itself.

Keeping the arithmetic and the waiting in one place means the two callers cannot drift apart, and lets both be
tested as a table, with a constant jitter and an interrupt that is already set instead of real sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kubeapi.kube_client import KubeError
from kubeapi.reachability import ApiReachability


class Interrupt(Protocol):
    """What a waiting caller is stopped by (a `threading.Event` in the operator)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: `initial` seconds after the first failure, doubling up to `maximum`."""

    initial: float
    maximum: float
    jitter: Callable[[], float] = field(default=random.random, compare=False)
    """A number in [0, 1); each delay is scaled by 0.5 + jitter / 2, so it falls in [delay / 2, delay]."""

    def base(self, failures: int) -> float:
        """The delay before retry number `failures` (1 for the first), before jitter."""
        return float(min(self.maximum, self.initial * 2 ** (failures - 1)))

    def jittered(self, base: float, retry_after: float | None = None) -> float:
        """`base` with jitter applied, but never shorter than the server's `retry_after` (itself capped at
        `maximum`)."""
        delay = base * (0.5 + self.jitter() / 2)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.maximum))
        return float(delay)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """How long to wait before retry number `failures` (1 for the first)."""
        return self.jittered(self.base(failures), retry_after)


def retry_after(error: KubeError | None) -> float | None:
    """The Retry-After the API server sent with `error`, in seconds; None when it sent none."""
    if error is None:
        return None
    details = error.body.get("details") or {}
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    if isinstance(seconds, int | float) and seconds > 0:
        return float(seconds)
    return None


def pause(
    seconds: float,
    interrupt: Interrupt,
    reachability: ApiReachability | None = None,
    returns: int = 0,
) -> bool:
    """Wait up to `seconds`; True when `interrupt` was set (now or while waiting), so the caller should stop.

    With `reachability`, the wait also ends when the API server comes back after the `returns`-th return (read it
    before the call that failed, so that a return during that call still counts); the caller's `stop` must then
    also call `reachability.wake()`, since the wait sleeps on the reachability's condition, not on `interrupt`.
    """
    if reachability is None:
        return interrupt.wait(seconds)
    reachability.wait_for_return(returns, seconds, interrupt.is_set)
    return interrupt.is_set()
