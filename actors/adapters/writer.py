"""The effect executor: applies the actors' effects to the Kubernetes API on a bounded pool of threads.

Actors only describe what must change (`actors.fsm.effects`); this module is the one place that performs those
changes, so every rule about doing it safely lives here:

- Order. The effects of one machine are applied strictly in submission order: each machine has a FIFO of batches
  and at most one thread works on it at a time, so a Cordon always lands before the shutdown Job it precedes and a
  status write never overtakes an older one. Different machines proceed in parallel on `workers` threads.
- Drains take long (they wait for disruption budgets), so a Drain moves the machine's work to a separate pool of
  drain threads: the machine's FIFO stays paused until the drain and the rest of its batch are done, while the
  regular workers keep serving other machines (a scale-up must never wait behind someone's drain).
- Retries. Transient failures (5xx, 429, timeouts, lost connections) and conflicts that a fresh read resolves are
  retried with exponential backoff and jitter, up to `max_retries` times; each retry re-runs the effect from its
  read, so read-modify-write effects see the latest object. A permanent refusal is reported at once as
  `EffectFailed(permanent=True)`; a transient failure that outlives the retries as `EffectFailed(permanent=False)`.
- Outages. A call that got no answer at all (the API server is unreachable: a control plane rebooting) does not
  use up the retries: the effect waits for the server's return, reported to and told once by the process's
  `ApiReachability`, and is applied as soon as the server answers again. Since the machine's FIFO waits with it,
  every write of the outage lands afterwards in its order, and nothing turns into `EffectFailed` (a startup Job
  that could not be created during an eight-second reboot must not count as a failed boot). Once the return has
  been told, each machine whose writes waited gets one Normal `WritesDelayed` Event saying how many and for how
  long: once per outage, however many attempts failed. It is the one Event the writer records on its own rather
  than for an actor, because it is about the writes themselves, which no actor sees.
- Idempotence. Every effect may be applied twice (a restarted actor resubmits): a Job that exists is adopted when
  it is ours, deletes of missing objects succeed, status writes replace the whole status.
- Optimistic concurrency. Node taints, labels and providerID are read-modify-written with the resourceVersion
  that was read, so a concurrent change by CA or the kubelet makes our write fail (409) instead of erasing theirs.
- One write per Node change. Consecutive effects that only change the machine's Kubernetes Node (`NODE_WRITES`:
  uncordon, drop CA's taints, the Group's labels and taints, the providerID) are applied as one read and one patch
  (`node_patch`), so a member turns usable all at once: the scheduler and CA never see it half done, and it takes
  one round trip instead of four on the way from Node Ready to a bound pod.

Status writes replace the whole `.status` with one JSON patch `add /status` operation: conflict-free (no
resourceVersion involved) like a merge patch, but a merge patch would merge nested maps and so keep keys the
machine no longer has (old labels in `lastReady`, a state count that went to zero).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import queue
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client import ApiClient

from actors import metrics
from actors.adapters import job_manifest
from actors.adapters.kube_client import (
    JSON_PATCH,
    MERGE_PATCH,
    KubeAlreadyExists,
    KubeApi,
    KubeConflict,
    KubeError,
    KubeNotFound,
    KubePermanent,
    KubeTransient,
    outcome,
)
from actors.adapters.reachability import WRITE_PREFIX, ApiReachability, Back
from actors.effects_port import AnyBatch, EffectBatch, GroupEventBatch, GroupStatusBatch
from actors.fsm import effects
from actors.messages import DrainCompleted, EffectFailed
from schemas import API_GROUP, API_VERSION, GROUP_VERSION
from schemas import labels as label_names
from schemas.common import Taint, parse_duration
from schemas.group import GroupSpec
from schemas.node import OperationKind

logger = logging.getLogger(__name__)

Report = Callable[[Any, object], None]
"""Deliver a message to an actor address (the runtime's `tell`)."""
Batch = AnyBatch

COMPONENT: Final = "homelab-autoscaler"
DEFAULT_BOOT_TIMEOUT_SECONDS: Final = 600.0
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: Final = 300.0
CUSTOM_PREFIX: Final = f"/apis/{API_GROUP}/{API_VERSION}"
MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
AUTOSCALER_TAINTS: Final = frozenset({label_names.CA_TO_BE_DELETED_TAINT, label_names.CA_DELETION_CANDIDATE_TAINT})
FINISHED_POD_PHASES: Final = frozenset({"Succeeded", "Failed"})
WRITES_DELAYED: Final = "WritesDelayed"
"""Reason of the one Event a machine gets when its writes waited out an API server outage."""

# Resource names used in the kube-writes metric (and in docs/architecture/kubernetes.md).
JOBS: Final = "jobs"
NODES: Final = "nodes"
PODS_EVICTION: Final = "pods/eviction"
EVENTS: Final = "events"
MACHINE_STATUS: Final = f"nodes.{API_GROUP}/status"
GROUP_STATUS: Final = f"groups.{API_GROUP}/status"


class _WriterStopping(Exception):  # control flow, never escapes the module
    """The writer gave up waiting because it is being stopped."""


@dataclass(frozen=True)
class _DrainTask:
    key: str
    batch: EffectBatch
    index: int


@dataclass(frozen=True)
class _Involved:
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def batch_key(batch: Batch) -> str:
    """The FIFO a batch belongs to: its machine (or its group, for group status and Events). Pure."""
    if isinstance(batch, GroupStatusBatch | GroupEventBatch):
        return f"group:{batch.namespace}/{batch.name}"
    return f"machine:{batch.machine.namespace}/{batch.machine.name}"


class KubeWriter:
    """Applies effect batches in per-machine order on `workers` threads; implements the actors' `EffectPort`.

    Threads start with the writer. `submit` never blocks. `stop(timeout)` lets batches in progress finish, logs
    every queued batch it did not start (nothing is dropped silently), and joins every thread it started.
    """

    def __init__(
        self,
        api_client: ApiClient,
        report: Report,
        workers: int = 4,
        max_retries: int = 5,
        base_backoff: float = 0.2,
        *,
        max_backoff: float = 10.0,
        drain_workers: int = 4,
        drain_poll_seconds: float = 1.0,
        event_dedup_seconds: float = 600.0,
        event_cache_size: int = 1024,
        reporting_instance: str = "",
        clock: Callable[[], datetime] = _utc_now,
        reachability: ApiReachability | None = None,
    ) -> None:
        if workers < 1 or drain_workers < 1:
            raise ValueError("the writer needs at least one worker and one drain worker")
        self._api = KubeApi(api_client)
        self._report = report
        self._max_retries = max_retries
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._drain_poll_seconds = drain_poll_seconds
        self._event_dedup_seconds = event_dedup_seconds
        self._event_cache_size = event_cache_size
        self._reporting_instance = reporting_instance
        self._clock = clock
        self._reachability = reachability
        self._write_numbers = itertools.count(1)
        self._delayed_lock = threading.Lock()
        self._delayed: dict[str, tuple[EffectBatch, int]] = {}
        """Per machine FIFO: its latest batch whose write waited for the API server, and how many writes did."""
        if reachability is not None:
            reachability.add_return_listener(self._after_outage)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[str, deque[Batch]] = {}
        self._active: set[str] = set()
        self._ready: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._drains: queue.SimpleQueue[_DrainTask | None] = queue.SimpleQueue()
        self._stopping = False
        self._abort = threading.Event()
        self._events: OrderedDict[tuple[str, ...], _EventRecord] = OrderedDict()
        self._events_lock = threading.Lock()
        self._appliers: dict[type, Callable[[EffectBatch, Any], None]] = {
            effects.CreateJob: self._create_job,
            effects.DeleteJob: self._delete_job,
            effects.PatchStatus: self._patch_status,
            effects.Cordon: self._cordon,
            effects.DeleteKubeNode: self._delete_kube_node,
            effects.RecordEvent: self._record_event,
        }
        self._threads = [
            threading.Thread(target=self._work, name=f"kube-writer-{number}", daemon=True) for number in range(workers)
        ] + [
            threading.Thread(target=self._drain_work, name=f"kube-drain-{number}", daemon=True)
            for number in range(drain_workers)
        ]
        self._worker_count = workers
        self._drain_worker_count = drain_workers
        for thread in self._threads:
            thread.start()

    # -- the port

    def submit(self, batch: Batch) -> None:
        """Queue a batch behind earlier batches of the same machine; returns at once."""
        key = batch_key(batch)
        with self._lock:
            if self._stopping:
                logger.error("kube writer is stopping: not applying %s", _describe(batch))
                return
            self._pending.setdefault(key, deque()).append(batch)
            if key not in self._active:
                self._active.add(key)
                self._ready.put(key)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted batch has been applied (or reported); False at the timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batches in progress, log what was never started, and join every thread."""
        deadline = time.monotonic() + timeout
        if self._reachability is not None:
            self._reachability.remove_return_listener(self._after_outage)
        with self._lock:
            self._stopping = True
        for _ in range(self._worker_count):
            self._ready.put(None)
        for _ in range(self._drain_worker_count):
            self._drains.put(None)
        # Most of the time goes to letting work in progress finish; near the deadline, retries and drains are
        # cut short (reported as failed) so that the threads can be joined.
        patience = deadline - timeout * 0.2
        for thread in self._threads:
            thread.join(max(0.0, patience - time.monotonic()))
        self._abort.set()
        if self._reachability is not None:
            self._reachability.wake()  # writes waiting for the API server's return give up now
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("kube writer thread %s did not stop in time", thread.name)
        with self._lock:
            left: list[Batch] = [batch for batches in self._pending.values() for batch in batches]
            self._pending.clear()
            self._active.clear()
            self._idle.notify_all()
        while not self._drains.empty():
            task = self._drains.get()
            if task is not None:
                left.append(task.batch)
        for batch in left:
            logger.warning("kube writer stopped before applying %s", _describe(batch))

    # -- scheduling

    def _work(self) -> None:
        while True:
            key = self._ready.get()
            if key is None:
                return
            with self._lock:
                if self._stopping:
                    continue  # left in _pending: stop() logs it
                batch = self._pending[key].popleft()
            handed_to_drain = False
            try:
                handed_to_drain = self._run(key, batch, 0)
            except Exception:  # a bug must neither kill the worker nor leave the machine's FIFO stuck
                logger.exception("kube writer: applying %s failed", _describe(batch))
            if not handed_to_drain:
                self._release(key)

    def _drain_work(self) -> None:
        while True:
            task = self._drains.get()
            if task is None:
                return
            try:
                self._drain(task.batch)
                self._run(task.key, task.batch, task.index + 1, on_drain_thread=True)
            except Exception:  # as in _work: keep the thread and release the machine
                logger.exception("kube writer: applying %s failed", _describe(task.batch))
            finally:
                self._release(task.key)

    def _release(self, key: str) -> None:
        """The machine's current batch is done: schedule its next batch, or mark it idle."""
        with self._lock:
            batches = self._pending.get(key)
            if batches and not self._stopping:
                self._ready.put(key)
                return
            if not batches:
                self._pending.pop(key, None)
            self._active.discard(key)
            if not self._active:
                self._idle.notify_all()

    def _run(self, key: str, batch: Batch, start: int, *, on_drain_thread: bool = False) -> bool:
        """Apply the batch from effect `start` on; True when the rest was handed to a drain thread."""
        if isinstance(batch, GroupStatusBatch):
            self._with_retries(functools.partial(self._patch_group_status, batch), batch, None)
            return False
        if isinstance(batch, GroupEventBatch):
            group = _Involved("Group", batch.namespace, batch.name, batch.uid)
            self._with_retries(functools.partial(self._record, group, batch.event), batch, None)
            return False
        for index in range(start, len(batch.effects)):
            effect = batch.effects[index]
            if isinstance(effect, effects.Drain):
                if on_drain_thread:
                    self._drain(batch)
                    continue
                self._drains.put(_DrainTask(key, batch, index))
                return True
            if isinstance(effect, NODE_WRITES):
                if index > start and isinstance(batch.effects[index - 1], NODE_WRITES):
                    continue  # applied with the first of its run
                run = _node_write_run(batch.effects, index)
                self._with_retries(functools.partial(self._write_node, batch, run), batch, *run)
                continue
            applier = self._appliers.get(type(effect))
            if applier is None:
                # Timers belong to the ticker; anything else unknown is a wiring bug worth a loud log.
                logger.error("kube writer: no way to apply %r for %s", effect, batch.machine.key)
                continue
            applied = self._with_retries(functools.partial(applier, batch, effect), batch, effect)
            if applied and isinstance(effect, effects.PatchStatus) and batch.stored_notice is not None:
                # The group holding CA's answer waits for exactly this: the commanded state is stored now.
                self._report(batch.stored_notice.recipient, batch.stored_notice.message)
        return False

    def _with_retries(
        self, apply: Callable[[], None], batch: Batch, effect: effects.Effect | None, *together: effects.Effect
    ) -> bool:
        """Apply with retries; True when it was applied, False when it failed (and the failure was reported, for
        `effect` and every effect applied `together` with it in the same write)."""
        failures = 0
        outage_waits = 0
        pending: str | None = None
        reachability = self._reachability
        while True:
            returns = reachability.returns if reachability is not None else 0
            try:
                apply()
                if reachability is not None:
                    if pending is not None:
                        self._note_delayed(batch)  # before the report: it may be the one that tells the return
                    reachability.succeeded("kube writer", pending)
                return True
            except (KubeTransient, KubeConflict) as error:
                source = f"kube writer ({_describe_effect(batch, effect)})"
                key = pending or f"{WRITE_PREFIX}{next(self._write_numbers)}"
                if reachability is not None and reachability.failed(source, error, key):
                    # No answer at all: wait for the server instead of spending the retries (module docstring).
                    pending = key
                    if self._abort.is_set():
                        reachability.abandoned(pending)
                        for failed in (effect, *together):
                            self._failed(batch, failed, f"the API server is unreachable: {error.message}",
                                         permanent=False)
                        return False
                    outage_waits += 1
                    reachability.wait_for_return(returns, self._backoff(outage_waits), self._abort.is_set)
                    continue
                failures += 1
                if failures > self._max_retries or self._abort.is_set():
                    message = f"gave up after {failures} tries: {error.message}"
                    for failed in (effect, *together):
                        self._failed(batch, failed, message, permanent=False)
                    return False
                delay = self._backoff(failures, error)
                logger.info("kube writer: %s (retry %d in %.2f s)", error.message, failures, delay)
                self._abort.wait(delay)
            except KubeError as error:
                for failed in (effect, *together):
                    self._failed(batch, failed, error.message, permanent=True)
                return False
            except Exception as error:  # a bug here must not kill the worker, and the actor must hear of it
                logger.exception("kube writer: applying %r failed", effect)
                for failed in (effect, *together):
                    self._failed(batch, failed, f"{type(error).__name__}: {error}", permanent=True)
                return False

    def _note_delayed(self, batch: Batch) -> None:
        # Machines only: a Group's status and Events are the group actor's to tell, and it re-reports them.
        if not isinstance(batch, EffectBatch) or (self._reachability is not None and self._reachability.settled):
            return  # a straggler after the return was told: the INFO line already named it as still recovering
        key = batch_key(batch)
        with self._delayed_lock:
            _, count = self._delayed.get(key, (batch, 0))
            self._delayed[key] = (batch, count + 1)

    def _after_outage(self, back: Back) -> None:
        """The return has been told: one `WritesDelayed` Event per machine whose writes waited for it."""
        with self._delayed_lock:
            delayed, self._delayed = self._delayed, {}
        for batch, count in delayed.values():
            message = (
                f"{count} write{'s' if count != 1 else ''} waited for the API server, unreachable from "
                f"{_clock(back.lost_at)} to {_clock(back.back_at)} UTC ({back.seconds:.1f} s), and "
                f"{'were' if count != 1 else 'was'} applied in order"
            )
            event = effects.RecordEvent(effects.EventType.NORMAL, WRITES_DELAYED, message)
            self.submit(EffectBatch(batch.machine, batch.node, batch.group_spec, (event,), batch.reply_to))

    def _backoff(self, failures: int, error: KubeError | None = None) -> float:
        delay = min(self._max_backoff, self._base_backoff * 2 ** (failures - 1))
        delay *= 0.5 + random.random() / 2  # jitter: machines failing together do not retry together
        retry_after = (error.body.get("details") or {}).get("retryAfterSeconds") if error is not None else None
        if isinstance(retry_after, int | float) and retry_after > 0:
            delay = max(delay, min(float(retry_after), self._max_backoff))
        return float(delay)

    def _failed(self, batch: Batch, effect: effects.Effect | None, message: str, *, permanent: bool) -> None:
        kind = "permanently" if permanent else "after retries"
        logger.warning("kube writer: %s failed %s: %s", _describe_effect(batch, effect), kind, message)
        if isinstance(batch, EffectBatch) and effect is not None:
            self._report(batch.reply_to, EffectFailed(effect, message, permanent))

    # -- API calls, counted

    def _write(self, verb: str, resource: str, method: str, path: str, **arguments: Any) -> dict[str, Any]:
        try:
            answer = self._api.request(method, path, what=f"{verb} {path}", **arguments)
        except KubeError as error:
            metrics.KUBE_WRITES.labels(verb, resource, outcome(error)).inc()
            raise
        metrics.KUBE_WRITES.labels(verb, resource, "ok").inc()
        return answer

    # -- Jobs

    def _create_job(self, batch: EffectBatch, effect: effects.CreateJob) -> None:
        if batch.node is None:
            raise KubePermanent(f"cannot render Job {effect.job_name}: no Node resource in the batch")
        try:
            manifest = job_manifest.render_job(
                batch.node,
                batch.machine.group,
                effect.kind,
                effect.attempt,
                effect.job_name,
                _default_deadline(batch.group_spec, effect.kind),
            )
        except ValueError as error:
            raise KubePermanent(f"cannot render Job {effect.job_name}: {error}") from None
        jobs = f"/apis/batch/v1/namespaces/{batch.machine.namespace}/jobs"
        try:
            self._write("create", JOBS, "POST", jobs, body=manifest)
        except KubeAlreadyExists:
            existing = self._api.get(f"{jobs}/{effect.job_name}", what=f"get Job {effect.job_name}")
            owner = ((existing.get("metadata") or {}).get("labels") or {}).get(label_names.MACHINE_LABEL)
            if owner != batch.machine.name:
                raise KubePermanent(
                    f"Job {batch.machine.namespace}/{effect.job_name} already exists and belongs to "
                    f"{owner or 'no machine'}, not to {batch.machine.name}"
                ) from None
            logger.info("kube writer: adopted existing Job %s/%s", batch.machine.namespace, effect.job_name)

    def _delete_job(self, batch: EffectBatch, effect: effects.DeleteJob) -> None:
        # Background propagation removes the Job's pods too; the default for Jobs orphans them, and an orphaned
        # startup pod could power on a machine that is being shut down.
        path = f"/apis/batch/v1/namespaces/{batch.machine.namespace}/jobs/{effect.job_name}"
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        with contextlib.suppress(KubeNotFound):
            self._write("delete", JOBS, "DELETE", path, body=body)

    # -- Node resource status

    def _patch_status(self, batch: EffectBatch, effect: effects.PatchStatus) -> None:
        status = effect.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        path = f"{CUSTOM_PREFIX}/namespaces/{batch.machine.namespace}/nodes/{batch.machine.name}/status"
        self._write("patch", MACHINE_STATUS, "PATCH", path, body=_replace_status(status), content_type=JSON_PATCH)

    def _patch_group_status(self, batch: GroupStatusBatch) -> None:
        status = batch.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        path = f"{CUSTOM_PREFIX}/namespaces/{batch.namespace}/groups/{batch.name}/status"
        self._write("patch", GROUP_STATUS, "PATCH", path, body=_replace_status(status), content_type=JSON_PATCH)

    # -- the Kubernetes Node

    def _node_path(self, batch: EffectBatch) -> str:
        return f"/api/v1/nodes/{batch.machine.kubernetes_node_name}"

    def _read_node(self, batch: EffectBatch) -> dict[str, Any] | None:
        try:
            return self._api.get(self._node_path(batch), what=f"get Node {batch.machine.kubernetes_node_name}")
        except KubeNotFound:
            return None

    def _patch_node(self, batch: EffectBatch, patch: dict[str, Any]) -> None:
        # No Node (yet, or any more): there is nothing to change on it.
        with contextlib.suppress(KubeNotFound):
            self._write("patch", NODES, "PATCH", self._node_path(batch), body=patch, content_type=MERGE_PATCH)

    def _cordon(self, batch: EffectBatch, effect: effects.Cordon) -> None:
        self._patch_node(batch, {"spec": {"unschedulable": True}})

    def _write_node(self, batch: EffectBatch, writes: tuple[effects.Effect, ...]) -> None:
        node = self._read_node(batch)
        if node is None:
            return
        spec = batch.group_spec
        template = spec.template if spec else None
        managed_labels = dict(spec.node_labels) if spec else {}
        managed_labels[label_names.GROUP_LABEL] = batch.machine.group
        managed_labels[label_names.MACHINE_LABEL] = batch.machine.name
        patch, kept_provider_id, conflicts = node_patch(
            node,
            writes,
            managed_labels,
            (*(spec.node_taints if spec else ()), *(template.taints if template else ())),
            template_labels=template.labels if template else {},
        )
        if conflicts:
            logger.warning(
                "kube writer: Node %s has %s, where its Group's scale-from-zero template says %s; Cluster Autoscaler "
                "plans new members with the template's values, so pods it scales up for may not fit this machine",
                batch.machine.kubernetes_node_name,
                ", ".join(f"{key}={value}" for key, (value, _) in sorted(conflicts.items())),
                ", ".join(f"{key}={wanted}" for key, (_, wanted) in sorted(conflicts.items())),
            )
        if kept_provider_id:
            logger.info(
                "kube writer: Node %s already has providerID %s; keeping it (it is immutable)",
                batch.machine.kubernetes_node_name,
                kept_provider_id,
            )
        if patch is not None:
            self._patch_node(batch, patch)

    def _delete_kube_node(self, batch: EffectBatch, effect: effects.DeleteKubeNode) -> None:
        with contextlib.suppress(KubeNotFound):
            self._write("delete", NODES, "DELETE", self._node_path(batch))

    # -- drain

    def _drain(self, batch: EffectBatch) -> None:
        """Evict the machine's pods within the group's shutdown timeout and report `DrainCompleted`."""
        node_name = batch.machine.kubernetes_node_name
        timeout = (
            parse_duration(batch.group_spec.shutdown_timeout) if batch.group_spec else DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
        )
        deadline = time.monotonic() + timeout
        try:
            succeeded, message = self._evict_all(node_name, deadline)
        except _WriterStopping:
            succeeded, message = False, f"drain of {node_name} interrupted: the operator is stopping"
        except KubeError as error:
            succeeded, message = False, f"drain of {node_name} failed: {error.message}"
        except Exception as error:  # never leave the actor waiting for an answer
            logger.exception("kube writer: drain of %s failed", node_name)
            succeeded, message = False, f"drain of {node_name} failed: {type(error).__name__}: {error}"
        log = logger.info if succeeded else logger.warning
        log("kube writer: drain of %s: %s", node_name, message)
        self._report(batch.reply_to, DrainCompleted(succeeded, message))

    def _evict_all(self, node_name: str, deadline: float) -> tuple[bool, str]:
        pods = self._pods_on(node_name, deadline)
        waiting = {pod_uid(pod) for pod in pods if (pod.get("metadata") or {}).get("deletionTimestamp")}
        to_evict = [pod for pod in pods if needs_eviction(pod)]
        evicted = 0
        failures = 0
        last_refusal = ""
        while to_evict:
            blocked: list[dict[str, Any]] = []
            for pod in to_evict:
                try:
                    if self._evict(pod):
                        evicted += 1
                        waiting.add(pod_uid(pod))
                except (KubeTransient, KubeConflict) as error:
                    # 429 is how the eviction API says a PodDisruptionBudget forbids it now; try again later.
                    blocked.append(pod)
                    last_refusal = error.message
            to_evict = blocked
            if not to_evict:
                break
            failures += 1
            if time.monotonic() >= deadline:
                names = ", ".join(pod_name(pod) for pod in to_evict)
                return False, (
                    f"evicted {evicted} pods; {len(to_evict)} could not be evicted before the drain deadline "
                    f"({names}); last refusal: {last_refusal}"
                )
            self._sleep_until(min(deadline, time.monotonic() + self._backoff(failures)))
        while waiting:
            on_node = {pod_uid(pod) for pod in self._pods_on(node_name, deadline)}
            waiting &= on_node
            if not waiting:
                break
            if time.monotonic() >= deadline:
                return False, f"evicted {evicted} pods; {len(waiting)} still terminating at the drain deadline"
            self._sleep_until(min(deadline, time.monotonic() + self._drain_poll_seconds))
        return True, f"evicted {evicted} pods"

    def _sleep_until(self, moment: float) -> None:
        if self._abort.wait(max(0.0, moment - time.monotonic())):
            raise _WriterStopping()

    def _pods_on(self, node_name: str, deadline: float) -> list[dict[str, Any]]:
        failures = 0
        while True:
            try:
                answer = self._api.get(
                    "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node_name}"}, what=f"list pods on {node_name}"
                )
                return list(answer.get("items") or [])
            except KubeTransient:
                failures += 1
                if time.monotonic() >= deadline:
                    raise
                self._sleep_until(min(deadline, time.monotonic() + self._backoff(failures)))

    def _evict(self, pod: dict[str, Any]) -> bool:
        """Ask the Eviction API to remove the pod; False when it is already gone."""
        metadata = pod.get("metadata") or {}
        name, namespace = str(metadata.get("name")), str(metadata.get("namespace"))
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        try:
            self._write("create", PODS_EVICTION, "POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
                        body=body)
        except KubeNotFound as error:
            if error.details_name == name:
                return False  # the pod went away by itself
            # A 404 naming nothing means the API server does not serve the eviction subresource at all.
            raise KubePermanent(f"the API server does not serve pods/eviction ({error.message})", 404) from error
        return True

    # -- events

    def _record_event(self, batch: EffectBatch, effect: effects.RecordEvent) -> None:
        uid = batch.node.metadata.uid if batch.node else ""
        self._record(_Involved("Node", batch.machine.namespace, batch.machine.name, uid), effect)

    def _record(self, involved: _Involved, effect: effects.RecordEvent) -> None:
        """Record `effect` as an Event on our resource `involved`, or add to the count of the same recent one."""
        key = (involved.kind, involved.namespace, involved.name, involved.uid, str(effect.type), effect.reason,
               effect.message)
        now = _time(self._clock())
        events = f"/api/v1/namespaces/{involved.namespace}/events"
        with self._events_lock:
            record = self._events.get(key)
            if record is not None and time.monotonic() - record.last_seen > self._event_dedup_seconds:
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
        with self._events_lock:
            self._events[key] = _EventRecord(name, count, first_time, time.monotonic())
            self._events.move_to_end(key)
            while len(self._events) > self._event_cache_size:
                self._events.popitem(last=False)


# -- pure helpers ---------------------------------------------------------------------------------------------


def _replace_status(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/status", "value": status}]


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _default_deadline(spec: GroupSpec | None, kind: OperationKind) -> int:
    if kind is OperationKind.STARTUP:
        seconds = parse_duration(spec.boot_timeout) if spec else DEFAULT_BOOT_TIMEOUT_SECONDS
    else:
        seconds = parse_duration(spec.shutdown_timeout) if spec else DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
    return max(1, math.ceil(seconds))


NODE_WRITES: Final = (
    effects.Uncordon,
    effects.RemoveAutoscalerTaints,
    effects.ApplyManagedLabelsAndTaints,
    effects.SetProviderID,
)
"""Effects that change only the machine's Kubernetes Node; consecutive ones are applied as one patch."""


def _node_write_run(batch_effects: tuple[effects.Effect, ...], first: int) -> tuple[effects.Effect, ...]:
    end = first
    while end < len(batch_effects) and isinstance(batch_effects[end], NODE_WRITES):
        end += 1
    return batch_effects[first:end]


def node_patch(
    node: dict[str, Any],
    writes: tuple[effects.Effect, ...],
    managed_labels: dict[str, str],
    managed_taints: tuple[Taint, ...],
    *,
    template_labels: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any] | None, str, dict[str, tuple[str, str]]]:
    """The one merge patch that makes `writes` true of `node`, or None when they already are; the providerID the
    Node already has when a SetProviderID asked for another (it is immutable, so ours is dropped); and the template
    labels the Node has with another value (label: (the Node's, the template's)). Pure.

    `managed_labels` (the Group's `nodeLabels`, its group and machine labels) are set whatever the Node has.
    `template_labels` (the Group's scale-from-zero `template.labels`) are added where the Node lacks them but never
    overwrite a value the kubelet or a person set (`kubernetes.io/arch` must stay true); a difference is returned
    for the caller to report, since CA plans with the template's value. The patch carries the resourceVersion that
    was read: taints are replaced as a whole list, so a taint someone added since our read must make the write fail
    (409, re-read, retry), not vanish.
    """
    spec = node.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    current_taints = list(spec.get("taints") or [])
    taints = current_taints
    changed_spec: dict[str, Any] = {}
    changed_labels: dict[str, str] = {}
    kept_provider_id = ""
    conflicts: dict[str, tuple[str, str]] = {}
    for write in writes:
        if isinstance(write, effects.Uncordon) and spec.get("unschedulable"):
            changed_spec["unschedulable"] = False
        elif isinstance(write, effects.RemoveAutoscalerTaints):
            taints = [taint for taint in taints if taint.get("key") not in AUTOSCALER_TAINTS]
        elif isinstance(write, effects.ApplyManagedLabelsAndTaints):
            for key, value in (template_labels or {}).items():
                if key not in labels:
                    changed_labels[key] = value
                elif labels[key] != value and key not in managed_labels:
                    conflicts[key] = (str(labels[key]), value)
            changed_labels.update({key: value for key, value in managed_labels.items() if labels.get(key) != value})
            taints = merge_taints(taints, managed_taints)
        elif isinstance(write, effects.SetProviderID):
            current = spec.get("providerID") or ""
            if not current:
                changed_spec["providerID"] = write.provider_id
            elif current != write.provider_id:
                kept_provider_id = current
    if taints != current_taints:
        changed_spec["taints"] = taints
    if not changed_spec and not changed_labels:
        return None, kept_provider_id, conflicts
    metadata: dict[str, Any] = {"resourceVersion": _version(node)}
    if changed_labels:
        metadata["labels"] = changed_labels
    patch: dict[str, Any] = {"metadata": metadata}
    if changed_spec:
        patch["spec"] = changed_spec
    return patch, kept_provider_id, conflicts


def taint_dict(taint: Taint) -> dict[str, str]:
    """A core/v1 taint as the API stores it (an empty value is omitted). Pure."""
    result = {"key": taint.key, "effect": str(taint.effect.value)}
    if taint.value:
        result["value"] = taint.value
    return result


def merge_taints(current: list[dict[str, Any]], wanted: tuple[Taint, ...]) -> list[dict[str, Any]]:
    """`current` with every wanted taint present: same key and effect replaced in place, others appended. Pure."""
    merged = [dict(taint) for taint in current]
    for taint in wanted:
        desired = taint_dict(taint)
        for index, existing in enumerate(merged):
            if existing.get("key") == taint.key and existing.get("effect") == desired["effect"]:
                if (existing.get("value") or "") != taint.value:
                    merged[index] = {**existing, **desired}
                    if not taint.value:
                        merged[index].pop("value", None)
                break
        else:
            merged.append(desired)
    return merged


def needs_eviction(pod: dict[str, Any]) -> bool:
    """Whether a drain must evict this pod: not DaemonSet-owned, not a mirror pod, not finished or leaving. Pure."""
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return False
    if MIRROR_POD_ANNOTATION in (metadata.get("annotations") or {}):
        return False
    owners = metadata.get("ownerReferences") or []
    if any(owner.get("kind") == "DaemonSet" and owner.get("controller") for owner in owners):
        return False
    return (pod.get("status") or {}).get("phase") not in FINISHED_POD_PHASES


def pod_uid(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid") or pod_name(pod))


def pod_name(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def _describe(batch: Batch) -> str:
    if isinstance(batch, GroupStatusBatch):
        return f"the status of group {batch.namespace}/{batch.name}"
    if isinstance(batch, GroupEventBatch):
        return f"the {batch.event.reason} Event of group {batch.namespace}/{batch.name}"
    names = ", ".join(type(effect).__name__ for effect in batch.effects)
    return f"[{names}] for machine {batch.machine.key}"


def _describe_effect(batch: Batch, effect: effects.Effect | None) -> str:
    if isinstance(batch, GroupStatusBatch | GroupEventBatch) or effect is None:
        return _describe(batch)
    return f"{type(effect).__name__} for machine {batch.machine.key}"
