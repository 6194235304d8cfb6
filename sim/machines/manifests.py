"""The API objects a simulated machine and a simulated Job controller write, built as plain dicts.

Pure functions of their inputs and `now`, apart from the threads that send them, so the exact shape a
kubelet or the Job controller would produce (condition types and reasons, timestamp formats, owner
references, labels) is decided and reviewable in one place. Shapes follow what the real components write
so the operator under test sees nothing it would not see on a cluster.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sim.machines.model import SimulatedMachine

KUBELET_VERSION: Final = "v1.32.4"
LEASE_NAMESPACE: Final = "kube-node-lease"
LEASE_DURATION_SECONDS: Final = 40
"""The kubelet's default `nodeLeaseDurationSeconds`."""

NODE_HEALTHY_CONDITIONS: Final = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)

# Namespace for the name-derived machine and boot ids: stable across runs so a re-run looks like the same box.
_ID_NAMESPACE: Final = uuid.UUID("5b1d3c4e-8f0a-4c1e-9a51-60e1a0b0c0de")
JOB_SUCCESS_MESSAGE: Final = "Reached expected number of succeeded pods"
JOB_FAILURE_REASON: Final = "BackoffLimitExceeded"
JOB_FAILURE_MESSAGE: Final = "Job has reached the specified backoff limit"


def format_time(moment: datetime) -> str:
    """An RFC 3339 timestamp with second precision, as Kubernetes `Time` fields carry. Pure."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime) -> str:
    """An RFC 3339 timestamp with microseconds, as `MicroTime` fields (Lease renewTime) carry. Pure."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def internal_ip(machine: SimulatedMachine) -> str:
    """A stable private address for the machine, derived from its name. Pure."""
    digest = zlib.crc32(f"{machine.namespace}/{machine.name}".encode())
    return f"10.{(digest >> 16) & 0xFF}.{(digest >> 8) & 0xFF}.{(digest & 0xFE) + 1}"


def boot_id(machine: SimulatedMachine, boot_number: int) -> str:
    """A kubelet bootID that changes with every boot, as the real one does. Pure."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{machine.namespace}/{machine.name}/boot/{boot_number}"))


def node_labels(machine: SimulatedMachine) -> dict[str, str]:
    """Labels the kubelet registers with: the well-known defaults plus the machine's own. Pure."""
    return {
        "kubernetes.io/hostname": machine.kubernetes_node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        **machine.labels,
    }


def node_conditions_ready(ready_since: datetime, now: datetime) -> list[dict[str, str]]:
    """The four kubelet conditions of a healthy node, heartbeat stamped `now`. Pure."""
    return [
        {
            "type": condition_type,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": format_time(now),
            "lastTransitionTime": format_time(ready_since),
        }
        for condition_type, status, reason, message in NODE_HEALTHY_CONDITIONS
    ]


def node_status(machine: SimulatedMachine, boot_number: int, ready_since: datetime, now: datetime) -> dict[str, Any]:
    """The full `.status` a kubelet posts when it registers. Pure."""
    machine_id = uuid.uuid5(_ID_NAMESPACE, f"{machine.namespace}/{machine.name}").hex
    return {
        "capacity": dict(machine.capacity),
        "allocatable": dict(machine.capacity),
        "conditions": node_conditions_ready(ready_since, now),
        "addresses": [
            {"type": "InternalIP", "address": internal_ip(machine)},
            {"type": "Hostname", "address": machine.kubernetes_node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": str(uuid.UUID(machine_id)),
            "bootID": boot_id(machine, boot_number),
            "kernelVersion": "6.8.0-homelab-sim",
            "osImage": "Homelab Autoscaler simulated machine",
            "containerRuntimeVersion": "containerd://1.7.27",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def node_manifest(machine: SimulatedMachine, boot_number: int, ready_since: datetime, now: datetime) -> dict[str, Any]:
    """The core/v1 Node the kubelet creates on registration (status included). Pure."""
    spec: dict[str, Any] = {}
    if machine.provider_id:
        spec["providerID"] = machine.provider_id
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": machine.kubernetes_node_name,
            "labels": node_labels(machine),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": node_status(machine, boot_number, ready_since, now),
    }


def node_heartbeat_patch(ready_since: datetime, now: datetime) -> dict[str, Any]:
    """A strategic-merge patch of `.status` renewing every condition's heartbeat. Pure.

    Whole condition entries are sent (not just the heartbeat time) so the patch is also right on a
    server that replaces the list instead of merging by `type`, and it heals a Ready condition someone
    else flipped while the kubelet was alive.
    """
    return {"status": {"conditions": node_conditions_ready(ready_since, now)}}


def node_not_ready_patch(graceful: bool, now: datetime) -> dict[str, Any]:
    """A strategic-merge patch of `.status` for a machine that has gone away. Pure.

    Graceful (a shutdown the machine was told to do): the kubelet's last word, Ready=False with reason
    KubeletNotReady. Otherwise (power lost): what the node-lifecycle controller writes once heartbeats
    stop, every condition Unknown with reason NodeStatusUnknown. Heartbeat times are left as they were.
    """
    if graceful:
        ready = {
            "type": "Ready",
            "status": "False",
            "reason": "KubeletNotReady",
            "message": "node is shutting down",
            "lastTransitionTime": format_time(now),
        }
        return {"status": {"conditions": [ready]}}
    return {
        "status": {
            "conditions": [
                {
                    "type": condition_type,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": format_time(now),
                }
                for condition_type, _status, _reason, _message in NODE_HEALTHY_CONDITIONS
            ]
        }
    }


def lease_manifest(node_name: str, node_uid: str, now: datetime) -> dict[str, Any]:
    """The coordination.k8s.io/v1 Lease a kubelet keeps in kube-node-lease, owned by its Node. Pure."""
    metadata: dict[str, Any] = {"name": node_name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": format_micro_time(now),
        },
    }


def lease_renew_patch(node_name: str, now: datetime) -> dict[str, Any]:
    """A merge patch renewing the node's Lease. Pure."""
    return {"spec": {"holderIdentity": node_name, "renewTime": format_micro_time(now)}}


def job_pod_name(job: dict[str, Any]) -> str:
    """The name of the one pod the simulated Job controller runs for `job` (suffix from its uid). Pure."""
    suffix = uuid.uuid5(_ID_NAMESPACE, str(job["metadata"].get("uid", ""))).hex[:5]
    return f"{job['metadata']['name']}-{suffix}"


def job_pod_manifest(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod the Job controller would create for `job`: its template, owned and labelled. Pure."""
    metadata = job["metadata"]
    template = job.get("spec", {}).get("template", {})
    labels = {
        **template.get("metadata", {}).get("labels", {}),
        "job-name": metadata["name"],
        "controller-uid": metadata.get("uid", ""),
        "batch.kubernetes.io/job-name": metadata["name"],
        "batch.kubernetes.io/controller-uid": metadata.get("uid", ""),
    }
    spec = dict(template.get("spec", {}))
    spec.setdefault("restartPolicy", "Never")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": job_pod_name(job),
            "namespace": metadata["namespace"],
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": metadata["name"],
                    "uid": metadata.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def pod_running_status(started: datetime) -> dict[str, Any]:
    """A merge patch of a Pod's `.status`: Running since `started`. Pure."""
    return {"status": {"phase": "Running", "startTime": format_time(started)}}


def pod_started_status(pod: Mapping[str, Any], started: datetime) -> dict[str, Any]:
    """A merge patch of a bound Pod's `.status` as its kubelet starts it: Running, every container running. Pod
    and container conditions are set as a kubelet sets them, so readiness-minded readers (the Job controller's
    `ready` count, `kubectl get pods`) see a started pod. Pure."""
    stamp = format_time(started)
    containers = (pod.get("spec") or {}).get("containers") or ()
    conditions = [
        {"type": condition_type, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for condition_type in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "status": {
            "phase": "Running",
            "startTime": stamp,
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": str(container.get("name", "")),
                    "image": str(container.get("image", "")),
                    "imageID": _image_id(str(container.get("image", ""))),
                    "containerID": _container_id(str(container.get("image", "")), started),
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": stamp}},
                }
                for container in containers
            ],
        }
    }


def _image_id(image: str) -> str:
    return f"{image.partition(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _container_id(image: str, moment: datetime) -> str:
    return f"containerd://{hashlib.sha256(f'{image}/{moment.isoformat()}'.encode()).hexdigest()}"


def pod_finished_status(
    succeeded: bool, container: Mapping[str, Any], started: datetime, now: datetime
) -> dict[str, Any]:
    """A merge patch of a Pod's `.status`: its power container exited 0 (or 1). Pure.

    The container status carries every field a kubelet always fills (image, imageID, containerID),
    since clients that model pods (the official Python client among them) refuse a status without them.
    """
    image = str(container.get("image", ""))
    terminated = {
        "exitCode": 0 if succeeded else 1,
        "reason": "Completed" if succeeded else "Error",
        "startedAt": format_time(started),
        "finishedAt": format_time(now),
        "containerID": _container_id(image, now),
    }
    return {
        "status": {
            "phase": "Succeeded" if succeeded else "Failed",
            "startTime": format_time(started),
            "containerStatuses": [
                {
                    "name": str(container.get("name", "")),
                    "image": image,
                    "imageID": _image_id(image),
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"terminated": terminated},
                }
            ],
        }
    }


def job_running_status(started: datetime) -> dict[str, Any]:
    """A merge patch of a Job's `.status`: one active pod since `started`. Pure."""
    return {"status": {"active": 1, "ready": 1, "startTime": format_time(started)}}


def job_finished_status(succeeded: bool, started: datetime, now: datetime) -> dict[str, Any]:
    """A merge patch of a Job's `.status` as the Job controller finishes it. Pure.

    Success carries SuccessCriteriaMet and Complete plus completionTime; failure carries FailureTarget and
    Failed with BackoffLimitExceeded and, like the real controller, no completionTime (it is only set on
    success). `active` is removed with a null.
    """
    stamp = format_time(now)
    if succeeded:
        conditions = [
            _job_condition("SuccessCriteriaMet", "CompletionsReached", JOB_SUCCESS_MESSAGE, stamp),
            _job_condition("Complete", "CompletionsReached", JOB_SUCCESS_MESSAGE, stamp),
        ]
        return {
            "status": {
                "active": None,
                "ready": 0,
                "succeeded": 1,
                "startTime": format_time(started),
                "completionTime": stamp,
                "conditions": conditions,
            }
        }
    conditions = [
        _job_condition("FailureTarget", JOB_FAILURE_REASON, JOB_FAILURE_MESSAGE, stamp),
        _job_condition("Failed", JOB_FAILURE_REASON, JOB_FAILURE_MESSAGE, stamp),
    ]
    return {
        "status": {
            "active": None,
            "ready": 0,
            "failed": 1,
            "startTime": format_time(started),
            "conditions": conditions,
        }
    }


def _job_condition(condition_type: str, reason: str, message: str, stamp: str) -> dict[str, str]:
    return {
        "type": condition_type,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }
