"""The machine simulator: watches the operator's power Jobs and plays the machines they power.

It is a plain client of whatever API server its `ApiClient` points at (our fake, kind, k3d, k3s), so the
same scenarios run everywhere. Two threads: the Job watcher (reads only) and the scheduler (does every
write and owns every machine's state). A Job is acted on when it is *seen* to succeed: a startup Job's
success is the power-on signal, a shutdown Job's success the power-off signal. With `complete_jobs` the
simulator also plays the Job controller (start the Job, run a Pod, finish both after `job_seconds`),
which is what a fake API needs and what a real cluster must not get (its own controller runs the Job).
With `run_pods` it plays the kubelets' container runtime instead (`sim.machines.pods`): on a real control plane
with no kubelet, the real Job controller's pods are bound by the real scheduler to a simulated machine (an
always-on one, typically) and run there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final

from kubernetes import client as kube_client

from kubeapi.kube_client import MERGE_PATCH, KubeApi, KubeError
from schemas.node import OperationKind
from sim.machines import manifests
from sim.machines.clock import Clock, RealClock
from sim.machines.jobs import JobProgress, PowerJob, job_selector, read_power_job
from sim.machines.machine import KubeletSettings, MachineContext, MachineHandle
from sim.machines.model import SimulatedMachine
from sim.machines.pods import PodRunner
from sim.machines.scheduler import Scheduler
from sim.machines.watcher import JobWatcher

logger = logging.getLogger(__name__)

NOT_FOUND: Final = 404
ALREADY_EXISTS: Final = 409
RETRY_SECONDS: Final = 0.5


@dataclass
class _JobRecord:
    """What the simulator remembers about one power Job (by uid)."""

    job: PowerJob
    started: bool = False
    """The simulated Job controller has started it (complete_jobs only)."""
    acted: bool = False
    """Its outcome has been applied to the machine (or deliberately ignored as history)."""
    outcome: bool | None = None
    """The result the simulated Job controller chose; kept so a retried status write never re-rolls it."""


class MachineSimulator:
    """Plays a set of physical machines against an API server.

    `complete_jobs`: also act as the Job controller (on by default only with our fake API).
    `mark_not_ready`: on power-off write the NotReady conditions the node-lifecycle controller would.
    `run_pods`: run the pods bound to simulated machines, power Job pods finishing after `job_seconds` (for a real
    control plane, whose Job controller and scheduler create and place them but which has no kubelet).
    `job_seconds`: how long a power Job's pod runs (simulated Job controller, or `run_pods`).
    """

    def __init__(
        self,
        api_client: kube_client.ApiClient,
        machines: Iterable[SimulatedMachine],
        *,
        namespaces: Sequence[str] | None = None,
        complete_jobs: bool = False,
        mark_not_ready: bool = False,
        run_pods: bool = False,
        heartbeat_seconds: float = 10.0,
        job_seconds: float = 0.5,
        clock: Clock | None = None,
        watch_timeout_seconds: int = 60,
    ) -> None:
        if heartbeat_seconds <= 0 or job_seconds < 0:
            raise ValueError("heartbeat_seconds must be positive and job_seconds not negative")
        self._clock = clock or RealClock()
        self._rest = KubeApi(api_client)
        self._scheduler = Scheduler(self._clock)
        self._complete_jobs = complete_jobs
        self._job_seconds = job_seconds
        context = MachineContext(
            rest=self._rest,
            scheduler=self._scheduler,
            clock=self._clock,
            settings=KubeletSettings(heartbeat_seconds=heartbeat_seconds, mark_not_ready=mark_not_ready),
        )
        self._machines: dict[tuple[str, str], MachineHandle] = {}
        for machine in machines:
            key = (machine.namespace, machine.name)
            if key in self._machines:
                raise ValueError(f"machine {machine.namespace}/{machine.name} is listed twice")
            self._machines[key] = MachineHandle(machine, context)
        watched = sorted(set(namespaces) if namespaces is not None else {key[0] for key in self._machines})
        self._watcher = JobWatcher(
            self._rest,
            watched,
            job_selector(),
            on_listed=lambda jobs, first: self._scheduler.call_soon(lambda: self._sync(jobs, first)),
            on_event=lambda kind, job: self._scheduler.call_soon(lambda: self._on_event(kind, job)),
            watch_timeout_seconds=watch_timeout_seconds,
        )
        self._jobs: dict[str, _JobRecord] = {}
        self._seen_lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        """(namespace, name) of every power Job the simulator has observed and acted on (or chosen to ignore)."""
        self._started = False
        by_kube_node = {handle.machine.kubernetes_node_name: handle for handle in self._machines.values()}
        self._pods = (
            PodRunner(
                self._rest,
                self._scheduler,
                self._clock,
                machine_on_node=by_kube_node.get,
                power_job_machine=lambda namespace, name: self._machines.get((namespace, name)),
                job_seconds=job_seconds,
                watch_timeout_seconds=watch_timeout_seconds,
            )
            if run_pods
            else None
        )

    # ---- lifecycle ----

    def start(self, sync_timeout: float = 10.0) -> None:
        """Starts both threads and waits (up to `sync_timeout`) for the first list of Jobs."""
        if self._started:
            raise RuntimeError("simulator already started")
        self._started = True
        self._scheduler.start()
        for handle in self._machines.values():
            failures = handle.machine.failures
            if failures.power_on_at is not None:
                self._scheduler.call_later(failures.power_on_at, _bound_power_on(handle))
            if failures.power_off_at is not None:
                self._scheduler.call_later(failures.power_off_at, _bound_power_off(handle))
        if self._pods is not None:
            self._pods.start()
        self._watcher.start()
        if not self._watcher.wait_synced(sync_timeout):
            logger.warning("machine simulator: no Job list within %.1f s; continuing in the background", sync_timeout)

    def stop(self) -> None:
        """Stops watching, drops pending actions and joins both threads. Machines are left as they are."""
        self._watcher.stop()
        if self._pods is not None:
            self._pods.stop()
        self._scheduler.stop()

    def __enter__(self) -> MachineSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- reading and steering ----

    def machine(self, name: str, namespace: str | None = None) -> MachineHandle:
        """The machine whose Node CR is `name` (give `namespace` when the name is used in several)."""
        found = [
            handle
            for (handle_namespace, handle_name), handle in self._machines.items()
            if handle_name == name and namespace in (None, handle_namespace)
        ]
        if len(found) != 1:
            raise KeyError(
                f"{len(found)} simulated machines named {name!r}" + (f" in {namespace}" if namespace else "")
            )
        return found[0]

    @property
    def machines(self) -> list[MachineHandle]:
        return list(self._machines.values())

    def has_seen(self, job_name: str, namespace: str | None = None) -> bool:
        """Whether the power Job `job_name` has reached the simulator and been acted on, or ignored, already: with
        `wait_idle`, the signal a test waits for before showing that a Job changed nothing."""
        with self._seen_lock:
            return any(name == job_name and namespace in (None, in_namespace) for in_namespace, name in self._seen)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Whether, within `timeout` seconds, every action the simulator had scheduled (boots, heartbeats, Job runs)
        has run and none is left: nothing more happens by itself until a Job or a test changes something."""
        return self._scheduler.wait_idle(timeout)

    @property
    def job_lists(self) -> int:
        """How many times Jobs were listed: 1, plus one per relist after a 410 or a broken watch."""
        return self._watcher.lists

    # ---- Job observation (scheduler thread) ----

    def _sync(self, jobs: list[dict[str, Any]], first: bool) -> None:
        seen = set()
        for job in jobs:
            power_job = read_power_job(job)
            if power_job is not None:
                seen.add(power_job.uid)
                self._observe(power_job, job, history=first)
                self._mark_seen(power_job)
        for uid in set(self._jobs) - seen:  # deleted while the watch was down
            del self._jobs[uid]

    def _on_event(self, event_type: str, job: dict[str, Any]) -> None:
        power_job = read_power_job(job)
        if power_job is None:
            return
        if event_type == "DELETED":
            self._jobs.pop(power_job.uid, None)
            return
        self._observe(power_job, job, history=False)
        self._mark_seen(power_job)

    def _mark_seen(self, power_job: PowerJob) -> None:
        with self._seen_lock:
            self._seen.add((power_job.namespace, power_job.name))

    def _observe(self, power_job: PowerJob, job: dict[str, Any], history: bool) -> None:
        handle = self._machines.get((power_job.namespace, power_job.machine))
        if handle is None:
            logger.debug(
                "Job %s/%s is for machine %s, which is not simulated here",
                power_job.namespace,
                power_job.name,
                power_job.machine,
            )
            return
        record = self._jobs.setdefault(power_job.uid, _JobRecord(power_job))
        record.job = power_job
        if record.acted:
            return
        if power_job.finished:
            record.acted = True
            if history:
                return  # finished before the simulator started: old news, not a power signal
            self._apply_outcome(handle, power_job)
        elif self._complete_jobs and not record.started and not power_job.suspended and not power_job.deleting:
            record.started = True
            self._start_job(record, job)

    def _apply_outcome(self, handle: MachineHandle, power_job: PowerJob) -> None:
        if power_job.progress is JobProgress.FAILED:
            logger.info(
                "machine %s: %s Job %s failed; machine unchanged",
                handle.name,
                power_job.operation,
                power_job.name,
            )
        elif power_job.operation is OperationKind.STARTUP:
            handle.on_startup_succeeded(power_job.name)
        else:
            handle.on_shutdown_succeeded(power_job.name)

    # ---- the simulated Job controller (scheduler thread, complete_jobs only) ----

    def _start_job(self, record: _JobRecord, job: dict[str, Any]) -> None:
        power_job = record.job
        if self._jobs.get(power_job.uid) is not record or record.acted:
            return
        started = self._clock.now()
        try:
            self._rest.patch(_job_status_path(power_job), manifests.job_running_status(started), MERGE_PATCH)
        except KubeError as error:
            if error.status == NOT_FOUND:
                return
            logger.warning("starting Job %s/%s failed: %s; retrying", power_job.namespace, power_job.name, error)
            self._scheduler.call_later(RETRY_SECONDS, lambda: self._start_job(record, job))
            return
        self._run_pod(job, started)
        self._scheduler.call_later(self._job_seconds, lambda: self._finish_job(record, job, started))

    def _run_pod(self, job: dict[str, Any], started: datetime) -> None:
        pod = manifests.job_pod_manifest(job)
        pods = f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods"
        try:
            try:
                self._rest.post(pods, pod)
            except KubeError as error:
                if error.status != ALREADY_EXISTS:
                    raise
            self._rest.patch(f"{pods}/{pod['metadata']['name']}/status", manifests.pod_running_status(started))
        except KubeError as error:
            # The pod is bookkeeping for people looking at the cluster; the Job's status is what matters.
            logger.warning("creating pod for Job %s failed: %s", job["metadata"]["name"], error)

    def _finish_job(self, record: _JobRecord, job: dict[str, Any], started: datetime) -> None:
        power_job = record.job
        if self._jobs.get(power_job.uid) is not record or record.acted:
            return  # deleted, or finished by someone else meanwhile
        handle = self._machines[(power_job.namespace, power_job.machine)]
        if record.outcome is None:
            failed = (
                handle.take_boot_failure()
                if power_job.operation is OperationKind.STARTUP
                else handle.take_shutdown_failure()
            )
            record.outcome = not failed
        succeeded = record.outcome
        now = self._clock.now()
        pod = manifests.job_pod_manifest(job)
        containers = pod["spec"].get("containers") or [{}]
        try:
            self._rest.patch(
                f"/api/v1/namespaces/{power_job.namespace}/pods/{pod['metadata']['name']}/status",
                manifests.pod_finished_status(succeeded, containers[0], started, now),
            )
        except KubeError as error:
            logger.debug("finishing pod of Job %s failed: %s", power_job.name, error)
        try:
            self._rest.patch(
                _job_status_path(power_job),
                manifests.job_finished_status(succeeded, started, now),
                MERGE_PATCH,
            )
        except KubeError as error:
            if error.status == NOT_FOUND:
                return
            logger.warning("finishing Job %s/%s failed: %s; retrying", power_job.namespace, power_job.name, error)
            self._scheduler.call_later(RETRY_SECONDS, lambda: self._finish_job(record, job, started))
            return
        logger.info(
            "Job %s/%s (%s of %s) %s",
            power_job.namespace,
            power_job.name,
            power_job.operation,
            power_job.machine,
            "succeeded" if succeeded else "failed",
        )


def _job_status_path(power_job: PowerJob) -> str:
    return f"/apis/batch/v1/namespaces/{power_job.namespace}/jobs/{power_job.name}/status"


def _bound_power_on(handle: MachineHandle) -> Callable[[], None]:
    return lambda: handle.power_on("powered itself on at its scheduled time")


def _bound_power_off(handle: MachineHandle) -> Callable[[], None]:
    return lambda: handle.power_off(graceful=False)
