"""Helpers for the security tests: a recorded fake cluster, a small PKI, the process's listening sockets, polling.

A plain module (conftest files are not importable by name). Every test gets its own `FakeApiServer` with our
CRDs, the machines' namespace and the operator's namespace (names as the rendered manifests have them), and the
ValidatingWebhookConfiguration of manifests/50-webhook.yaml, so the certificate keeper has a caBundle to keep.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as kube_client

from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import Settings
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.crds import render_crds
from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for
from tests.support.rbac import MANIFESTS, ApiRequest, classify_request

WATCH_NAMESPACE: Final = "homelab"
OPERATOR_NAMESPACE: Final = "homelab-autoscaler"
GROUP: Final = "workers"
WEBHOOK_API: Final = "admissionregistration.k8s.io/v1"


# --- the cluster ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """A request that reached the fake API, and the module the test was driving when it arrived."""

    module: str | None
    """None while the whole operator ran: then any module may have sent it."""
    request: ApiRequest
    body: bytes


@dataclass
class RequestRecorder:
    """An `on_request` hook of the fake API: every resource request, labelled with the module being driven.

    Drive one module at a time inside `driving(module)` and stop its threads before leaving the block, so no
    request of one module can be counted for another.
    """

    module: str | None = None
    records: list[RecordedRequest] = field(default_factory=list)
    unclassified: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, method: str, target: str, body: bytes) -> None:
        request = classify_request(method, target)
        with self.lock:
            if request is None:
                self.unclassified.append(f"{method} {target}")
            else:
                self.records.append(RecordedRequest(self.module, request, body))

    @contextlib.contextmanager
    def driving(self, module: str | None) -> Iterator[None]:
        with self.lock:
            self.module = module
        try:
            yield
        finally:
            with self.lock:
                self.module = None

    def requests(self, module: str | None = None) -> list[ApiRequest]:
        with self.lock:
            return [record.request for record in self.records if module is None or record.module == module]

    def seen(self, verb: str, resource: str, module: str | None = None) -> bool:
        return any(r.verb == verb and r.resource == resource for r in self.requests(module))


@dataclass
class Cluster:
    """One test's fake API server, a client of it, and the recorder on it."""

    fake: FakeApiServer
    api_client: kube_client.ApiClient
    recorder: RequestRecorder

    def add_group(self, name: str = GROUP, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "Group",
            "metadata": {"name": name, "namespace": WATCH_NAMESPACE},
            "spec": {"maxSize": 3, "bootTimeout": "20s", "shutdownTimeout": "5s", **spec},
        }
        return self.fake.store.create(GROUP_VERSION, "groups", body, WATCH_NAMESPACE)

    def add_machine(self, name: str, group: str = GROUP, **spec: Any) -> dict[str, Any]:
        template = {"image": "busybox:1.36", "command": ["sh", "-c", "echo power"]}
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "Node",
            "metadata": {"name": name, "namespace": WATCH_NAMESPACE, "labels": {label_names.GROUP_LABEL: group}},
            "spec": {"startupJob": template, "shutdownJob": template, **spec},
        }
        return self.fake.store.create(GROUP_VERSION, "nodes", body, WATCH_NAMESPACE)

    def add_kube_node(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}
        return self.fake.store.create("v1", "nodes", body)

    def add_pod(self, name: str, namespace: str, node_name: str = "") -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36"}]}
        if node_name:
            spec["nodeName"] = node_name
        self.fake.store.create("v1", "pods", {"metadata": {"name": name}, "spec": spec}, namespace)
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        return self.fake.store.patch("v1", "pods", name, {"status": status}, namespace, subresource="status")

    def add_secret(self, name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
        return self.fake.store.create("v1", "secrets", body, namespace)


def serve_webhook_configurations(fake: FakeApiServer) -> None:
    """Create our ValidatingWebhookConfiguration from the manifests."""
    manifest = yaml.safe_load((MANIFESTS / "50-webhook.yaml").read_text())
    fake.store.create(WEBHOOK_API, "validatingwebhookconfigurations", manifest)


@contextlib.contextmanager
def new_cluster() -> Iterator[Cluster]:
    """A started fake (CRDs, namespaces, webhook configuration) with a recorder; stopped afterwards."""
    with FakeApiServer(host="127.0.0.1", port=0, bookmark_interval=0.2) as fake:
        for crd in render_crds():
            fake.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
        for namespace in (WATCH_NAMESPACE, OPERATOR_NAMESPACE):
            fake.store.create("v1", "namespaces", {"metadata": {"name": namespace}})
        serve_webhook_configurations(fake)
        recorder = RequestRecorder()
        fake.on_request.append(recorder)
        configuration = kube_client.Configuration()
        configuration.host = fake.url
        configuration.connection_pool_maxsize = 32
        with kube_client.ApiClient(configuration) as api_client:
            yield Cluster(fake, api_client, recorder)


# --- a small PKI ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    key_pem: bytes
    cert_pem: bytes


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def new_authority(common_name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return Authority(key, _validity(builder).sign(key, hashes.SHA256()))


def issue(authority: Authority, common_name: str, *, server: bool) -> Identity:
    """A leaf certificate for 127.0.0.1 (server) or a client certificate (client auth), signed by `authority`."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = _validity(builder).sign(authority.key, hashes.SHA256())
    return Identity(_key_pem(key), certificate.public_bytes(serialization.Encoding.PEM))


def write_identity(identity: Identity, directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert.write_bytes(identity.cert_pem)
    key.write_bytes(identity.key_pem)
    return cert, key


# --- listening sockets ---------------------------------------------------------------------------------------------

TCP_LISTEN: Final = "0A"


def _socket_inodes() -> set[str]:
    """The inodes of every socket this process has open (from /proc/self/fd)."""
    inodes = set()
    for descriptor in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # a descriptor closed while we looked
            target = os.readlink(f"/proc/self/fd/{descriptor}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str, family: str) -> str:
    raw = bytes.fromhex(hex_address)
    if family == "tcp":
        return str(ipaddress.IPv4Address(raw[::-1]))
    # IPv6 in /proc is four 32-bit words, each in host (little-endian) order.
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped) if address.ipv4_mapped is not None else str(address)


def listening_sockets() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket of this process in LISTEN state, IPv4 and IPv6."""
    ours = _socket_inodes()
    found = set()
    for family in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{family}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != TCP_LISTEN or inode not in ours:
                continue
            host, port = local.split(":")
            found.add((_address(host, family), int(port, 16)))
    return found


# --- the operator ----------------------------------------------------------------------------------------------------


def operator_settings(directory: Path, **overrides: Any) -> Settings:
    """Settings as the Deployment gives them, but every listener on 127.0.0.1 port 0 and short Lease timings."""
    values: dict[str, Any] = {
        "namespace": OPERATOR_NAMESPACE,
        "watch_namespace": WATCH_NAMESPACE,
        "grpc_address": "127.0.0.1:0",
        "metrics_address": "127.0.0.1:0",
        "webhook_address": "127.0.0.1:0",
        "webhook_cert_dir": directory / "webhook-certs",
        "leader_elect": True,
        "leader_election_lease_seconds": 2.0,
        "leader_election_renew_seconds": 0.5,
        "leader_election_retry_seconds": 0.2,
        "shutdown_grace_seconds": 2.0,
    }
    values.update(overrides)
    return Settings.from_flags(**values)


@contextlib.contextmanager
def running_operator(cluster: Cluster, settings: Settings) -> Iterator[Operator]:
    """The operator started against the cluster and acting; stopped (gracefully) on exit."""
    operator = Operator(settings, api_client=cluster.api_client)
    operator.start()
    try:
        wait_for(lambda: operator.wait_acting(0.1), what="the operator to act")
        yield operator
    finally:
        operator.stop()
