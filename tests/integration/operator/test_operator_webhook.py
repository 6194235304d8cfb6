"""The admission webhook as the operator runs it: its certificate kept in a Secret, the caBundle that trusts it,
rotation before expiry, and the answers it gives from its watch caches.

Each test creates the webhook configuration of manifests/50-webhook.yaml in the fake API server.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from cryptography import x509

from homelab_autoscaler.certificates import WebhookCertificateIssuer
from kubeapi.admission_lookup import CachedAdmissionLookup
from kubeapi.webhook_certs import WebhookCertificates, WebhookCertificateStore
from sim.fakeapi import ApiError
from tests.support.operator_homelab import NAMESPACE, OPERATOR_NAMESPACE, Homelab, machine_manifest
from tests.support.polling import wait_for
from webhooks.admission import KnownMachine
from webhooks.certs import certificate_expiry

ROOT: Final = Path(__file__).resolve().parents[3]
SECRET: Final = "homelab-autoscaler-webhook-tls"
CONFIGURATION: Final = "homelab-autoscaler"
SERVICE_HOST: Final = "homelab-autoscaler-webhook.homelab-autoscaler.svc"
START: Final = datetime(2026, 3, 1, tzinfo=UTC)
WEBHOOK_API: Final = "admissionregistration.k8s.io/v1"


@pytest.fixture
def cluster(homelab: Homelab) -> Homelab:
    """The homelab, with the webhook configuration of the manifests installed."""
    manifest = yaml.safe_load((ROOT / "manifests" / "50-webhook.yaml").read_text())
    homelab.fake.store.create(WEBHOOK_API, "validatingwebhookconfigurations", manifest)
    return homelab


def _ca_bundle(homelab: Homelab) -> bytes:
    configuration = homelab.fake.store.get(WEBHOOK_API, "validatingwebhookconfigurations", CONFIGURATION)
    (webhook,) = configuration["webhooks"]
    return base64.b64decode(webhook["clientConfig"].get("caBundle") or "")


def _secret(homelab: Homelab) -> dict[str, Any]:
    return homelab.fake.store.get("v1", "secrets", SECRET, OPERATOR_NAMESPACE)


def _secret_bytes(homelab: Homelab, key: str) -> bytes:
    return base64.b64decode(_secret(homelab)["data"][key])


class _ServiceConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1, checking the certificate against the Service's DNS name as the API server does."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__("127.0.0.1", port, timeout=10)
        self._tls = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=SERVICE_HOST)


def _review(port: int, ca_pem: bytes, obj: dict[str, Any]) -> dict[str, Any]:
    request = {
        "uid": "uid-1",
        "kind": {"group": "infra.homecluster.dev", "version": "v1alpha1", "kind": obj["kind"]},
        "resource": {"group": "infra.homecluster.dev", "version": "v1alpha1", "resource": "nodes"},
        "operation": "CREATE",
        "namespace": NAMESPACE,
        "name": obj["metadata"]["name"],
        "object": obj,
    }
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    connection = _ServiceConnection(port, ssl.create_default_context(cadata=ca_pem.decode()))
    try:
        connection.request("POST", "/validate", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200
        response: dict[str, Any] = json.loads(answer.read())["response"]
        return response
    finally:
        connection.close()


def test_the_operator_keeps_its_webhook_certificate_and_answers_reviews(cluster: Homelab) -> None:
    homelab = cluster
    homelab.add_group(max_size=2)
    homelab.add_machine("m1")
    running = homelab.start_operator(webhook_address="127.0.0.1:0")
    port = running.operator.webhook_port
    assert port is not None

    ca_pem = _secret_bytes(homelab, "ca.crt")
    assert _ca_bundle(homelab) == ca_pem
    assert (homelab.settings().webhook.cert_dir.parent / "certs-0" / "tls.crt").read_bytes() == _secret_bytes(
        homelab, "tls.crt"
    )
    wait_for(lambda: running.operator.readiness_problem() is None, what="the webhook caches to sync")

    allowed = _review(port, ca_pem, machine_manifest("m2"))
    unknown_group = _review(port, ca_pem, machine_manifest("m3", group="no-such-group"))
    same_node = _review(port, ca_pem, machine_manifest("m4", kubernetesNodeName="m1"))

    assert allowed["allowed"] is True
    assert unknown_group["allowed"] is False
    assert "no-such-group" in unknown_group["status"]["message"]
    assert same_node["allowed"] is False
    assert "already used by Node m1" in same_node["status"]["message"]


@pytest.fixture
def store(cluster: Homelab) -> WebhookCertificateStore:
    return WebhookCertificateStore(cluster.api_client, OPERATOR_NAMESPACE, SECRET, CONFIGURATION)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_the_certificate_is_rotated_before_it_expires_and_the_ca_bundle_follows(
    cluster: Homelab, store: WebhookCertificateStore, tmp_path: Path
) -> None:
    clock = Clock(START)
    issuer = WebhookCertificateIssuer("homelab-autoscaler-webhook", OPERATOR_NAMESPACE)
    keeper = WebhookCertificates("self", tmp_path / "certs", store=store, issuer=issuer, clock=clock)
    keeper.prepare()
    first_cert, first_ca = _secret_bytes(cluster, "tls.crt"), _secret_bytes(cluster, "ca.crt")
    assert _ca_bundle(cluster) == first_ca
    assert keeper.problem is None
    assert x509.load_pem_x509_certificate(first_cert).subject.rfc4514_string() == "CN=homelab-autoscaler-webhook"

    assert keeper.refresh() is False  # nothing is due: nothing written
    clock.now = certificate_expiry(first_cert) - timedelta(days=10)
    assert keeper.refresh() is True

    second_cert = _secret_bytes(cluster, "tls.crt")
    assert second_cert != first_cert
    assert _secret_bytes(cluster, "ca.crt") == first_ca  # same CA: the caBundle need not change
    assert _ca_bundle(cluster) == first_ca
    assert keeper.cert_file.read_bytes() == second_cert

    clock.now = certificate_expiry(first_ca) - timedelta(days=10)
    assert keeper.refresh() is True
    new_ca = _secret_bytes(cluster, "ca.crt")
    assert new_ca != first_ca
    assert _ca_bundle(cluster) == new_ca + first_ca  # old replicas stay trusted during the change
    keeper.refresh()
    assert _ca_bundle(cluster) == new_ca


def test_a_standby_serves_a_temporary_certificate_and_writes_nothing(
    cluster: Homelab, store: WebhookCertificateStore, tmp_path: Path
) -> None:
    issuer = WebhookCertificateIssuer("homelab-autoscaler-webhook", OPERATOR_NAMESPACE)
    keeper = WebhookCertificates("self", tmp_path / "certs", store=store, issuer=issuer, may_write=False)

    keeper.prepare()

    assert keeper.cert_file.is_file()
    assert keeper.problem is not None
    with pytest.raises(ApiError, match="not found"):
        _secret(cluster)
    assert _ca_bundle(cluster) == b""

    keeper.set_may_write(True)  # elected
    assert keeper.refresh() is True
    assert keeper.cert_file.read_bytes() == _secret_bytes(cluster, "tls.crt")
    assert _ca_bundle(cluster) == _secret_bytes(cluster, "ca.crt")


def test_with_cert_manager_the_secret_is_only_read(
    cluster: Homelab, store: WebhookCertificateStore, tmp_path: Path
) -> None:
    issuer = WebhookCertificateIssuer("homelab-autoscaler-webhook", OPERATOR_NAMESPACE)
    # cert-manager's Secret: kubernetes.io/tls with ca.crt, and never a CA key.
    issued = issuer.issue(None, START)
    cluster.fake.store.create("v1", "secrets", {
        "metadata": {"name": SECRET, "namespace": OPERATOR_NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {key: base64.b64encode(value).decode() for key, value in
                 (("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem), ("ca.crt", issued.ca_pem))},
    }, OPERATOR_NAMESPACE)
    version = _secret(cluster)["metadata"]["resourceVersion"]
    keeper = WebhookCertificates("cert-manager", tmp_path / "certs", store=store, issuer=issuer)

    keeper.prepare()

    assert keeper.cert_file.read_bytes() == issued.cert_pem
    assert keeper.key_file.read_bytes() == issued.key_pem
    assert _secret(cluster)["metadata"]["resourceVersion"] == version
    assert _ca_bundle(cluster) == b""  # cert-manager's cainjector fills it, not us
    assert keeper.problem is None


def test_a_group_the_cache_has_not_seen_yet_is_confirmed_by_a_live_read(homelab: Homelab) -> None:
    lookup = CachedAdmissionLookup(homelab.api_client, KnownMachine, NAMESPACE)  # never started: an empty cache
    homelab.add_group("fresh")

    assert lookup.group_exists(NAMESPACE, "fresh") is True
    assert lookup.group_exists(NAMESPACE, "missing") is False
    assert lookup.nodes("") == []
