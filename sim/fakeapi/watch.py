"""One open watch: its filter, its bounded queue, and the loop that turns queued events into a JSON-lines stream.

Separate from the store (which decides *which* events a watcher gets, in resourceVersion order, under its
lock) and from the HTTP layer (which owns the socket). The queue is bounded so a slow reader never blocks a
writer: when it overflows, the watcher is closed and the client has to resume from its last resourceVersion,
exactly the contract of a real API server. Writers only ever call ``offer``, which never blocks.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sim.fakeapi.resources import ResourceType
from sim.fakeapi.selectors import FieldRequirement, LabelRequirement, field_value, fields_match, labels_match

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
CloseReason = Literal["overflow", "dropped", "stopped", "resource-removed"]
EndReason = Literal["timeout", "overflow", "dropped", "stopped", "resource-removed", "client-gone"]


@dataclass(frozen=True)
class WatchFilter:
    """What one watch asked for: a namespace (or all) plus label and field selectors."""

    namespace: str | None
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        if self.labels and not labels_match(self.labels, metadata.get("labels") or {}):
            return False
        return not self.fields or fields_match(self.fields, lambda label: field_value(obj, label))


class Watcher:
    """The per-watch queue; ``offer`` is called by writers under the store lock and never blocks."""

    def __init__(self, resource: ResourceType, watch_filter: WatchFilter, capacity: int) -> None:
        self.resource = resource
        self.filter = watch_filter
        self._capacity = capacity
        self._items: deque[tuple[EventType, dict[str, Any]]] = deque()
        self._condition = threading.Condition()
        self._closed: CloseReason | None = None

    def preload(self, items: list[tuple[EventType, dict[str, Any]]]) -> None:
        """Queue the initial events; they never count against the capacity (a list can be 5000 objects)."""
        with self._condition:
            self._items.extend(items)
            self._capacity += len(items)
            self._condition.notify_all()

    def offer(self, event_type: EventType, obj: dict[str, Any]) -> bool:
        """Queue one event; False means the queue overflowed and this watcher is now closed."""
        with self._condition:
            if self._closed is not None:
                return True
            if len(self._items) >= self._capacity:
                self._closed = "overflow"
                self._items.clear()
                self._condition.notify_all()
                return False
            self._items.append((event_type, obj))
            self._condition.notify_all()
            return True

    def close(self, reason: CloseReason) -> None:
        with self._condition:
            if self._closed is None:
                self._closed = reason
                if reason != "resource-removed":
                    self._items.clear()
            self._condition.notify_all()

    @property
    def closed_reason(self) -> CloseReason | None:
        with self._condition:
            return self._closed

    def is_idle(self) -> bool:
        with self._condition:
            return not self._items

    def take(self, timeout: float) -> list[tuple[EventType, dict[str, Any]]]:
        """Every queued event, waiting up to ``timeout`` seconds for the first; empty on timeout or close."""
        with self._condition:
            if not self._items and self._closed is None:
                self._condition.wait(max(timeout, 0.0))
            items = list(self._items)
            self._items.clear()
            return items


def encode_event(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def bookmark_object(resource: ResourceType, resource_version: int) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "apiVersion": resource.api_version,
        "metadata": {"resourceVersion": str(resource_version)},
    }


def stream(
    watcher: Watcher,
    write: Callable[[bytes], None],
    render: Callable[[str, dict[str, Any]], bytes],
    bookmark_version: Callable[[Watcher], int | None],
    *,
    timeout_seconds: float,
    bookmarks: bool,
    bookmark_interval: float,
    client_gone: Callable[[], bool] = lambda: False,
    liveness_interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> EndReason:
    """Pump events to ``write`` until the timeout or the watcher closes; return why it ended.

    ``render`` turns (type, object) into wire bytes. ``bookmark_version`` returns the current
    resourceVersion if the watcher has nothing queued (so a bookmark never overtakes a pending event).
    A bookmark goes out whenever the stream has been silent for ``bookmark_interval`` and once more just
    before a timeout, so a client resumes without replaying anything. ``client_gone`` is polled at least
    every ``liveness_interval`` so a watch whose client hung up does not hold a thread until its timeout.
    """
    deadline = clock() + timeout_seconds
    last_sent = clock()
    try:
        while True:
            now = clock()
            if watcher.closed_reason is not None and watcher.is_idle():
                return watcher.closed_reason
            if now >= deadline:
                if bookmarks:
                    version = bookmark_version(watcher)
                    if version is not None:
                        write(render("BOOKMARK", bookmark_object(watcher.resource, version)))
                return "timeout"
            wake_at = min(deadline, last_sent + bookmark_interval) if bookmarks else deadline
            items = watcher.take(min(wake_at - now, liveness_interval))
            if not items and client_gone():
                return "client-gone"
            reason = watcher.closed_reason
            if reason is not None and reason != "resource-removed":
                return reason
            if items:
                write(b"".join(render(event_type, obj) for event_type, obj in items))
                last_sent = clock()
            elif bookmarks and clock() - last_sent >= bookmark_interval:
                version = bookmark_version(watcher)
                if version is not None:
                    write(render("BOOKMARK", bookmark_object(watcher.resource, version)))
                    last_sent = clock()
    except (BrokenPipeError, ConnectionResetError, OSError):
        return "client-gone"
