"""A process-local registry of the collaborators actors need but must not receive inside messages.

The read model is shared memory by design (group actors write it, gRPC threads read it), the effect port holds
worker threads and the clock is a function: none of them can be pickled into a message, and none should be.
So the composition root (or a test) registers one `Wiring` under a key, and each actor receives only the key in
its first `Configure…` message and looks the wiring up. Everything runs in one process on simpleSystemBase, which
is what makes a process-local registry sufficient; a multi-process base would need the adapters re-created in
each process, and the key is where that would plug in.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.effects_port import EffectPort
from actors.errors import OperatorError
from actors.power_port import PowerPort
from actors.read_model import ReadModel


class WiringNotFound(OperatorError):
    """No wiring is registered under the key an actor was given."""


@dataclass(frozen=True)
class Wiring:
    """What actors share with the rest of the process."""

    read_model: ReadModel
    effects: EffectPort
    clock: Callable[[], datetime]
    """Returns the current time, timezone-aware (UTC); tests pass a clock they move by hand."""
    ticker: Any = None
    """The TickerActor's ActorAddress; None means: look it up by its global name."""
    stored_wait_seconds: float = 3.0
    """How long a group holds CA's answer to a mutation waiting for the commanded machines' status writes.

    Inside the gateway's 4 s deadline (itself inside CA's 5 s), with room for a few retries of a write that met a
    5xx or a 429; past it the group answers DEADLINE_EXCEEDED (`ErrorKind.NOT_STORED`) and counts
    `mutations_not_stored`.
    """
    power: PowerPort | None = None
    """Where native power commands and readbacks go (machines with spec.power); None: no drivers in this process,
    and such machines' operations fail with a clear Event instead."""


_lock = threading.Lock()
_registry: dict[str, Wiring] = {}
_numbers = itertools.count(1)


def register(wiring: Wiring, key: str | None = None) -> str:
    """Register `wiring` under `key` (a fresh unique key when None) and return the key.

    Raises ValueError if the key is already taken: two runtimes must never share collaborators by accident.
    """
    with _lock:
        chosen = key if key is not None else f"wiring-{next(_numbers)}"
        if chosen in _registry:
            raise ValueError(f"a wiring is already registered under {chosen!r}")
        _registry[chosen] = wiring
        return chosen


def lookup(key: str) -> Wiring:
    """The wiring registered under `key`; raises WiringNotFound."""
    with _lock:
        wiring = _registry.get(key)
    if wiring is None:
        raise WiringNotFound(f"no wiring is registered under {key!r}")
    return wiring


def unregister(key: str) -> None:
    """Forget the wiring under `key` (no-op when unknown)."""
    with _lock:
        _registry.pop(key, None)
