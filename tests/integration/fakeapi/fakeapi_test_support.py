"""Helpers shared by the fake API tests (a plain module: conftest files are not importable by name)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client


def status_of(error: client.ApiException) -> dict[str, Any]:
    """The Kubernetes Status body of a failed call."""
    body: dict[str, Any] = json.loads(error.body)
    return body


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "additionalPrinterColumns": [{"name": "Color", "type": "string", "jsonPath": ".spec.color"}],
            "selectableFields": [{"jsonPath": ".spec.color"}],
        }],
    },
}


def raw_request(url: str, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One HTTP request outside the official client, for malformed or unusual requests it would not send."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        payload = body.encode() if isinstance(body, str) else body
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        content_type = response.getheader("Content-Type", "")
        decoded = json.loads(data) if "json" in content_type and data else data
        return response.status, dict(response.getheaders()), decoded
    finally:
        connection.close()


def node_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def raw_watch_events(url: str, path: str) -> list[dict[str, Any]]:
    """Every event of a watch that ends by itself (e.g. an ERROR), read as raw JSON lines."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200, response.status
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]
    finally:
        connection.close()
