"""Leader election on a coordination.k8s.io/v1 Lease, so that only one operator replica ever acts.

Separate because it is the one place that decides whether this process may write: the composition root starts
the watches, actors and the writer when `on_started_leading` fires and must stop them when
`on_stopped_leading` fires. Every write to the Lease carries the resourceVersion we read, so two candidates that
race are told apart by the API server (409: the other one won), never by timing.

Rules:
- A candidate takes the Lease when it is free (no holder), or expired: `renewTime + leaseDurationSeconds` is in
  the past by our clock. Replicas' clocks are assumed to agree to well within `renew_seconds` (NTP).
- The leader renews every `renew_seconds`. It stops leading when it has not renewed for
  `lease_seconds - renew_seconds`: earlier than any follower may take over (a full `lease_seconds` after the last
  renewal), so two replicas never act at once even with a little clock skew or a slow request. `is_leader` also
  turns False at that deadline by itself, even if the elector thread is stuck in a request.
- `stop()` first tells the process to stop acting, then releases the Lease (clears holderIdentity), so a
  follower takes over at its next retry instead of waiting for expiry.

Through an API server outage the leader keeps leading as long as a renewal succeeds within the renew deadline
(`lease_seconds - renew_seconds` after the last one); a longer outage makes it step down at that deadline, and it
takes the Lease again (still its own, or expired) at its first retry after the server is back. Its failed calls
during an outage go to the process's `ApiReachability`, which tells the outage once.

Callbacks run on the elector's thread (or on the thread calling `stop()`); they must return quickly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from kubernetes import client as kube

from actors import metrics
from kubeapi import kube_client
from kubeapi.kube_client import KubeApi, KubeConflict, KubeError, KubeNotFound
from kubeapi.reachability import ApiReachability

logger = logging.getLogger(__name__)

LEASE_RESOURCE: Final = "leases"
STOPPING: Final = "stopping"


def _now() -> datetime:
    return datetime.now(UTC)


def format_micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC). Pure."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """A Kubernetes Time or MicroTime, or None when absent or unreadable. Pure."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class LeaderElector:
    """Acquires and renews one Lease on a thread; `is_leader` says whether this process may act right now."""

    def __init__(
        self,
        api_client: kube.ApiClient,
        namespace: str,
        lease_name: str,
        identity: str,
        lease_seconds: float = 15,
        renew_seconds: float = 5,
        retry_seconds: float = 2,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        *,
        clock: Callable[[], datetime] = _now,
        monotonic: Callable[[], float] = time.monotonic,
        reachability: ApiReachability | None = None,
    ) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError("renew_seconds must be positive and shorter than lease_seconds")
        self._api = KubeApi(api_client)
        self.namespace = namespace
        self.lease_name = lease_name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self.renew_deadline_seconds = lease_seconds - renew_seconds
        self._on_started = on_started_leading or (lambda: None)
        self._on_stopped = on_stopped_leading or (lambda: None)
        self._clock = clock
        self._monotonic = monotonic
        self._reachability = reachability
        # A request must give up before the renew deadline, or a hung call could outlive our leadership.
        read_timeout = max(0.5, min(kube_client.DEFAULT_TIMEOUT[1], self.renew_deadline_seconds / 2))
        self._timeout = (min(kube_client.DEFAULT_TIMEOUT[0], read_timeout), read_timeout)
        self._lock = threading.Lock()
        self._leading = False
        self._last_renewed = 0.0
        self._last_holder = ""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """True while this process holds the Lease and renewed it within the renew deadline."""
        with self._lock:
            return self._leading and self._monotonic() - self._last_renewed < self.renew_deadline_seconds

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("leader elector already started")
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.lease_name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, *, release: bool = True) -> None:
        """Stop campaigning; if leading, stop acting first and then release the Lease for a follower.

        `release=False` leaves the Lease to expire, as a crashed process would (tests of a takeover use it).
        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("leader elector thread did not stop within %.1f s", timeout)
        if self._step_down(STOPPING, asked=True) and release:
            self._release()

    # -- the loop

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                leading = self._leading
            if leading:
                renewed = self._try_hold()
                if renewed:
                    self._stopping.wait(self.renew_seconds)
                    continue
                if self._last_holder not in ("", self.identity):
                    self._step_down(f"{self._last_holder} holds the lease now")
                elif self._monotonic() - self._last_renewed >= self.renew_deadline_seconds:
                    self._step_down("could not renew the lease before the renew deadline")
                self._stopping.wait(self.retry_seconds)
                continue
            if self._try_hold():
                self._become_leader()
                self._stopping.wait(self.renew_seconds)
            else:
                self._stopping.wait(self.retry_seconds)

    def _become_leader(self) -> None:
        with self._lock:
            self._leading = True
        logger.info("leader election: %s now leads lease %s/%s", self.identity, self.namespace, self.lease_name)
        try:
            self._on_started()
        except Exception:
            logger.exception("on_started_leading failed")

    def _step_down(self, why: str, *, asked: bool = False) -> bool:
        with self._lock:
            was_leading = self._leading
            self._leading = False
        if not was_leading:
            return False
        # Losing the Lease is worth a WARNING; handing it over because we were asked to stop (SIGTERM, a rolling
        # update) is routine and logged at INFO, so that a WARNING from here always means something went wrong.
        log = logger.info if asked else logger.warning
        log("leader election: %s stops leading (%s)", self.identity, why)
        try:
            self._on_stopped()
        except Exception:
            logger.exception("on_stopped_leading failed")
        return True

    def _try_hold(self) -> bool:
        """Acquire or renew the Lease; True when we hold it after this attempt."""
        try:
            held = self._acquire_or_renew()
        except KubeConflict:
            logger.info("leader election: lost a race for lease %s/%s", self.namespace, self.lease_name)
        except KubeError as error:
            if self._reachability is None or not self._reachability.failed("leader election", error):
                logger.warning("leader election: %s", error.message)
        else:
            if self._reachability is not None:
                self._reachability.succeeded("leader election")
            return held
        return False

    def _acquire_or_renew(self) -> bool:
        now = self._clock()
        try:
            lease = self._read()
        except KubeNotFound:
            self._write("create", self._new_lease(now))
            self._last_holder = self.identity
            self._renewed()
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._last_holder = holder
        if holder and holder != self.identity and not self._expired(spec, now):
            return False
        new_spec = dict(spec)
        if holder != self.identity:
            new_spec["acquireTime"] = format_micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        new_spec["holderIdentity"] = self.identity
        new_spec["leaseDurationSeconds"] = round(self.lease_seconds)
        new_spec["renewTime"] = format_micro_time(now)
        # The read resourceVersion travels in the body: a concurrent writer makes this a 409, not a silent win.
        self._write("update", {**lease, "spec": new_spec})
        self._last_holder = self.identity
        self._renewed()
        return True

    def _expired(self, spec: dict[str, Any], now: datetime) -> bool:
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        return renewed is None or renewed + timedelta(seconds=duration) < now

    def _renewed(self) -> None:
        with self._lock:
            self._last_renewed = self._monotonic()

    def _new_lease(self, now: datetime) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.lease_name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.lease_seconds),
                "acquireTime": format_micro_time(now),
                "renewTime": format_micro_time(now),
                "leaseTransitions": 0,
            },
        }

    def _release(self) -> None:
        try:
            lease = self._read()
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = None
            spec["renewTime"] = format_micro_time(self._clock())
            self._write("update", {**lease, "spec": spec})
            logger.info("leader election: %s released lease %s/%s", self.identity, self.namespace, self.lease_name)
        except KubeError as error:
            # Not fatal: the lease expires by itself after lease_seconds.
            logger.warning("leader election: could not release the lease: %s", error.message)

    # -- API calls

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _read(self) -> dict[str, Any]:
        return self._api.request(
            "GET", f"{self._path}/{self.lease_name}", what=f"get lease {self.lease_name}", timeout=self._timeout
        )

    def _write(self, verb: str, body: dict[str, Any]) -> None:
        method, path = ("POST", self._path) if verb == "create" else ("PUT", f"{self._path}/{self.lease_name}")
        try:
            self._api.request(method, path, body=body, what=f"{verb} lease {self.lease_name}", timeout=self._timeout)
        except KubeError as error:
            metrics.KUBE_WRITES.labels(verb, LEASE_RESOURCE, kube_client.outcome(error)).inc()
            raise
        metrics.KUBE_WRITES.labels(verb, LEASE_RESOURCE, "ok").inc()
