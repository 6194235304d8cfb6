"""Follows the operator's power Jobs for the simulator, through the operator's own list-then-watch loop.

The reflector behaviour (resume from the last resourceVersion, relist on 410 Gone, backoff with jitter, a thread
that `stop()` ends at once) lives in `kubeapi.watch.ResourceWatch`; keeping a second copy here let the two
drift. What stays here is what only the simulator wants: a namespaced watch when one namespace is followed (what
least-privilege RBAC allows) or one cluster-wide watch filtered here, and plain callbacks instead of the
operator's `Listed`/`WatchEvent` values. The callbacks run on the watch thread and must be quick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from actors.watch_port import Listed, WatchOutput
from kubeapi.kube_client import KubeApi
from kubeapi.watch import ResourceWatch, collection

WATCH_NAME: Final = "machine-jobs"
"""Names the thread (`kube-watch-machine-jobs`) and the watch-restarts metric series, apart from the operator's."""

ListedCallback = Callable[[list[dict[str, Any]], bool], None]
"""Called with every matching Job after a (re)list, and whether this was the first list."""
EventCallback = Callable[[str, dict[str, Any]], None]
"""Called with a watch event type (ADDED, MODIFIED, DELETED) and the Job."""


class JobWatcher:
    """Lists and watches batch/v1 Jobs matching a label selector in some namespaces (all if none given)."""

    def __init__(
        self,
        api: KubeApi,
        namespaces: Sequence[str],
        label_selector: str,
        on_listed: ListedCallback,
        on_event: EventCallback,
        *,
        watch_timeout_seconds: int = 60,
        initial_backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        self._namespaces = frozenset(namespaces)
        path = (
            f"/apis/batch/v1/namespaces/{next(iter(self._namespaces))}/jobs"
            if len(self._namespaces) == 1
            else "/apis/batch/v1/jobs"
        )
        self._on_listed = on_listed
        self._on_event = on_event
        self._delivered_lists = 0
        self._watch = ResourceWatch(
            WATCH_NAME,
            *collection(api, path, {"labelSelector": label_selector}),
            self._forward,
            watch_timeout_seconds=watch_timeout_seconds,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
        )

    @property
    def lists(self) -> int:
        """How many times the Jobs were listed (1 + relists after 410 or errors)."""
        return self._watch.lists

    @property
    def errors(self) -> int:
        """Failures that caused a back-off."""
        return self._watch.failures

    def start(self) -> None:
        self._watch.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once the first list has been delivered."""
        return self._watch.wait_synced(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._watch.stop(timeout)

    def _forward(self, output: WatchOutput) -> None:
        if isinstance(output, Listed):
            first = self._delivered_lists == 0
            self._delivered_lists += 1
            self._on_listed([job for job in output.items if self._wanted(job)], first)
        elif self._wanted(output.object):
            self._on_event(output.type.value, output.object)

    def _wanted(self, job: dict[str, Any]) -> bool:
        if len(self._namespaces) <= 1:
            return True
        return (job.get("metadata") or {}).get("namespace") in self._namespaces
