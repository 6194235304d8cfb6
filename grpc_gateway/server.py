"""The gRPC server the Cluster Autoscaler dials: binding, TLS or mTLS, the standard health service, shutdown.

Kept apart from the servicer because none of it is about CA's questions: it is about how the process listens.
The composition root calls `create_server` once; tests call it with "127.0.0.1:0" and read the bound port.

Health: the standard `grpc.health.v1.Health` service (package grpcio-health-checking) answers for the whole
server ("") and for the CloudProvider service by name. Only the leader can change sizes, so the composition
root flips `ServingHealth.set_serving` with leadership and a readiness probe (`grpc_health_probe` or a
Kubernetes gRPC probe) sends CA's Service traffic to the leader only.
"""

from __future__ import annotations

import logging
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc

LOGGER = logging.getLogger(__name__)

CLOUD_PROVIDER_SERVICE: Final[str] = externalgrpc.DESCRIPTOR.services_by_name["CloudProvider"].full_name
"""`clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider`, the name health checks may ask about."""

OVERALL_HEALTH: Final = ""
"""The service name a health check without a name asks about (the server as a whole)."""

# grpcio never shuts down the thread pool it is given; `stop_server` does, so no worker thread outlives it.
_worker_pools: weakref.WeakKeyDictionary[grpc.Server, ThreadPoolExecutor] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the server's TLS. With `client_ca`, clients must present a certificate it signed (mTLS).

    The server certificate's SAN must contain the host CA dials (the host part of `address` in CA's
    cloud-config), because CA verifies the server against exactly that name.
    """

    cert: Path
    key: Path
    client_ca: Path | None = None


class ServingHealth:
    """The health status this server reports; SERVING only while this replica can answer every call."""

    def __init__(self, serving: bool = False) -> None:
        self._servicer = health.HealthServicer()
        self._serving = False
        self.set_serving(serving)

    @property
    def is_serving(self) -> bool:
        return self._serving

    def set_serving(self, serving: bool) -> None:
        """SERVING or NOT_SERVING, for the server as a whole and for the CloudProvider service."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in (OVERALL_HEALTH, CLOUD_PROVIDER_SERVICE):
            self._servicer.set(service, status)
        self._serving = serving

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for good: later `set_serving` calls are ignored, so a stopping server never looks ready."""
        self._servicer.enter_graceful_shutdown()
        self._serving = False

    def add_to_server(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; client certificates are required exactly when a client CA is given."""
    client_ca = tls.client_ca.read_bytes() if tls.client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def create_server(
    address: str,
    servicer: externalgrpc_grpc.CloudProviderServicer,
    *,
    tls: TlsFiles | None,
    max_workers: int = 16,
    health: ServingHealth | None = None,
) -> tuple[grpc.Server, int]:
    """A started server for `servicer` on `address` (port 0 picks a free port) and the port it is bound to.

    Plaintext unless `tls` is given. `health` carries the health status the caller will flip; without it the
    server reports SERVING for as long as it runs. Raises OSError when the address cannot be bound.
    """
    credentials = server_credentials(tls) if tls is not None else None  # unreadable files fail before anything starts
    workers = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-gateway")
    server = grpc.server(
        workers,
        # Without this, grpcio on Linux lets a second server bind the same port and silently share its traffic.
        options=[("grpc.so_reuseport", 0)],
    )
    externalgrpc_grpc.add_CloudProviderServicer_to_server(servicer, server)
    (health if health is not None else ServingHealth(serving=True)).add_to_server(server)
    try:
        port: int = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as error:  # grpcio raises on a failed bind in recent versions ...
        server.stop(None)
        workers.shutdown(wait=True)
        raise OSError(f"cannot listen on {address}: {error}") from error
    if port == 0:  # ... and returned port 0 in older ones
        server.stop(None)
        workers.shutdown(wait=True)
        raise OSError(f"cannot listen on {address}")
    _worker_pools[server] = workers
    server.start()
    LOGGER.info("gRPC gateway listening on %s (port %d, %s)", address, port, _describe(tls))
    return server, port


def stop_server(server: grpc.Server, *, grace_seconds: float = 5.0, health: ServingHealth | None = None) -> None:
    """Report NOT_SERVING, let calls in flight finish for up to `grace_seconds`, then stop and wait.

    Returns once every worker thread of the server has ended.
    """
    if health is not None:
        health.enter_graceful_shutdown()
    server.stop(grace_seconds).wait()
    workers = _worker_pools.pop(server, None)
    if workers is not None:
        workers.shutdown(wait=True)
    LOGGER.info("gRPC gateway stopped")


def _describe(tls: TlsFiles | None) -> str:
    if tls is None:
        return "plaintext"
    return "mTLS" if tls.client_ca is not None else "TLS"
