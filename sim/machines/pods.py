"""The container runtime of the simulated kubelets: runs the pods the real scheduler binds to a simulated machine.

On a real control plane with no kubelet (the binaries in `../shared/k8s`), the real Job controller creates each
power Job's pod and the real kube-scheduler binds it to a Node, but nothing would ever run it: the Job would stay
active until its deadline. This module plays the part of the kubelet that does run it, so that the Job controller,
the scheduler and Cluster Autoscaler all see what they would see on a homelab:

- a pod bound to a running machine is started (phase Running, a running container status);
- a power Job's pod finishes after the simulator's `job_seconds`, succeeding or failing by the machine's fault
  schedule (`take_boot_failure` / `take_shutdown_failure`), decided once per Job so every retried pod of one Job
  ends the same way, as a dead BMC would make it;
- any other pod keeps running until it is deleted;
- a pod being deleted (it has a deletionTimestamp: an eviction, a scale-in, a namespace going away) is removed at
  once with grace period 0, the final delete a kubelet sends once its containers have stopped.

Pods bound to a machine that is off are left alone, as they are on a real cluster until the pod garbage collector
removes them with the Node. All of it runs on the simulator's scheduler thread; the pod watch only hands over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from actors.watch_port import Listed, WatchOutput
from kubeapi.kube_client import MERGE_PATCH, KubeApi, KubeError
from kubeapi.watch import ResourceWatch, collection
from schemas.node import OperationKind
from sim.machines import manifests
from sim.machines.clock import Clock
from sim.machines.jobs import read_power_job
from sim.machines.machine import MachineHandle
from sim.machines.model import PowerState
from sim.machines.scheduler import Scheduler

logger = logging.getLogger(__name__)

WATCH_NAME: Final = "machine-pods"
"""Names the thread (`kube-watch-machine-pods`), apart from the operator's watches and the Job watcher's."""
NOT_FOUND: Final = 404
CONFLICT: Final = 409
RETRY_SECONDS: Final = 0.5
JOB_UID_LABEL: Final = "batch.kubernetes.io/controller-uid"
"""Set by the Job controller on each pod of a Job: every pod of one Job shares the Job's outcome."""
RUNS_PODS: Final = (PowerState.RUNNING, PowerState.SHUTTING_DOWN)
"""A machine whose kubelet is up: it runs pods until it powers off."""

MachineLookup = Callable[[str], MachineHandle | None]
"""The simulated machine whose Kubernetes Node has this name, if any."""
PowerJobMachine = Callable[[str, str], MachineHandle | None]
"""The simulated machine a power Job names, by namespace and machine (Node resource) name."""


class PodRunner:
    """Runs the pods bound to simulated machines (see the module docstring); `start`/`stop` its pod watch."""

    def __init__(
        self,
        rest: KubeApi,
        scheduler: Scheduler,
        clock: Clock,
        *,
        machine_on_node: MachineLookup,
        power_job_machine: PowerJobMachine,
        job_seconds: float,
        watch_timeout_seconds: int = 60,
    ) -> None:
        self._rest = rest
        self._scheduler = scheduler
        self._clock = clock
        self._machine_on_node = machine_on_node
        self._power_job_machine = power_job_machine
        self._job_seconds = job_seconds
        self._started: dict[str, datetime] = {}
        """Pods (by uid) this runtime has started, and when."""
        self._deleting: set[str] = set()
        self._job_outcomes: dict[str, bool] = {}
        """Whether each power Job (by uid) succeeds, chosen when its first pod finishes."""
        self._watch = ResourceWatch(
            WATCH_NAME,
            *collection(rest, "/api/v1/pods"),
            self._forward,
            watch_timeout_seconds=watch_timeout_seconds,
            max_backoff=5.0,
        )

    @property
    def pods_started(self) -> int:
        """How many pods were started so far (each once)."""
        return len(self._started)

    def start(self) -> None:
        self._watch.start()

    def wait_synced(self, timeout: float) -> bool:
        return self._watch.wait_synced(timeout)

    def stop(self) -> None:
        self._watch.stop()

    # ---- watch thread: hand over only ----

    def _forward(self, output: WatchOutput) -> None:
        if isinstance(output, Listed):
            pods = list(output.items)
            self._scheduler.call_soon(lambda: self._sync(pods))
        else:
            kind, pod = output.type.value, output.object
            self._scheduler.call_soon(lambda: self._observe(kind, pod))

    # ---- scheduler thread ----

    def _sync(self, pods: list[dict[str, Any]]) -> None:
        present = set()
        for pod in pods:
            present.add(_uid(pod))
            self._observe("ADDED", pod)
        for uid in set(self._started) - present:
            del self._started[uid]
        self._deleting &= present

    def _observe(self, kind: str, pod: dict[str, Any]) -> None:
        uid = _uid(pod)
        if kind == "DELETED":
            self._started.pop(uid, None)
            self._deleting.discard(uid)
            return
        machine = self._machine_on_node(str((pod.get("spec") or {}).get("nodeName") or ""))
        if machine is None or machine.state not in RUNS_PODS:
            return
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            if uid not in self._deleting:
                self._deleting.add(uid)
                self._remove(pod)
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if uid in self._started or phase != "Pending":
            return
        self._start(pod)

    def _start(self, pod: dict[str, Any]) -> None:
        uid = _uid(pod)
        started = self._clock.now()
        try:
            self._rest.patch(_status_path(pod), manifests.pod_started_status(pod, started), MERGE_PATCH)
        except KubeError as error:
            if error.status != NOT_FOUND:
                logger.warning("starting pod %s failed: %s; retrying", _name(pod), error)
                self._scheduler.call_later(RETRY_SECONDS, lambda: self._observe("MODIFIED", pod))
            return
        self._started[uid] = started
        if read_power_job(pod) is not None:
            self._scheduler.call_later(self._job_seconds, lambda: self._finish_power_pod(pod, started))

    def _finish_power_pod(self, pod: dict[str, Any], started: datetime) -> None:
        if _uid(pod) not in self._started:
            return  # deleted meanwhile
        power_job = read_power_job(pod)
        assert power_job is not None, "only power Job pods are finished"
        job_uid = str(((pod.get("metadata") or {}).get("labels") or {}).get(JOB_UID_LABEL) or _uid(pod))
        succeeded = self._job_outcomes.get(job_uid)
        if succeeded is None:
            target = self._power_job_machine(power_job.namespace, power_job.machine)
            failed = target is not None and (
                target.take_boot_failure()
                if power_job.operation is OperationKind.STARTUP
                else target.take_shutdown_failure()
            )
            succeeded = self._job_outcomes[job_uid] = not failed
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        try:
            self._rest.patch(
                _status_path(pod),
                manifests.pod_finished_status(succeeded, containers[0], started, self._clock.now()),
                MERGE_PATCH,
            )
        except KubeError as error:
            if error.status != NOT_FOUND:
                logger.warning("finishing pod %s failed: %s; retrying", _name(pod), error)
                self._scheduler.call_later(RETRY_SECONDS, lambda: self._finish_power_pod(pod, started))
            return
        logger.info("pod %s of power Job %s %s", _name(pod), power_job.name, "succeeded" if succeeded else "failed")

    def _remove(self, pod: dict[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        path = f"/api/v1/namespaces/{metadata.get('namespace')}/pods/{metadata.get('name')}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": _uid(pod)}}
        try:
            self._rest.delete(path, body)
        except KubeError as error:
            if error.status not in (NOT_FOUND, CONFLICT):  # gone already, or a new pod of the same name
                logger.warning("removing pod %s failed: %s; retrying", _name(pod), error)
                self._deleting.discard(_uid(pod))
                self._scheduler.call_later(RETRY_SECONDS, lambda: self._observe("MODIFIED", pod))


def _uid(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


def _name(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def _status_path(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return f"/api/v1/namespaces/{metadata.get('namespace')}/pods/{metadata.get('name')}/status"
