"""Kubernetes Events on our resources, with a de-duplication cache.

An Event the operator records again within `dedup_seconds` (same resource, type, reason and message) adds to the
count of the one already recorded instead of creating another, as the Kubernetes event recorder does, so a
machine failing the same way every few seconds shows one Event with a count rather than a flood. The cache keeps
the newest `cache_size` Events; an Event that expired on the server (Events have a TTL) is recorded anew.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from actors.effects_port import EffectBatch
from actors.fsm import effects
from kubeapi.kube_client import MERGE_PATCH, KubeApi, KubeNotFound
from kubeapi.writer.calls import EVENTS, CountedWrites
from schemas import GROUP_VERSION

COMPONENT: Final = "homelab-autoscaler"


@dataclass(frozen=True)
class Involved:
    """The resource of ours an Event is about: a Node or a Group custom resource."""

    kind: str
    namespace: str
    name: str
    uid: str


@dataclass
class _EventRecord:
    name: str
    count: int
    first_time: str
    last_seen: float


def utc_now() -> datetime:
    return datetime.now(UTC)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Records Events (thread-safe: the writer's workers share one recorder and its cache)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        dedup_seconds: float,
        cache_size: int,
        reporting_instance: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._api = api
        self._write = CountedWrites(api)
        self._dedup_seconds = dedup_seconds
        self._cache_size = cache_size
        self._reporting_instance = reporting_instance
        self._clock = clock
        self._events: OrderedDict[tuple[str, ...], _EventRecord] = OrderedDict()
        self._lock = threading.Lock()

    def record_for_machine(self, batch: EffectBatch, effect: effects.RecordEvent) -> None:
        """The applier of `RecordEvent`: an Event on the machine's Node resource."""
        uid = batch.node.metadata.uid if batch.node else ""
        self.record(Involved("Node", batch.machine.namespace, batch.machine.name, uid), effect)

    def record(self, involved: Involved, effect: effects.RecordEvent) -> None:
        """Record `effect` as an Event on our resource `involved`, or add to the count of the same recent one."""
        key = (involved.kind, involved.namespace, involved.name, involved.uid, str(effect.type), effect.reason,
               effect.message)
        now = _time(self._clock())
        events = f"/api/v1/namespaces/{involved.namespace}/events"
        with self._lock:
            record = self._events.get(key)
            if record is not None and time.monotonic() - record.last_seen > self._dedup_seconds:
                record = None
        if record is not None:
            try:
                self._write(
                    "patch", EVENTS, "PATCH", f"{events}/{record.name}",
                    body={"count": record.count + 1, "lastTimestamp": now}, content_type=MERGE_PATCH,
                )
                self._remember_event(key, record.name, record.count + 1, record.first_time)
                return
            except KubeNotFound:
                pass  # the Event expired (events have a TTL): record a new one
        name = f"{involved.name}.{uuid.uuid4().hex[:16]}"
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": involved.namespace},
            "involvedObject": {
                "apiVersion": GROUP_VERSION,
                "kind": involved.kind,
                "namespace": involved.namespace,
                "name": involved.name,
                "uid": involved.uid,
            },
            "reason": effect.reason,
            "message": effect.message,
            "type": str(effect.type),
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
        }
        if self._reporting_instance:
            event["reportingInstance"] = self._reporting_instance
        self._write("create", EVENTS, "POST", events, body=event)
        self._remember_event(key, name, 1, now)

    def _remember_event(self, key: tuple[str, ...], name: str, count: int, first_time: str) -> None:
        with self._lock:
            self._events[key] = _EventRecord(name, count, first_time, time.monotonic())
            self._events.move_to_end(key)
            while len(self._events) > self._cache_size:
                self._events.popitem(last=False)
