"""CustomResourceDefinitions: validating one, defaulting its names, and turning it into served resources.

Separate because a CRD is the one built-in object whose content changes what the server serves. The store
calls ``custom_resource_types`` after every CRD write and hands the result to the registry, so creating a CRD
starts serving its resource (discovery included) and deleting it stops. Pure functions only.
"""

from __future__ import annotations

import copy
from typing import Any

from sim.fakeapi.errors import FieldCause
from sim.fakeapi.resources import PrinterColumn, ResourceType

CRD_GROUP = "apiextensions.k8s.io"


def validate_crd(crd: dict[str, Any]) -> list[FieldCause]:
    """Field problems the real API server would reject the CRD for (only the ones that matter here)."""
    causes: list[FieldCause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    if not group:
        causes.append(FieldCause("spec.group", "FieldValueRequired", "Required value"))
    elif "." not in group:
        causes.append(
            FieldCause("spec.group", "FieldValueInvalid", f'"{group}": should be a domain with at least one dot')
        )
    if not plural:
        causes.append(FieldCause("spec.names.plural", "FieldValueRequired", "Required value"))
    if not names.get("kind"):
        causes.append(FieldCause("spec.names.kind", "FieldValueRequired", "Required value"))
    expected_name = f"{plural}.{group}"
    if plural and group and (crd.get("metadata") or {}).get("name") != expected_name:
        causes.append(
            FieldCause(
                "metadata.name", "FieldValueInvalid", f'must be spec.names.plural+"."+spec.group ("{expected_name}")'
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            FieldCause(
                "spec.scope",
                "FieldValueNotSupported",
                f'"{spec.get("scope")}": supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions or sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            FieldCause("spec.versions", "FieldValueInvalid", "must have exactly one version marked as storage version")
        )
    for index, version in enumerate(versions):
        if not version.get("name"):
            causes.append(FieldCause(f"spec.versions[{index}].name", "FieldValueRequired", "Required value"))
    return causes


def default_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults the real server adds to ``spec`` (singular, listKind, conversion strategy)."""
    result = copy.deepcopy(crd)
    spec = result.setdefault("spec", {})
    names = spec.setdefault("names", {})
    kind = names.get("kind", "")
    names.setdefault("singular", kind.lower())
    names.setdefault("listKind", f"{kind}List")
    spec.setdefault("conversion", {"strategy": "None"})
    return result


def crd_status(crd: dict[str, Any], timestamp: str) -> dict[str, Any]:
    """The status the apiextensions controllers would settle on: names accepted, established."""
    spec = crd.get("spec") or {}
    storage_versions = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    conditions = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "reason": "NoConflicts",
            "message": "no conflicts found",
            "lastTransitionTime": timestamp,
        },
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
            "lastTransitionTime": timestamp,
        },
    ]
    return {
        "conditions": conditions,
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "storedVersions": storage_versions,
    }


def _printer_columns(version: dict[str, Any]) -> tuple[PrinterColumn, ...]:
    return tuple(
        PrinterColumn(
            name=column.get("name", ""),
            type=column.get("type", "string"),
            json_path=column.get("jsonPath", ""),
            description=column.get("description", ""),
            priority=int(column.get("priority", 0)),
            format=column.get("format", ""),
        )
        for column in version.get("additionalPrinterColumns") or []
    )


def custom_resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version (still served while the CRD waits for its finalizer)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served: list[ResourceType] = []
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        has_status = "status" in (version.get("subresources") or {})
        selectable = tuple(str(f.get("jsonPath", "")).lstrip(".") for f in version.get("selectableFields") or [])
        served.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                has_status=has_status,
                status_on_create="clear" if has_status else "keep",
                selectable_fields=selectable,
                merge_strategies=None,
                custom=True,
                printer_columns=_printer_columns(version),
                schema=copy.deepcopy((version.get("schema") or {}).get("openAPIV3Schema")),
            )
        )
    return served
