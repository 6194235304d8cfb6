"""Nothing listens on an address we did not configure: no stray port, no wildcard bind, nothing left after stop.

Read from the kernel, not from our own bookkeeping: the TCP sockets in LISTEN state in /proc/net/tcp and
/proc/net/tcp6 whose inodes are among this process's open descriptors. The actor system matters here: Thespian's
multiprocess bases open a listening port on every interface for their admin and actors; the operator runs
`simpleSystemBase`, which must open none, while acting with its watches, writer and actors running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from security_support import (
    Cluster,
    issue,
    listening_sockets,
    new_authority,
    operator_settings,
    running_operator,
    write_identity,
)

from actors.read_model import ReadModel
from grpc_gateway.server import create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from webhooks.admission import AdmissionRules, KnownMachine
from webhooks.server import WebhookServer

LOOPBACK: Final = "127.0.0.1"


class NoMutations:
    """A MutationPort nobody calls here."""

    def increase_size(self, group_id: str, delta: int) -> None:
        raise AssertionError("not called")

    def delete_nodes(self, group_id: str, nodes: tuple[object, ...]) -> None:
        raise AssertionError("not called")

    def decrease_target_size(self, group_id: str, delta: int) -> None:
        raise AssertionError("not called")


class EmptyCluster:
    def group_exists(self, namespace: str, name: str) -> bool:
        return False

    def nodes(self, namespace: str) -> list[KnownMachine]:
        return []

    def kubernetes_node_exists(self, name: str) -> bool:
        return False


def test_the_gateway_and_the_webhook_listen_only_where_configured(tmp_path: Path) -> None:
    before = listening_sockets()
    cert, key = write_identity(issue(new_authority("test CA"), "webhook", server=True), tmp_path, "tls")
    read_model = ReadModel()
    server, grpc_port = create_server(
        f"{LOOPBACK}:0", CloudProviderServicer(read_model, NoMutations()), tls=None
    )
    webhook = WebhookServer((LOOPBACK, 0), cert, key, AdmissionRules(EmptyCluster()))
    webhook.start()
    try:
        assert listening_sockets() - before == {(LOOPBACK, grpc_port), (LOOPBACK, webhook.port)}
    finally:
        webhook.stop()
        stop_server(server, grace_seconds=0)
    assert listening_sockets() == before


def test_the_acting_operator_listens_only_on_its_three_configured_addresses(cluster: Cluster, tmp_path: Path) -> None:
    before = listening_sockets()  # the fake API server's own port
    with running_operator(cluster, operator_settings(tmp_path)) as operator:
        assert operator.acting
        opened = listening_sockets() - before
        assert opened == {
            (LOOPBACK, operator.grpc_port),
            (LOOPBACK, operator.metrics_port),
            (LOOPBACK, operator.webhook_port),
        }
    assert listening_sockets() == before


def test_the_listener_scan_sees_a_wildcard_bind(tmp_path: Path) -> None:
    # The scan itself must be able to fail: a server on every interface shows up as such (grpcio binds
    # "0.0.0.0" as the dual-stack "::", which is wider still).
    before = listening_sockets()
    read_model = ReadModel()
    server, port = create_server(
        "0.0.0.0:0", CloudProviderServicer(read_model, NoMutations()), tls=None
    )
    try:
        ((address, opened_port),) = listening_sockets() - before
        assert opened_port == port
        assert address in ("0.0.0.0", "::")
    finally:
        stop_server(server, grace_seconds=0)
