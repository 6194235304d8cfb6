"""Fault injection and request accounting: make chosen requests fail or slow down, drop watches, lose history.

Separate because faults are test scaffolding layered over honest behaviour: the server asks
``before_request`` once per API request and otherwise knows nothing about them. Every fault is bounded,
by a count or an expiry, so a test that forgets to ``clear()`` cannot poison the next one for long.

Control over HTTP: ``POST /_fake/faults`` with one JSON object (``GET`` lists active rules, ``GET
/_fake/counters`` returns the counters). Actions:

- ``{"action": "fail", "verb": "create", "resource": "jobs", "name": null, "count": 2, "code": 503,
  "retryAfterSeconds": 1}`` -- codes 500, 429 and 503 (the last two carry ``Retry-After``);
- ``{"action": "delay", "verb": "*", "resource": "nodes", "seconds": 0.5, "count": 3}`` or
  ``"forSeconds": 10`` instead of ``count``;
- ``{"action": "dropWatches"}``, ``{"action": "compactHistory"}``, ``{"action": "clear"}``.

Verbs are Kubernetes verbs (get, list, watch, create, update, patch, delete, deletecollection); resources are
plurals, with ``/status`` for the subresource; ``"*"`` matches any.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sim.fakeapi import errors
from sim.fakeapi.errors import ApiError
from sim.fakeapi.store import Store

FAILURE_CODES = (500, 429, 503)
MAX_DELAY_SECONDS = 300.0


@dataclass
class _Rule:
    verb: str
    resource: str
    name: str | None

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        return (
            self.verb in ("*", verb) and self.resource in ("*", resource) and (self.name is None or self.name == name)
        )


@dataclass
class _FailureRule(_Rule):
    remaining: int
    code: int
    retry_after_seconds: int

    def error(self) -> ApiError:
        if self.code == 429:
            return errors.too_many_requests(self.retry_after_seconds)
        if self.code == 503:
            return errors.service_unavailable(self.retry_after_seconds)
        return errors.internal("injected fault")


@dataclass
class _DelayRule(_Rule):
    seconds: float
    remaining: int | None
    expires_at: float | None


class FaultInjector:
    """Holds the active fault rules and the per-(verb, resource) request counters; thread-safe."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: list[_FailureRule] = []
        self._delays: list[_DelayRule] = []
        self._counts: Counter[tuple[str, str]] = Counter()

    def fail(
        self,
        verb: str = "*",
        resource: str = "*",
        *,
        name: str | None = None,
        count: int = 1,
        code: int = 500,
        retry_after_seconds: int = 1,
    ) -> None:
        """Answer the next ``count`` matching requests with ``code`` (500, 429 or 503)."""
        if code not in FAILURE_CODES:
            raise ValueError(f"code must be one of {FAILURE_CODES}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._failures.append(_FailureRule(verb, resource, name, count, code, max(0, retry_after_seconds)))

    def delay(
        self,
        verb: str = "*",
        resource: str = "*",
        *,
        seconds: float,
        name: str | None = None,
        count: int | None = None,
        for_seconds: float | None = None,
    ) -> None:
        """Hold matching responses for ``seconds``: the next ``count`` of them, or all for ``for_seconds``."""
        if not 0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"seconds must be between 0 and {MAX_DELAY_SECONDS}")
        if count is None and for_seconds is None:
            count = 1
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        expires_at = None if for_seconds is None else self._clock() + for_seconds
        with self._lock:
            self._delays.append(_DelayRule(verb, resource, name, seconds, count, expires_at))

    def drop_watches(self) -> int:
        """Cut every open watch connection now, mid-stream; returns how many were open."""
        return self._store.close_all_watches("dropped")

    def compact_history(self) -> int:
        """Forget all past events: resuming from any older resourceVersion answers 410 Gone."""
        return self._store.compact_history()

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def count(self, verb: str, resource: str) -> int:
        with self._lock:
            return self._counts[(verb, resource)]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def before_request(self, verb: str, resource: str, name: str | None) -> tuple[float, ApiError | None]:
        """Count the request and return (seconds to delay, error to answer instead or None)."""
        now = self._clock()
        with self._lock:
            self._counts[(verb, resource)] += 1
            self._delays = [rule for rule in self._delays if rule.expires_at is None or rule.expires_at > now]
            delay = 0.0
            for delay_rule in self._delays:
                if delay_rule.matches(verb, resource, name):
                    delay = max(delay, delay_rule.seconds)
                    if delay_rule.remaining is not None:
                        delay_rule.remaining -= 1
            self._delays = [rule for rule in self._delays if rule.remaining is None or rule.remaining > 0]
            failure: ApiError | None = None
            for rule in self._failures:
                if rule.matches(verb, resource, name):
                    failure = rule.error()
                    rule.remaining -= 1
                    break
            self._failures = [rule for rule in self._failures if rule.remaining > 0]
            return delay, failure

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "failures": [
                    {"verb": r.verb, "resource": r.resource, "name": r.name, "remaining": r.remaining, "code": r.code}
                    for r in self._failures
                ],
                "delays": [
                    {
                        "verb": r.verb,
                        "resource": r.resource,
                        "name": r.name,
                        "seconds": r.seconds,
                        "remaining": r.remaining,
                    }
                    for r in self._delays
                ],
            }

    def counters_document(self) -> dict[str, Any]:
        return {
            "counters": [
                {"verb": verb, "resource": resource, "count": count}
                for (verb, resource), count in sorted(self.counts().items())
            ]
        }

    def apply_control(self, document: Any) -> dict[str, Any]:
        """Run one ``POST /_fake/faults`` document; raises 400 for anything malformed."""
        if not isinstance(document, dict):
            raise errors.bad_request("fault control body must be a JSON object")
        action = document.get("action")
        try:
            if action == "fail":
                self.fail(
                    str(document.get("verb", "*")),
                    str(document.get("resource", "*")),
                    name=document.get("name"),
                    count=int(document.get("count", 1)),
                    code=int(document.get("code", 500)),
                    retry_after_seconds=int(document.get("retryAfterSeconds", 1)),
                )
            elif action == "delay":
                for_seconds = document.get("forSeconds")
                count = document.get("count")
                self.delay(
                    str(document.get("verb", "*")),
                    str(document.get("resource", "*")),
                    seconds=float(document["seconds"]),
                    name=document.get("name"),
                    count=None if count is None else int(count),
                    for_seconds=None if for_seconds is None else float(for_seconds),
                )
            elif action == "dropWatches":
                return {"dropped": self.drop_watches()}
            elif action == "compactHistory":
                return {"compactedThrough": str(self.compact_history())}
            elif action == "clear":
                self.clear()
            else:
                raise errors.bad_request(f"unknown fault action {action!r}")
        except (KeyError, TypeError, ValueError) as error:
            raise errors.bad_request(f"invalid fault {document!r}: {error}") from error
        return self.describe()
