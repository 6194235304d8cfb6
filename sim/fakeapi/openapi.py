"""A deliberately minimal OpenAPI v3 surface: enough for kubectl to trust server-side field validation.

Separate because it exists for one client behaviour. Before ``create``/``apply``, kubectl 1.32 asks
``/openapi/v3`` whether the PATCH operation of the object's group/version/kind takes the ``fieldValidation``
query parameter; if it does, kubectl skips client-side schema validation (which would need the full
``/openapi/v2`` schema, not served here, and fails with "failed to download openapi"). So each served
group-version gets a document listing, per resource, an item path whose ``patch`` operation carries
``x-kubernetes-group-version-kind`` and that parameter. There are no schemas: ``kubectl explain`` will not work.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sim.fakeapi.resources import ResourceRegistry, ResourceType


def _group_version_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _document(resources: list[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for resource in resources:
        prefix = "/" + _group_version_path(resource.group, resource.version)
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        paths[f"{prefix}{scope}/{resource.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{resource.kind}",
                "x-kubernetes-group-version-kind": {
                    "group": resource.group,
                    "version": resource.version,
                    "kind": resource.kind,
                },
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (fakeapi)", "version": "v1.32.0"}, "paths": paths}


def _grouped(registry: ResourceRegistry) -> dict[str, list[ResourceType]]:
    grouped: dict[str, list[ResourceType]] = {}
    for resource in sorted(registry.all(), key=lambda r: (r.group, r.version, r.plural)):
        grouped.setdefault(_group_version_path(resource.group, resource.version), []).append(resource)
    return grouped


def index(registry: ResourceRegistry) -> dict[str, Any]:
    """``/openapi/v3``: one entry per served group-version, each with a content hash like the real server."""
    entries = {}
    for path, resources in _grouped(registry).items():
        digest = hashlib.sha256(json.dumps(_document(resources), sort_keys=True).encode()).hexdigest()[:32]
        entries[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": entries}


def group_version_document(registry: ResourceRegistry, path: str) -> dict[str, Any] | None:
    resources = _grouped(registry).get(path)
    return None if resources is None else _document(resources)
