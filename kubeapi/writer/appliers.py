"""One applier per effect: how each effect a machine asks for becomes Kubernetes API calls.

Every applier may run twice for the same effect (a restarted actor resubmits, a retry re-runs it from its read),
so each is idempotent: a Job that exists is adopted when it is ours, deletes of missing objects succeed, status
writes replace the whole status. Node changes are read-modify-written with the resourceVersion that was read, and
consecutive Node writes (`NODE_WRITES`) are applied as one read and one patch (`node_patch`). Failures are raised
as `KubeError`s; retrying them is the scheduler's business (`kubeapi.writer.scheduling`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from actors.effects_port import EffectBatch, GroupStatusBatch
from actors.fsm import effects
from kubeapi import job_manifest
from kubeapi.kube_client import JSON_PATCH, MERGE_PATCH, KubeAlreadyExists, KubeApi, KubeNotFound, KubePermanent
from kubeapi.writer.calls import CUSTOM_PREFIX, GROUP_STATUS, JOBS, MACHINE_STATUS, NODES, CountedWrites
from schemas import labels as label_names
from schemas.common import Taint, TaintEffect, parse_duration
from schemas.group import GroupSpec
from schemas.node import OperationKind

# One logger for the whole writer, whichever of its modules logs.
logger = logging.getLogger("kubeapi.writer")

DEFAULT_BOOT_TIMEOUT_SECONDS: Final = 600.0
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: Final = 300.0
AUTOSCALER_TAINTS: Final = frozenset(
    {label_names.CA_TO_BE_DELETED_TAINT, label_names.CA_DELETION_CANDIDATE_TAINT, label_names.EXERCISE_TAINT}
)
EXERCISE_TAINT: Final = Taint(key=label_names.EXERCISE_TAINT, effect=TaintEffect.NO_SCHEDULE)


class EffectAppliers:
    """The appliers of every effect but Drain and RecordEvent (`kubeapi.writer.drain`, `kubeapi.writer.events`)."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._write = CountedWrites(api)

    # -- Jobs

    def create_job(self, batch: EffectBatch, effect: effects.CreateJob) -> None:
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

    def delete_job(self, batch: EffectBatch, effect: effects.DeleteJob) -> None:
        # Background propagation removes the Job's pods too; the default for Jobs orphans them, and an orphaned
        # startup pod could power on a machine that is being shut down.
        path = f"/apis/batch/v1/namespaces/{batch.machine.namespace}/jobs/{effect.job_name}"
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        with contextlib.suppress(KubeNotFound):
            self._write("delete", JOBS, "DELETE", path, body=body)

    # -- Node resource status

    def patch_status(self, batch: EffectBatch, effect: effects.PatchStatus) -> None:
        status = effect.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        path = f"{CUSTOM_PREFIX}/namespaces/{batch.machine.namespace}/nodes/{batch.machine.name}/status"
        self._write("patch", MACHINE_STATUS, "PATCH", path, body=_replace_status(status), content_type=JSON_PATCH)

    def patch_group_status(self, batch: GroupStatusBatch) -> None:
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

    def cordon(self, batch: EffectBatch, effect: effects.Cordon) -> None:
        self._patch_node(batch, {"spec": {"unschedulable": True}})

    def write_node(self, batch: EffectBatch, writes: tuple[effects.Effect, ...]) -> None:
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

    def delete_kube_node(self, batch: EffectBatch, effect: effects.DeleteKubeNode) -> None:
        with contextlib.suppress(KubeNotFound):
            self._write("delete", NODES, "DELETE", self._node_path(batch))


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
    effects.TaintForExercise,
    effects.SetProviderID,
)
"""Effects that change only the machine's Kubernetes Node; consecutive ones are applied as one patch."""


def node_write_run(batch_effects: tuple[effects.Effect, ...], first: int) -> tuple[effects.Effect, ...]:
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
        elif isinstance(write, effects.TaintForExercise):
            taints = merge_taints(taints, (EXERCISE_TAINT,))
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
