"""The writer's scheduling and retries: `KubeWriter`, the effect port the actors submit their batches to.

Per-machine order, the two thread pools (regular workers and drain threads), retries with back-off, waiting out an
API server outage and the one `WritesDelayed` Event that follows it live here (see `kubeapi.writer` for the rules);
what each effect does to the API is `kubeapi.writer.appliers`, `kubeapi.writer.drain` and `kubeapi.writer.events`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client import ApiClient

from actors.effects_port import AnyBatch, EffectBatch, GroupEventBatch, GroupStatusBatch
from actors.fsm import effects
from actors.messages import EffectFailed
from kubeapi.backoff import Backoff, pause, retry_after
from kubeapi.kube_client import KubeApi, KubeConflict, KubeError, KubeTransient
from kubeapi.reachability import WRITE_PREFIX, ApiReachability, Back
from kubeapi.writer.appliers import NODE_WRITES, EffectAppliers, node_write_run
from kubeapi.writer.calls import Report
from kubeapi.writer.drain import Drainer
from kubeapi.writer.events import EventRecorder, Involved, utc_now

# One logger for the whole writer, whichever of its modules logs.
logger = logging.getLogger("kubeapi.writer")

Batch = AnyBatch

WRITES_DELAYED: Final = "WritesDelayed"
"""Reason of the one Event a machine gets when its writes waited out an API server outage."""


@dataclass(frozen=True)
class _DrainTask:
    key: str
    batch: EffectBatch
    index: int


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
        clock: Callable[[], datetime] = utc_now,
        reachability: ApiReachability | None = None,
    ) -> None:
        if workers < 1 or drain_workers < 1:
            raise ValueError("the writer needs at least one worker and one drain worker")
        api = KubeApi(api_client)
        self._report = report
        self._max_retries = max_retries
        self._backoff = Backoff(base_backoff, max_backoff)
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
        self._writes = EffectAppliers(api)
        self._events = EventRecorder(
            api,
            dedup_seconds=event_dedup_seconds,
            cache_size=event_cache_size,
            reporting_instance=reporting_instance,
            clock=clock,
        )
        self._drainer = Drainer(api, report, self._backoff, self._abort, drain_poll_seconds)
        self._appliers: dict[type, Callable[[EffectBatch, Any], None]] = {
            effects.CreateJob: self._writes.create_job,
            effects.DeleteJob: self._writes.delete_job,
            effects.PatchStatus: self._writes.patch_status,
            effects.Cordon: self._writes.cordon,
            effects.DeleteKubeNode: self._writes.delete_kube_node,
            effects.RecordEvent: self._events.record_for_machine,
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
                self._drainer.drain(task.batch)
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
            self._with_retries(functools.partial(self._writes.patch_group_status, batch), batch, None)
            return False
        if isinstance(batch, GroupEventBatch):
            group = Involved("Group", batch.namespace, batch.name, batch.uid)
            self._with_retries(functools.partial(self._events.record, group, batch.event), batch, None)
            return False
        for index in range(start, len(batch.effects)):
            effect = batch.effects[index]
            if isinstance(effect, effects.Drain):
                if on_drain_thread:
                    self._drainer.drain(batch)
                    continue
                self._drains.put(_DrainTask(key, batch, index))
                return True
            if isinstance(effect, NODE_WRITES):
                if index > start and isinstance(batch.effects[index - 1], NODE_WRITES):
                    continue  # applied with the first of its run
                run = node_write_run(batch.effects, index)
                self._with_retries(functools.partial(self._writes.write_node, batch, run), batch, *run)
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
                    pause(self._backoff.delay(outage_waits), self._abort, reachability, returns)
                    continue
                failures += 1
                if failures > self._max_retries or self._abort.is_set():
                    message = f"gave up after {failures} tries: {error.message}"
                    for failed in (effect, *together):
                        self._failed(batch, failed, message, permanent=False)
                    return False
                delay = self._backoff.delay(failures, retry_after(error))
                logger.info("kube writer: %s (retry %d in %.2f s)", error.message, failures, delay)
                pause(delay, self._abort)
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

    def _failed(self, batch: Batch, effect: effects.Effect | None, message: str, *, permanent: bool) -> None:
        kind = "permanently" if permanent else "after retries"
        logger.warning("kube writer: %s failed %s: %s", _describe_effect(batch, effect), kind, message)
        if isinstance(batch, EffectBatch) and effect is not None:
            self._report(batch.reply_to, EffectFailed(effect, message, permanent))

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
