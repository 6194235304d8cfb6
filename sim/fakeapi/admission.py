"""What the real API server does to an object between decoding it and storing it, as pure functions.

Separate from the store because this is the per-kind rulebook (defaults, validation, system fields, which
parts of an update are ignored), while the store only sequences writes. Every function takes ``now`` and
ids as arguments and returns a new dict; nothing here touches shared state.

Rules kept honest on purpose, because the operator depends on them:
- ``metadata.generation`` starts at 1 and bumps only when something outside ``metadata`` (and outside
  ``status`` for resources with a status subresource) changes.
- With a status subresource, the main resource ignores ``.status`` and ``/status`` changes only ``.status``.
- Status sent on create is dropped for Jobs and for custom resources with a status subresource (Nodes keep it).
- ``spec.providerID`` of a Node may go from "" to a value once, then never changes (422).
- No finalizer may be added to an object that is being deleted (422).
- A custom resource goes through its CRD's structural schema, defaults and CEL rules (``structural``), on
  create, update and ``/status`` alike: an object the real server would refuse is refused with its message.
- A PodDisruptionBudget gets ``minAvailable: 1`` when it names no bound and is checked like the real one
  (see ``disruption``); it is created with an all-zero status for the controller to fill in.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from sim.fakeapi import crds, disruption, structural, webhooks
from sim.fakeapi.errors import FieldCause, bad_request, internal, invalid
from sim.fakeapi.resources import ResourceType

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def format_timestamp(now: float) -> str:
    """RFC 3339 with second precision in UTC, the form Kubernetes writes timestamps in."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def check_type_meta(resource: ResourceType, body: Any) -> dict[str, Any]:
    """Default a missing apiVersion/kind from the URL (as the server's decoder does); reject wrong ones."""
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request must be a {resource.kind} object")
    result = dict(body)
    api_version = result.setdefault("apiVersion", resource.api_version)
    kind = result.setdefault("kind", resource.kind)
    if api_version != resource.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({resource.api_version})"
        )
    if kind != resource.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")
    metadata = result.get("metadata")
    if metadata is None:
        result["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise bad_request("metadata must be an object")
    else:
        result["metadata"] = dict(metadata)
    return result


def _name_causes(resource: ResourceType, name: str) -> list[FieldCause]:
    pattern = _LABEL if resource.plural == "namespaces" and not resource.group else _SUBDOMAIN
    limit = 63 if pattern is _LABEL else 253
    if len(name) > limit or not pattern.match(name):
        what = "RFC 1123 label" if pattern is _LABEL else "RFC 1123 subdomain"
        return [
            FieldCause(
                "metadata.name",
                "FieldValueInvalid",
                f'"{name}": a lowercase {what} must consist of lower case alphanumeric characters, '
                "'-' or '.', and must start and end with an alphanumeric character",
            )
        ]
    return []


def _label_causes(metadata: dict[str, Any]) -> list[FieldCause]:
    labels = metadata.get("labels") or {}
    causes: list[FieldCause] = []
    if not isinstance(labels, dict):
        return [FieldCause("metadata.labels", "FieldValueInvalid", "must be a map of strings")]
    for key, value in labels.items():
        prefix, _, key_name = str(key).rpartition("/")
        valid_key = (
            len(key_name) <= 63
            and bool(_LABEL_KEY_NAME.match(key_name))
            and (not prefix or (len(prefix) <= 253 and bool(_SUBDOMAIN.match(prefix))))
        )
        if not valid_key:
            causes.append(
                FieldCause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f'"{key}": name part must be a '
                    "valid label key (at most 63 characters, alphanumeric, '-', '_' or '.')",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                FieldCause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f'"{value}": a valid label must be an empty string or consist of at most '
                    "63 alphanumeric characters, '-', '_' or '.'",
                )
            )
    return causes


def _raise_if(resource: ResourceType, name: str, causes: list[FieldCause]) -> None:
    if causes:
        raise invalid(resource.kind, resource.group, name, causes)


FieldValidation = str  # "Strict", "Warn" or "Ignore", as in the ``fieldValidation`` query parameter


def _admit_custom(
    resource: ResourceType,
    name: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    field_validation: FieldValidation,
    warnings: list[str] | None,
) -> dict[str, Any]:
    """A custom resource through its CRD's structural schema and CEL rules (see ``structural``)."""
    if not resource.custom or not resource.schema:
        return obj
    outcome = structural.admit(obj, resource.schema, old)
    if outcome.unknown_fields and field_validation == "Strict":
        unknown = ", ".join(f'unknown field "{path}"' for path in outcome.unknown_fields)
        raise bad_request(
            f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
            f"strict decoding error: {unknown}"
        )
    _raise_if(resource, name, outcome.causes)
    if field_validation == "Warn" and warnings is not None:
        warnings.extend(f'unknown field "{path}"' for path in outcome.unknown_fields)
    return outcome.obj


def prepare_create(
    resource: ResourceType,
    body: dict[str, Any],
    *,
    namespace: str | None,
    name: str,
    uid: str,
    now: float,
    field_validation: FieldValidation = "Ignore",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The object as stored on create (``body`` already passed ``check_type_meta``; ``name`` is final).

    Unknown fields of a custom resource are pruned; with ``field_validation`` "Strict" they are refused (400)
    and with "Warn" each is appended to ``warnings`` (the HTTP layer sends them as ``Warning`` headers).
    """
    result = copy.deepcopy(body)
    metadata = result["metadata"]
    if metadata.get("resourceVersion"):
        raise internal("resourceVersion should not be set on objects to be created")
    if resource.namespaced:
        metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    metadata["name"] = name
    metadata["uid"] = uid
    metadata["creationTimestamp"] = format_timestamp(now)
    metadata["generation"] = 1
    metadata.pop("deletionTimestamp", None)
    metadata.pop("deletionGracePeriodSeconds", None)
    _raise_if(resource, name, _name_causes(resource, name) + _label_causes(metadata))

    if resource.status_on_create == "clear":
        result.pop("status", None)
    elif resource.status_on_create == "pod":
        result["status"] = {"phase": "Pending"}
    elif resource.status_on_create == "namespace":
        result["status"] = {"phase": "Active"}
        result.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif resource.status_on_create == "disruption-budget":
        result["status"] = disruption.initial_status()

    if not resource.custom and resource.group == crds.CRD_GROUP:
        _raise_if(resource, name, crds.validate_crd(result))
        result = crds.default_crd(result)
        result["status"] = crds.crd_status(result, format_timestamp(now))
    elif not resource.custom and resource.group == "batch":
        result = _default_job(result, uid)
        _raise_if(resource, name, _pod_template_causes(result, "spec.template.spec", needs_restart_policy=True))
    elif not resource.custom and resource.plural == "pods":
        _raise_if(resource, name, _pod_template_causes(result, "spec", needs_restart_policy=False))
    elif _is_webhook_configuration(resource):
        result = webhooks.default_configuration(result)
        _raise_if(resource, name, webhooks.configuration_causes(result))
    elif not resource.custom and resource.plural == "secrets" and not resource.group:
        result["type"] = result.get("type") or "Opaque"  # SetDefaults_Secret
    elif _is_budget(resource):
        result = disruption.default_budget(result)
        _raise_if(resource, name, disruption.budget_causes(result))
    return _admit_custom(resource, name, result, None, field_validation, warnings)


def _is_webhook_configuration(resource: ResourceType) -> bool:
    return not resource.custom and (resource.group, resource.plural) == webhooks.CONFIGURATIONS


def _is_budget(resource: ResourceType) -> bool:
    return not resource.custom and resource.group == disruption.POLICY_GROUP


def _default_job(job: dict[str, Any], uid: str) -> dict[str, Any]:
    """The defaults and controller labels the real server adds to a batch/v1 Job."""
    spec = job.setdefault("spec", {})
    name = job["metadata"]["name"]
    for key, value in (
        ("parallelism", 1),
        ("completions", 1),
        ("backoffLimit", 6),
        ("completionMode", "NonIndexed"),
        ("suspend", False),
        ("podReplacementPolicy", "TerminatingOrFailed"),
        ("manualSelector", None),
    ):
        if value is not None:
            spec.setdefault(key, value)
    if not spec.get("manualSelector"):
        controller_labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
        }
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template_metadata = spec.setdefault("template", {}).setdefault("metadata", {})
        template_metadata["labels"] = {**(template_metadata.get("labels") or {}), **controller_labels}
    return job


def _pod_template_causes(obj: dict[str, Any], spec_path: str, *, needs_restart_policy: bool) -> list[FieldCause]:
    pod_spec: Any = obj
    for part in spec_path.split("."):
        pod_spec = pod_spec.get(part) if isinstance(pod_spec, dict) else None
    pod_spec = pod_spec if isinstance(pod_spec, dict) else {}
    causes: list[FieldCause] = []
    containers = pod_spec.get("containers") or []
    if not containers:
        causes.append(FieldCause(f"{spec_path}.containers", "FieldValueRequired", "Required value"))
    for index, container in enumerate(containers):
        for key in ("name", "image"):
            if not (isinstance(container, dict) and container.get(key)):
                causes.append(
                    FieldCause(f"{spec_path}.containers[{index}].{key}", "FieldValueRequired", "Required value")
                )
    if needs_restart_policy and pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(
            FieldCause(
                f"{spec_path}.restartPolicy", "FieldValueRequired", 'Required value: valid values: "OnFailure", "Never"'
            )
        )
    return causes


def _without(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def spec_changed(resource: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``metadata.generation`` must bump: anything outside metadata (and status, if separate)."""
    ignored = ("metadata", "status") if resource.has_status else ("metadata",)
    return _without(old, ignored) != _without(new, ignored)


def prepare_update(
    resource: ResourceType,
    old: dict[str, Any],
    body: dict[str, Any],
    *,
    subresource: str | None,
    now: float,
    field_validation: FieldValidation = "Ignore",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The object as stored after an update/patch of ``old`` to ``body`` (type meta already checked)."""
    del now  # kept for symmetry with prepare_create; no rule here depends on time yet
    if subresource == "status":
        result = copy.deepcopy(old)
        if "status" in body:
            result["status"] = copy.deepcopy(body["status"])
        else:
            result.pop("status", None)
        result["metadata"]["resourceVersion"] = (body.get("metadata") or {}).get("resourceVersion")
        return _admit_custom(resource, old["metadata"]["name"], result, old, field_validation, warnings)
    result = copy.deepcopy(body)
    metadata = result["metadata"]
    old_metadata = old["metadata"]
    for key in ("name", "namespace", *SYSTEM_FIELDS):
        if key in old_metadata:
            metadata[key] = old_metadata[key]
        else:
            metadata.pop(key, None)
    if resource.has_status:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    name = old_metadata["name"]
    causes = _label_causes(metadata)
    if old_metadata.get("deletionTimestamp"):
        added = [f for f in metadata.get("finalizers") or [] if f not in (old_metadata.get("finalizers") or [])]
        if added:
            causes.append(
                FieldCause(
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    f"no new finalizers can be added if the object is being deleted, found new finalizers {added}",
                )
            )
    if not resource.custom and resource.plural == "nodes":
        old_provider = (old.get("spec") or {}).get("providerID") or ""
        new_provider = (result.get("spec") or {}).get("providerID") or ""
        if old_provider and new_provider != old_provider:
            causes.append(
                FieldCause(
                    "spec.providerID",
                    "FieldValueForbidden",
                    'node updates may not change providerID except from "" to valid',
                )
            )
    if not resource.custom and resource.group == crds.CRD_GROUP:
        causes.extend(crds.validate_crd(result))
        result = crds.default_crd(result)
        result["status"] = old.get("status")
    if _is_budget(resource):
        result = disruption.default_budget(result)
        causes.extend(disruption.budget_causes(result))
    if _is_webhook_configuration(resource):
        result = webhooks.default_configuration(result)
        causes.extend(webhooks.configuration_causes(result))
    _raise_if(resource, name, causes)
    result = _admit_custom(resource, name, result, old, field_validation, warnings)
    if spec_changed(resource, old, result):
        result["metadata"]["generation"] = int(old_metadata.get("generation", 1)) + 1
    return result
