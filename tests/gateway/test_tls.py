"""TLS and mTLS as Cluster Autoscaler uses them: a server certificate whose SAN names the host CA dials, and,
with a client CA, a client certificate CA must present. Certificates are made fresh for each test module.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from actors.read_model import ReadModel
from grpc_gateway.server import TlsFiles, create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from tests.gateway.conftest import FakeMutations

SERVICE_HOST = "homelab-autoscaler.homelab-autoscaler-system.svc"
"""The host CA's cloud-config would name in `address`; the server certificate's SAN carries it."""

CALL_TIMEOUT = 10.0  # backstop; a refused handshake fails long before


@dataclass(frozen=True)
class Identity:
    key_pem: bytes
    cert_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, certificate


def issue(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str,
    usage: x509.ObjectIdentifier,
    dns_names: tuple[str, ...] = (),
) -> Identity:
    ca_key, ca_certificate = ca
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if dns_names:
        alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        alternative_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    return Identity(_pem(key), certificate.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    server: Identity
    client: Identity
    stranger: Identity
    """A client certificate signed by some other CA."""
    files: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = make_ca("homelab-autoscaler test CA")
    other_ca = make_ca("somebody else's CA")
    server = issue(ca, "homelab-autoscaler", ExtendedKeyUsageOID.SERVER_AUTH, (SERVICE_HOST,))
    client = issue(ca, "cluster-autoscaler", ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = issue(other_ca, "cluster-autoscaler", ExtendedKeyUsageOID.CLIENT_AUTH)
    files = tmp_path_factory.mktemp("pki")
    ca_pem = ca[1].public_bytes(serialization.Encoding.PEM)
    (files / "ca.crt").write_bytes(ca_pem)
    (files / "tls.crt").write_bytes(server.cert_pem)
    (files / "tls.key").write_bytes(server.key_pem)
    return Pki(ca_pem, server, client, stranger, files)


Serve = Callable[[bool], int]


@pytest.fixture
def serve(pki: Pki) -> Iterator[Serve]:
    """Start a TLS gateway (mTLS when asked) and return its port; servers stop at teardown."""
    servers: list[grpc.Server] = []

    def start(require_client_certificate: bool) -> int:
        tls = TlsFiles(
            cert=pki.files / "tls.crt",
            key=pki.files / "tls.key",
            client_ca=pki.files / "ca.crt" if require_client_certificate else None,
        )
        read_model = ReadModel()
        read_model.set_inventory_applied(True)
        servicer = CloudProviderServicer(read_model, FakeMutations(read_model))
        server, port = create_server("127.0.0.1:0", servicer, tls=tls)
        servers.append(server)
        return port

    try:
        yield start
    finally:
        for server in servers:
            stop_server(server, grace_seconds=0)


def call_node_groups(port: int, credentials: grpc.ChannelCredentials | None, server_name: str = SERVICE_HOST) -> None:
    """One NodeGroups call as CA makes it: dialing the address, verifying the server as `server_name`."""
    options = [("grpc.ssl_target_name_override", server_name)]
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    with channel:
        externalgrpc_grpc.CloudProviderStub(channel).NodeGroups(
            externalgrpc.NodeGroupsRequest(), timeout=CALL_TIMEOUT
        )


def client_credentials(pki: Pki, identity: Identity | None) -> grpc.ChannelCredentials:
    if identity is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem, private_key=identity.key_pem, certificate_chain=identity.cert_pem
    )


def test_mtls_accepts_a_client_certificate_from_the_client_ca(pki: Pki, serve: Serve) -> None:
    port = serve(True)

    call_node_groups(port, client_credentials(pki, pki.client))


@pytest.mark.parametrize(
    "who",
    [
        pytest.param("no-certificate", id="client-without-certificate"),
        pytest.param("stranger", id="certificate-from-another-ca"),
        pytest.param("plaintext", id="plaintext-client"),
    ],
)
def test_mtls_refuses_everyone_else(pki: Pki, serve: Serve, who: str) -> None:
    port = serve(True)
    credentials = {
        "no-certificate": client_credentials(pki, None),
        "stranger": client_credentials(pki, pki.stranger),
        "plaintext": None,
    }[who]

    with pytest.raises(grpc.RpcError) as refused:
        call_node_groups(port, credentials)

    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_without_client_auth_accepts_any_client_that_trusts_the_server(pki: Pki, serve: Serve) -> None:
    port = serve(False)

    call_node_groups(port, client_credentials(pki, None))
    call_node_groups(port, client_credentials(pki, pki.stranger))


def test_the_server_certificate_must_name_the_host_ca_dials(pki: Pki, serve: Serve) -> None:
    port = serve(True)

    with pytest.raises(grpc.RpcError) as refused:
        call_node_groups(port, client_credentials(pki, pki.client), server_name="gateway.example.org")

    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_missing_key_file_fails_at_start(pki: Pki, tmp_path: Path) -> None:
    read_model = ReadModel()
    tls = TlsFiles(cert=pki.files / "tls.crt", key=tmp_path / "absent.key")

    with pytest.raises(FileNotFoundError):
        create_server("127.0.0.1:0", CloudProviderServicer(read_model, FakeMutations(read_model)), tls=tls)
