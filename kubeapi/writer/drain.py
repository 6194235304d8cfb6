"""Drains: evicting a machine's pods through the Eviction API before it is powered off.

A drain waits for disruption budgets, so it can take as long as the group's shutdown timeout; the scheduler runs it
on threads of its own (`kubeapi.writer.scheduling`). The outcome always reaches the machine's actor as one
`DrainCompleted`, whether every pod left, some could not be evicted in time, the API failed, or the operator is
stopping.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

from actors.effects_port import EffectBatch
from actors.messages import DrainCompleted
from kubeapi.backoff import Backoff, pause
from kubeapi.kube_client import KubeApi, KubeConflict, KubeError, KubeNotFound, KubePermanent, KubeTransient
from kubeapi.writer.appliers import DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
from kubeapi.writer.calls import PODS_EVICTION, CountedWrites, Report
from schemas.common import parse_duration

# One logger for the whole writer, whichever of its modules logs.
logger = logging.getLogger("kubeapi.writer")

MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
FINISHED_POD_PHASES: Final = frozenset({"Succeeded", "Failed"})


class _WriterStopping(Exception):  # control flow, never escapes the module
    """The writer gave up waiting because it is being stopped."""


class Drainer:
    """Drains one machine at a time per calling thread; `abort` (the writer's stop) cuts every wait short."""

    def __init__(
        self, api: KubeApi, report: Report, backoff: Backoff, abort: threading.Event, poll_seconds: float
    ) -> None:
        self._api = api
        self._write = CountedWrites(api)
        self._report = report
        self._backoff = backoff
        self._abort = abort
        self._poll_seconds = poll_seconds

    def drain(self, batch: EffectBatch) -> None:
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
            self._sleep_until(min(deadline, time.monotonic() + self._backoff.delay(failures)))
        while waiting:
            on_node = {pod_uid(pod) for pod in self._pods_on(node_name, deadline)}
            waiting &= on_node
            if not waiting:
                break
            if time.monotonic() >= deadline:
                return False, f"evicted {evicted} pods; {len(waiting)} still terminating at the drain deadline"
            self._sleep_until(min(deadline, time.monotonic() + self._poll_seconds))
        return True, f"evicted {evicted} pods"

    def _sleep_until(self, moment: float) -> None:
        if pause(max(0.0, moment - time.monotonic()), self._abort):
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
                self._sleep_until(min(deadline, time.monotonic() + self._backoff.delay(failures)))

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
