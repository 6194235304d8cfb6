"""List-then-watch of one Kubernetes resource on a thread of its own, handing raw objects to a sink.

A watch blocks on a socket, so it cannot live in an actor; one thread per resource (Group CRs, Node CRs, core
Nodes, our power Jobs) reads and forwards, and the KubeWatcherActor turns the raw dicts into typed observations.
The loop behaves like a client-go reflector, because the consumer's correctness rests on these promises:

- every (re)list is delivered as one `Listed` batch holding the complete current set, so the consumer can
  reconcile against it (an object missing from a relist was deleted while we were not watching);
- the watch resumes from the newest resourceVersion seen, bookmarks included, so a dropped connection neither
  replays old events nor loses new ones;
- an expired resourceVersion (410 Gone, as an ERROR event or an error answer) triggers a relist, never a guess;
- any other failure backs off with jitter (0.2 s doubling to 30 s, or the Retry-After the server asked for, up to
  the same ceiling: `kubeapi.backoff`), so a broken API server is never hammered;
- a call that got no answer at all (the API server is unreachable) is reported to the process's `ApiReachability`,
  which tells the outage once instead of each watch at each retry; the watch relists when it reconnects (after an
  outage the server may have restarted, so the old resourceVersion is likely gone anyway, and a relist proves that
  nothing was missed), and its back-off ends as soon as any caller finds the server answering again.

Objects stay raw dicts: cheaper than the generated models, and no field is lost but `metadata.managedFields`,
which nothing here reads and which is often the largest part of an object (dropped as each object arrives, so a
list of thousands never holds it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import urllib3
from kubernetes.client import ApiClient

from actors import metrics
from actors.watch_port import (
    GROUPS,
    KUBE_NODES,
    MACHINES,
    POWER_JOBS,
    Listed,
    Sink,
    WatchEvent,
    WatchEventType,
    WatchOutput,
)
from kubeapi import kube_client
from kubeapi.backoff import Backoff, pause, retry_after
from kubeapi.kube_client import KubeApi, KubeError, KubeTransient
from kubeapi.reachability import WATCH_PREFIX, ApiReachability
from schemas import API_GROUP, API_VERSION
from schemas import labels as label_names

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE: Final = 500
DEFAULT_WATCH_SECONDS: Final = 300
READ_TIMEOUT_MARGIN: Final = 15.0
"""The server ends a watch at timeoutSeconds; the socket read timeout only catches a peer that went silent."""
QUICK_END_SECONDS: Final = 1.0
"""A watch that ends this soon with nothing received counts as a failure, so a server that closes streams at once
cannot drive the loop into a busy spin."""

ListFunction = Callable[[Mapping[str, str]], dict[str, Any]]
"""Fetch one page of the collection with these query parameters (limit, continue) and return the raw list."""
WatchFunction = Callable[[Mapping[str, str], float], urllib3.BaseHTTPResponse]
"""Open a watch with these query parameters and this socket read timeout; the caller reads and closes it."""


def _drop_managed_fields(raw: dict[str, Any]) -> dict[str, Any]:
    metadata = raw.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return raw


class _ResourceVersionExpiredError(Exception):
    """The resourceVersion we resume from is gone from the server's history: relist."""


class WatchStreamBroke(KubeTransient):
    """An open watch stream broke off: the connection was lost, which alone says nothing about the server."""


class WatchStream:
    """One open watch response: iterate for event dicts; `close()` from any thread ends the iteration at once."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self._closed = threading.Event()
        # Serialises the reader's hand-back of the connection with `close()` from another thread: urllib3 raises
        # when a response is shut down after its connection went back to the pool, and closing one that is being
        # handed back races on its connection attribute.
        self._release_lock = threading.Lock()
        self._finished = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pending = b""
        try:
            for chunk in self._chunks():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                if self._closed.is_set():
                    return
            if pending.strip() and not self._closed.is_set():
                yield json.loads(pending)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            if not self._closed.is_set():
                raise WatchStreamBroke(f"watch stream broke: {type(error).__name__}: {error}") from error
        finally:
            with self._release_lock:
                self._finished = True
                self._response.release_conn()

    def _chunks(self) -> Iterator[bytes]:
        if self._response.chunked and isinstance(self._response, urllib3.HTTPResponse):
            yield from self._response.read_chunked(decode_content=True)
            return
        while not self._closed.is_set():
            chunk = self._response.read1(65536)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """End the stream, even while another thread is blocked reading it; closing twice does nothing."""
        with self._release_lock:
            already_closed = self._closed.is_set()
            self._closed.set()
            # Only a stream still being read needs its socket shut down to wake the reader; a finished one went
            # back to the connection pool and must stay usable.
            if already_closed or self._finished:
                return
            try:
                shutdown = getattr(self._response, "shutdown", None)
                if shutdown is not None:
                    shutdown()
                self._response.close()
            except (RuntimeError, ValueError, AttributeError, OSError) as error:
                # When the server ends a chunked stream, urllib3 hands the connection back to the pool itself, on
                # the reader's thread and outside this lock; shutting it down then fails (or finds it gone half-way).
                # The stream has ended on its own and there is no reader left to wake.
                logger.debug("watch stream ended while being closed: %s: %s", type(error).__name__, error)


class ResourceWatch:
    """Lists and watches one resource on its own thread; every list and change goes to `sink`.

    `resync_seconds` (optional) relists periodically even when nothing went wrong: a safety net that turns any
    event the consumer might have missed into a difference it reconciles. The sink runs on the watch thread and
    must be quick (hand the data to the actor runtime); an exception in it is logged, never fatal.
    """

    def __init__(
        self,
        name: str,
        list_fn: ListFunction,
        watch_fn: WatchFunction,
        sink: Sink,
        *,
        resync_seconds: float | None = None,
        watch_timeout_seconds: int = DEFAULT_WATCH_SECONDS,
        initial_backoff: float = 0.2,
        max_backoff: float = 30.0,
        reachability: ApiReachability | None = None,
    ) -> None:
        self.name = name
        self._reachability = reachability
        self._returns_seen = 0
        self._source = f"{WATCH_PREFIX}{name}"
        self._list_fn = list_fn
        self._watch_fn = watch_fn
        self._sink = sink
        self._resync_seconds = resync_seconds
        self._watch_timeout_seconds = watch_timeout_seconds
        self._backoff = Backoff(initial_backoff, max_backoff)
        self._watch_delivered = False  # the current or last watch stream delivered at least one event
        self._stopping = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._synced = threading.Event()
        self._resource_version = ""
        self.lists = 0
        """Lists made so far (the first one plus every relist)."""
        self.watches = 0
        """Watch streams opened so far."""
        self.failures = 0
        """Failures that made the loop back off."""

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion seen (bookmarks included); where the next watch resumes."""
        return self._resource_version

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"watch {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"kube-watch-{self.name}", daemon=True)
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once the first list has been handed to the sink."""
        return self._synced.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """End the stream now and join the thread."""
        self._stopping.set()
        if self._reachability is not None:
            self._reachability.wake()  # a back-off waiting for the server's return must end now
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("watch %s: thread did not stop within %.1f s", self.name, timeout)

    # -- the loop

    def _run(self) -> None:
        must_list = True
        failed_in_a_row = 0  # the back-off grows with it
        expired_in_a_row = 0
        last_list = 0.0
        while not self._stopping.is_set():
            if self._reachability is not None:
                # Taken before the attempt: a return while it fails must still end the back-off that follows.
                self._returns_seen = self._reachability.returns
            try:
                resync_due = (
                    self._resync_seconds is not None and time.monotonic() - last_list >= self._resync_seconds
                )
                if must_list or resync_due:
                    self._list()
                    last_list = time.monotonic()
                    must_list = False
                if self._watch(last_list):
                    failed_in_a_row = 0
                    expired_in_a_row = 0
                    continue
                # The stream ended at once with nothing in it: wait as after a failure, never spin.
                failed_in_a_row += 1
                self._back_off(self._backoff.base(failed_in_a_row))
            except (_ResourceVersionExpiredError, KubeError) as error:
                if self._stopping.is_set():
                    return
                if self._watch_delivered:
                    # The stream was healthy until it broke (e.g. a dropped connection): start the retries over
                    # instead of growing the back-off with every drop, which left the watch blind for up to
                    # max_backoff after a few drops.
                    failed_in_a_row = 0
                    self._watch_delivered = False
                if isinstance(error, WatchStreamBroke):
                    # A dropped stream is routine (idle timeouts, a server restart): the reconnect that follows
                    # says whether the server is gone, through the reachability report.
                    logger.debug("watch %s: %s", self.name, error.message)
                elif isinstance(error, KubeError) and self._lost_server(error):
                    # Told once for the whole process; relist on the return (see the module docstring).
                    must_list = True
                elif isinstance(error, _ResourceVersionExpiredError) or error.status == kube_client.GONE:
                    logger.info("watch %s: resourceVersion %s expired, relisting", self.name, self._resource_version)
                    must_list = True
                    expired_in_a_row += 1
                    if expired_in_a_row == 1:
                        continue
                    # Expired again right after a relist: the server is compacting faster than we list.
                else:
                    logger.warning("watch %s failed: %s", self.name, error.message)
                self.failures += 1
                failed_in_a_row += 1
                server_asked = retry_after(error) if isinstance(error, KubeError) else None
                self._back_off(self._backoff.base(failed_in_a_row), server_asked)
            except Exception:  # a bug must not end the watch for good: log it loudly and carry on as after a failure
                if self._stopping.is_set():
                    return
                logger.exception("watch %s: unexpected failure", self.name)
                must_list = True
                self.failures += 1
                failed_in_a_row += 1
                self._back_off(self._backoff.base(failed_in_a_row))

    def _lost_server(self, error: KubeError) -> bool:
        return self._reachability is not None and self._reachability.failed(self._source, error, self._source)

    def _back_off(self, backoff: float, server_asked: float | None = None) -> None:
        """Wait after a failure: `backoff` with jitter (watches of several resources never retry in lockstep), at
        least the Retry-After the server asked for. With a reachability report the wait also ends when the API
        server answers again: after a long outage the back-off has grown to its ceiling, and the watch would stay
        blind that long after the server is back."""
        pause(self._backoff.jittered(backoff, server_asked), self._stopping, self._reachability, self._returns_seen)

    def _list(self) -> None:
        items: list[dict[str, Any]] = []
        continue_token: str | None = None
        while True:
            query = {"limit": str(LIST_PAGE_SIZE)}
            if continue_token:
                query["continue"] = continue_token
            page = self._list_fn(query)
            if self._reachability is not None and continue_token is None:
                self._reachability.succeeded(self._source)
            items.extend(_drop_managed_fields(item) for item in page.get("items") or ())
            metadata = page.get("metadata") or {}
            continue_token = metadata.get("continue")
            if not continue_token:
                break
        resource_version = str(metadata.get("resourceVersion") or "")
        self.lists += 1
        self._resource_version = resource_version
        # Handed over whole (see `Listed`): the last page's own list would keep its raw objects alive otherwise.
        del page
        self._deliver(Listed(self.name, items, resource_version))
        self._synced.set()
        if self._reachability is not None:
            self._reachability.succeeded(self._source, self._source, relisted=True)

    def _watch(self, last_list: float) -> bool:
        """Stream events until the server ends the watch; True when anything (a bookmark too) arrived."""
        timeout_seconds = self._watch_timeout_seconds
        if self._resync_seconds is not None:
            remaining = self._resync_seconds - (time.monotonic() - last_list)
            timeout_seconds = max(1, min(timeout_seconds, int(remaining + 0.999)))
        if self.watches:
            metrics.WATCH_RESTARTS.labels(self.name).inc()
        self.watches += 1
        started = time.monotonic()
        query = {
            "watch": "1",
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        response = self._watch_fn(query, timeout_seconds + READ_TIMEOUT_MARGIN)
        if self._reachability is not None:
            self._reachability.succeeded(self._source)
        stream = WatchStream(response)
        with self._stream_lock:
            if self._stopping.is_set():
                stream.close()
                return True
            self._stream = stream
        received = False
        self._watch_delivered = False
        try:
            for event in stream:
                received = True
                self._handle(event)
                self._watch_delivered = True
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        return received or time.monotonic() - started >= QUICK_END_SECONDS

    def _handle(self, event: dict[str, Any]) -> None:
        event_type = str(event.get("type") or "")
        body = _drop_managed_fields(event.get("object") or {})
        if event_type == "ERROR":
            code = int(body.get("code") or 0)
            if code == kube_client.GONE:
                raise _ResourceVersionExpiredError()
            raise KubeTransient(f"watch {self.name}: ERROR event: {body.get('message') or body}", code)
        new_version = (body.get("metadata") or {}).get("resourceVersion")
        if new_version:
            self._resource_version = str(new_version)
        if event_type == "BOOKMARK":
            return
        try:
            kind = WatchEventType(event_type)
        except ValueError:
            logger.warning("watch %s: ignoring an event of unknown type %r", self.name, event_type)
            return
        self._deliver(WatchEvent(self.name, kind, body))

    def _deliver(self, output: WatchOutput) -> None:
        try:
            self._sink(output)
        except Exception:  # the consumer's bug must not end the watch
            logger.exception("watch %s: the sink failed on %s", self.name, type(output).__name__)


# -- the operator's four watches ----------------------------------------------------------------------------

POWER_JOB_SELECTOR: Final = f"{label_names.MANAGED_BY_LABEL}={label_names.MANAGED_BY_VALUE}"
CUSTOM_PREFIX: Final = f"/apis/{API_GROUP}/{API_VERSION}"


def collection(api: KubeApi, path: str, query: Mapping[str, str] | None = None) -> tuple[ListFunction, WatchFunction]:
    """The list and watch functions of the collection at `path` (with fixed query parameters such as a selector)."""
    fixed = dict(query or {})

    def list_page(page_query: Mapping[str, str]) -> dict[str, Any]:
        return api.get(path, {**fixed, **page_query}, what=f"list {path}")

    def open_watch(watch_query: Mapping[str, str], read_timeout: float) -> urllib3.BaseHTTPResponse:
        return api.stream(path, {**fixed, **watch_query}, read_timeout, what=f"watch {path}")

    return list_page, open_watch


def _namespaced(prefix: str, plural: str, namespace: str | None) -> str:
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def group_watch(api_client: ApiClient, sink: Sink, namespace: str | None = None, **options: Any) -> ResourceWatch:
    """Group custom resources (one namespace, or all when None)."""
    path = _namespaced(CUSTOM_PREFIX, "groups", namespace)
    return ResourceWatch(GROUPS, *collection(KubeApi(api_client), path), sink, **options)


def machine_watch(api_client: ApiClient, sink: Sink, namespace: str | None = None, **options: Any) -> ResourceWatch:
    """Node custom resources: the machines (one namespace, or all when None)."""
    path = _namespaced(CUSTOM_PREFIX, "nodes", namespace)
    return ResourceWatch(MACHINES, *collection(KubeApi(api_client), path), sink, **options)


def kube_node_watch(api_client: ApiClient, sink: Sink, **options: Any) -> ResourceWatch:
    """Core Kubernetes Nodes (cluster-scoped)."""
    return ResourceWatch(KUBE_NODES, *collection(KubeApi(api_client), "/api/v1/nodes"), sink, **options)


def power_job_watch(
    api_client: ApiClient, sink: Sink, namespace: str | None = None, **options: Any
) -> ResourceWatch:
    """Our power Jobs only (selected by the managed-by label), in one namespace or all."""
    path = _namespaced("/apis/batch/v1", "jobs", namespace)
    functions = collection(KubeApi(api_client), path, {"labelSelector": POWER_JOB_SELECTOR})
    return ResourceWatch(POWER_JOBS, *functions, sink, **options)
