"""Transport security as the operator runs it: mutual TLS on gRPC when configured, and TLS only on the webhook.

The operator is started whole against the fake API (its listeners on 127.0.0.1 port 0), so what is checked is
the composition root's wiring of the flags, not only the server factory: with `--grpc-cert`, `--grpc-key` and
`--grpc-client-ca`, only a client holding a certificate signed by that CA gets an answer; the webhook never
answers plain HTTP.
"""

from __future__ import annotations

import base64
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
import pytest
from security_support import (
    OPERATOR_NAMESPACE,
    Authority,
    Cluster,
    Identity,
    issue,
    new_authority,
    operator_settings,
    running_operator,
    write_identity,
)

from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from tests.support.polling import wait_for

CALL_TIMEOUT: Final = 10.0
"""Backstop only: a refused handshake fails at once."""
WEBHOOK_HOST: Final = f"homelab-autoscaler-webhook.{OPERATOR_NAMESPACE}.svc"


@dataclass(frozen=True)
class Pki:
    authority: Authority
    client: Identity
    stranger: Identity
    """A client certificate from another CA."""
    cert: Path
    key: Path
    client_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    authority = new_authority("homelab-autoscaler test CA")
    cert, key = write_identity(issue(authority, "homelab-autoscaler", server=True), directory, "server")
    client_ca = directory / "client-ca.crt"
    client_ca.write_bytes(authority.cert_pem)
    return Pki(
        authority,
        issue(authority, "cluster-autoscaler", server=False),
        issue(new_authority("somebody else's CA"), "cluster-autoscaler", server=False),
        cert,
        key,
        client_ca,
    )


def _credentials(pki: Pki, who: str) -> grpc.ChannelCredentials | None:
    identities = {"client": pki.client, "stranger": pki.stranger, "no-certificate": None}
    if who == "plaintext":
        return None
    identity = identities[who]
    if identity is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.authority.cert_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.authority.cert_pem, private_key=identity.key_pem, certificate_chain=identity.cert_pem
    )


def _node_groups(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    target = f"127.0.0.1:{port}"
    channel = grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)
    with channel:
        try:
            externalgrpc_grpc.CloudProviderStub(channel).NodeGroups(
                externalgrpc.NodeGroupsRequest(), timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("who", "answered"),
    [
        pytest.param("client", grpc.StatusCode.OK, id="certificate-from-the-client-ca"),
        pytest.param("no-certificate", grpc.StatusCode.UNAVAILABLE, id="no-client-certificate"),
        pytest.param("stranger", grpc.StatusCode.UNAVAILABLE, id="certificate-from-another-ca"),
        pytest.param("plaintext", grpc.StatusCode.UNAVAILABLE, id="plaintext"),
    ],
)
def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca(
    cluster: Cluster, pki: Pki, tmp_path: Path, who: str, answered: grpc.StatusCode
) -> None:
    settings = operator_settings(
        tmp_path, grpc_cert=pki.cert, grpc_key=pki.key, grpc_client_ca=pki.client_ca,
        webhook_address="", leader_elect=False,
    )
    with running_operator(cluster, settings) as operator:
        assert _node_groups(operator.grpc_port, _credentials(pki, who)) is answered


def _healthz_over_tls(port: int, ca_pem: str) -> tuple[str, bytes] | None:
    """(TLS version, answer) of GET /healthz as the API server would connect; None while our CA is not served."""
    context = ssl.create_default_context(cadata=ca_pem)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT) as raw, context.wrap_socket(
            raw, server_hostname=WEBHOOK_HOST
        ) as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {WEBHOOK_HOST}\r\nConnection: close\r\n\r\n".encode())
            return str(tls.version()), tls.recv(64)
    except ssl.SSLCertVerificationError:
        return None  # still the temporary certificate a replica serves until the leader has stored one


def test_the_webhook_answers_tls_and_never_plain_http(cluster: Cluster, tmp_path: Path) -> None:
    with running_operator(cluster, operator_settings(tmp_path)) as operator:
        port = operator.webhook_port
        assert port is not None
        secret = wait_for(lambda: cluster.fake.store.list("v1", "secrets", OPERATOR_NAMESPACE), what="the Secret")
        ca_pem = base64.b64decode(secret[0]["data"]["ca.crt"]).decode()

        version, answer = wait_for(lambda: _healthz_over_tls(port, ca_pem), what="the stored certificate served")
        assert version in ("TLSv1.2", "TLSv1.3")
        assert answer.startswith(b"HTTP/1.1 200")

        # Plain HTTP to the same port: the handshake fails and no HTTP answer ever comes back.
        with socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT) as plain:
            plain.sendall(b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Length: 2\r\n\r\n{}")
            received = b""
            try:
                while chunk := plain.recv(4096):
                    received += chunk
            except ConnectionResetError:
                pass
        assert not received.startswith(b"HTTP/"), received[:80]
