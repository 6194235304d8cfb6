"""Follows the operator's power Jobs: list, then watch from the list's resourceVersion, forever.

A thread of its own because a watch blocks on a socket; it only reads and hands every Job it sees to
callbacks (the simulator turns them into actions on its scheduler thread). It behaves like a client-go
reflector: resumes from the last resourceVersion it saw (bookmarks included), relists when the server
answers 410 Gone, and backs off exponentially on any other failure so a broken server is not hammered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from sim.machines.kube import KubeApiError, KubeRest, WatchStream

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE: Final = 500
GONE: Final = 410

ListedCallback = Callable[[list[dict[str, Any]], bool], None]
"""Called with every matching Job after a (re)list, and whether this was the first list."""
EventCallback = Callable[[str, dict[str, Any]], None]
"""Called with a watch event type (ADDED, MODIFIED, DELETED) and the Job."""


class JobWatcher:
    """Lists and watches batch/v1 Jobs matching a label selector in some namespaces (all if none given)."""

    def __init__(
        self,
        rest: KubeRest,
        namespaces: Sequence[str],
        label_selector: str,
        on_listed: ListedCallback,
        on_event: EventCallback,
        *,
        watch_timeout_seconds: int = 60,
        initial_backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        self._rest = rest
        self._namespaces = frozenset(namespaces)
        # One namespace: a namespaced watch (what least-privilege RBAC allows). Several: one cluster-wide
        # watch filtered here, so there is still a single watch thread.
        self._path = (
            f"/apis/batch/v1/namespaces/{next(iter(self._namespaces))}/jobs"
            if len(self._namespaces) == 1
            else "/apis/batch/v1/jobs"
        )
        self._label_selector = label_selector
        self._on_listed = on_listed
        self._on_event = on_event
        self._watch_timeout_seconds = watch_timeout_seconds
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._stopping = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._synced = threading.Event()
        self.lists = 0
        """How many times the Jobs were listed (1 + relists after 410 or errors)."""
        self.errors = 0
        """Failures that caused a back-off."""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("watcher already started")
        self._thread = threading.Thread(target=self._run, name="machine-job-watch", daemon=True)
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once the first list has been delivered."""
        return self._synced.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("job watch thread did not stop within %.1f s", timeout)

    def _run(self) -> None:
        resource_version: str | None = None
        backoff = self._initial_backoff
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
                backoff = self._initial_backoff
            except KubeApiError as error:
                if self._stopping.is_set():
                    return
                if error.status == GONE:
                    logger.info("job watch: resourceVersion %s expired, relisting", resource_version)
                    resource_version = None
                    continue
                self.errors += 1
                logger.warning("job watch failed (%s); retrying in %.2f s", error, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        query = {"labelSelector": self._label_selector, "limit": str(LIST_PAGE_SIZE)}
        while True:
            page = self._rest.get(self._path, query)
            items.extend(job for job in page.get("items") or () if self._wanted(job))
            continue_token = (page.get("metadata") or {}).get("continue")
            if not continue_token:
                break
            query = {**query, "continue": continue_token}
        resource_version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        first = self.lists == 0
        self.lists += 1
        self._on_listed(items, first)
        self._synced.set()
        return resource_version

    def _watch(self, resource_version: str) -> str:
        """Streams events until the server ends the watch; returns the resourceVersion to resume from."""
        query = {
            "labelSelector": self._label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._watch_timeout_seconds),
        }
        # The server closes the stream at timeoutSeconds; the read timeout only catches a silent dead peer.
        stream = self._rest.watch(self._path, query, read_timeout=self._watch_timeout_seconds + 15.0)
        with self._stream_lock:
            if self._stopping.is_set():
                stream.close()
                return resource_version
            self._stream = stream
        try:
            for event in stream:
                event_type = str(event.get("type", ""))
                body = event.get("object") or {}
                if event_type == "ERROR":
                    raise KubeApiError(
                        int(body.get("code") or 0), str(body.get("reason") or "watch error"), body
                    )
                new_version = (body.get("metadata") or {}).get("resourceVersion")
                if new_version:
                    resource_version = str(new_version)
                if event_type != "BOOKMARK" and self._wanted(body):
                    self._on_event(event_type, body)
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        return resource_version

    def _wanted(self, job: dict[str, Any]) -> bool:
        if len(self._namespaces) <= 1:
            return True
        return (job.get("metadata") or {}).get("namespace") in self._namespaces
