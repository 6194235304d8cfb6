"""Renders a machine's startup or shutdown JobTemplate into a batch/v1 Job manifest.

Pure dict building, kept apart from the writer that posts it so the exact Job a user gets can be tested without
an API server. The Job's name is chosen by the state machine (deterministic per machine, operation and attempt) and
its labels name the machine, group, operation and attempt, so that after a restart the operator finds and adopts
Jobs by label instead of guessing, and the machine simulator knows which machine a Job powers.

Safety choices a user relies on:
- `restartPolicy: Never` with the template's small `backoffLimit`: a power command is retried by the state machine
  with a new attempt, never hammered by the kubelet.
- `activeDeadlineSeconds` defaults to the group's timeout for the operation, so a hung BMC call cannot outlive it.
- Secrets are only referenced (env valueFrom, envFrom, volumes); the operator never reads their contents.
- The ownerReference points at the Node CR, so deleting a machine's resource also removes its Jobs.
"""

from __future__ import annotations

from typing import Any

from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.node import JobTemplate, Node, OperationKind


def job_labels(machine: str, group: str, kind: OperationKind, attempt: int) -> dict[str, str]:
    """The labels every power Job carries; the watchers and the simulator select on them. Pure."""
    return {
        label_names.MANAGED_BY_LABEL: label_names.MANAGED_BY_VALUE,
        label_names.MACHINE_LABEL: machine,
        label_names.GROUP_LABEL: group,
        label_names.OPERATION_LABEL: kind.value,
        label_names.ATTEMPT_LABEL: str(attempt),
    }


def render_job(
    node: Node,
    group: str,
    kind: OperationKind,
    attempt: int,
    job_name: str,
    default_deadline_seconds: int,
) -> dict[str, Any]:
    """The batch/v1 Job that performs `kind` on the machine `node`. Pure.

    Raises ValueError for a machine powered natively (`spec.power`), which has no Job templates.
    """
    template = node.spec.startup_job if kind is OperationKind.STARTUP else node.spec.shutdown_job
    if template is None:
        raise ValueError(f"{node.metadata.name} has no {kind.value} Job: it is powered natively (spec.power)")
    labels = job_labels(node.metadata.name, group, kind, attempt)
    owner = {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "name": node.metadata.name,
        "uid": node.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }
    metadata: dict[str, Any] = {"name": job_name, "namespace": node.metadata.namespace, "labels": labels}
    if node.metadata.uid:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": template.backoff_limit,
            "activeDeadlineSeconds": template.active_deadline_seconds or default_deadline_seconds,
            "ttlSecondsAfterFinished": template.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(template, kind),
            },
        },
    }


def _pod_spec(template: JobTemplate, kind: OperationKind) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": kind.value,
        "image": template.image,
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if template.command:
        container["command"] = list(template.command)
    if template.args:
        container["args"] = list(template.args)
    if template.env:
        container["env"] = [_dump(variable) for variable in template.env]
    if template.env_from:
        container["envFrom"] = [_dump(source) for source in template.env_from]
    if template.resources:
        container["resources"] = _dump(template.resources)
    if template.volumes:
        container["volumeMounts"] = [
            {"name": volume.name, "mountPath": volume.mount_path, "readOnly": True} for volume in template.volumes
        ]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "hostNetwork": template.host_network,
    }
    if template.volumes:
        pod["volumes"] = [
            {"name": volume.name, "secret": {"secretName": volume.secret_name}}
            if volume.secret_name
            else {"name": volume.name, "configMap": {"name": volume.config_map_name}}
            for volume in template.volumes
        ]
    if template.service_account_name:
        pod["serviceAccountName"] = template.service_account_name
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod["tolerations"] = [_dump(toleration) for toleration in template.tolerations]
    if template.host_network:
        # Keep cluster DNS working for a pod on the host network (a BMC may be addressed by name).
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
    return pod


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, exclude_defaults=False, mode="json")
