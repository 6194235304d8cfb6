"""Discovery documents (``/version``, ``/api``, ``/apis``, ``/apis/<group>[/<version>]``) built from the registry.

Separate because kubectl and client libraries decide *how* to call everything else from these answers:
which resources exist, their verbs, scope, kind, short names and subresources. They are rebuilt on every
request, so a CRD shows up (or vanishes) the moment it is created (or deleted). Only the legacy
(unaggregated) discovery format is served; clients that ask for the aggregated one fall back to it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sim.fakeapi.resources import STATUS_VERBS, ResourceRegistry, ResourceType

KUBERNETES_MINOR = "32"


def version_document() -> dict[str, str]:
    return {
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": f"v1.{KUBERNETES_MINOR}.0-fakeapi",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def core_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_document(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{version}", "version": version} for version in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = [_group_document(name, versions) for name, versions in sorted(registry.group_versions().items()) if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: ResourceRegistry, name: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(name, versions)}


def _storage_version_hash(resource: ResourceType) -> str:
    digest = hashlib.sha256(f"{resource.group}/{resource.version}/{resource.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _entries(resource: ResourceType) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
        "storageVersionHash": _storage_version_hash(resource),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    entries = [entry]
    if resource.has_status:
        entries.append(
            {
                "name": f"{resource.plural}/status",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(STATUS_VERBS),
            }
        )
    # An action subresource names its own group and version: kubectl drain reads them to choose the Eviction body.
    entries += [
        {
            "name": f"{resource.plural}/{action.name}",
            "singularName": "",
            "namespaced": resource.namespaced,
            "group": action.group,
            "version": action.version,
            "kind": action.kind,
            "verbs": ["create"],
        }
        for action in resource.actions
    ]
    return entries


def resource_list(registry: ResourceRegistry, group_name: str, version: str) -> dict[str, Any] | None:
    resources = sorted(
        (r for r in registry.all() if r.group == group_name and r.version == version), key=lambda r: r.plural
    )
    if not resources:
        return None
    group_version = version if not group_name else f"{group_name}/{version}"
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [entry for resource in resources for entry in _entries(resource)],
    }
