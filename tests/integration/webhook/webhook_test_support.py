"""Helpers for the webhook server tests: a fake cache, certificates on disk, a trusting client, review bodies."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from schemas import GROUP_VERSION
from schemas.labels import GROUP_LABEL
from webhooks.admission import ALL_NAMESPACES, KnownMachine
from webhooks.certs import (
    CertificateAuthority,
    ServingCertificate,
    create_serving_certificate,
    service_dns_names,
)
from webhooks.server import WebhookServer

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SERVICE = "homelab-autoscaler-webhook"
NAMESPACE = "homelab-autoscaler"
ALWAYS_ON = {"node-role.kubernetes.io/control-plane": ""}
"""Power Jobs pinned to a machine that stays on, as the examples pin theirs (otherwise a warning)."""


@dataclass
class Cluster:
    """What the operator's caches would know: one Group `workers` and the Kubernetes Node `nas-1`."""

    groups: set[tuple[str, str]] = field(default_factory=lambda: {("homelab", "workers")})
    machines: list[KnownMachine] = field(default_factory=list)
    kubernetes_nodes: set[str] = field(default_factory=lambda: {"nas-1"})

    def group_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.groups

    def nodes(self, namespace: str) -> Iterable[KnownMachine]:
        return [m for m in self.machines if namespace == ALL_NAMESPACES or m.namespace == namespace]

    def kubernetes_node_exists(self, name: str) -> bool:
        return name in self.kubernetes_nodes


@dataclass(frozen=True)
class RunningWebhook:
    server: WebhookServer
    client_context: ssl.SSLContext
    authority: CertificateAuthority
    serving: ServingCertificate
    cert_file: Path
    key_file: Path

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, context=self.client_context, timeout=10)

    def post(self, body: bytes, path: str = "/validate?timeout=5s") -> tuple[int, bytes, str]:
        connection = self.connection()
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Content-Type", "")
        finally:
            connection.close()


class WebhookFactory(Protocol):
    def __call__(self, socket_timeout: float = 5.0) -> RunningWebhook: ...


def trusting(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly `ca_pem`, as the API server trusts the caBundle."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def write_serving_files(serving: ServingCertificate, directory: Path) -> tuple[Path, Path]:
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(serving.cert_pem)
    key_file.write_bytes(serving.key_pem)
    return cert_file, key_file


def make_serving(authority: CertificateAuthority) -> ServingCertificate:
    return create_serving_certificate(
        authority, service_dns_names(SERVICE, NAMESPACE), NOW, ip_addresses=("127.0.0.1",)
    )


def review_body(obj: dict[str, Any], uid: str = "uid-1", operation: str = "CREATE") -> bytes:
    request = {
        "uid": uid,
        "kind": {"group": "infra.homecluster.dev", "version": "v1alpha1", "kind": obj["kind"]},
        "resource": {"group": "infra.homecluster.dev", "version": "v1alpha1", "resource": obj["kind"].lower() + "s"},
        "operation": operation,
        "namespace": "homelab",
        "name": obj["metadata"]["name"],
        "object": obj,
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def node_object(name: str = "nas-1", group: str = "workers") -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "namespace": "homelab", "labels": {GROUP_LABEL: group}},
        "spec": {
            "startupJob": {"image": "ghcr.io/example/wol:1", "nodeSelector": ALWAYS_ON},
            "shutdownJob": {"image": "ghcr.io/example/ssh:1", "nodeSelector": ALWAYS_ON},
        },
    }
