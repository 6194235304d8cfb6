"""The demo's running parts, started in order and stopped in reverse: fake API, the natively powered machines' NIC and
BMCs, homelab, operator, simulated machines.

The simulated machines are made before the homelab is written, though started last: the native machine's
Wake-on-LAN listener and IPMI BMC (`sim.machines.native_power`, the BMCs in a child process) need its handle, and
its Node resource needs their ports.

Kept apart from the scenario so the same running homelab serves the scripted run, `--serve` (a person with kubectl
or a real Cluster Autoscaler) and the tests (which inspect the fake API's objects while everything still runs).
Nothing here decides anything about the story; it only owns lifetimes: every thread and process it starts (the BMCs'
child process too) is stopped by `stop()`, and the temporary directory (kubeconfig, webhook certificate) is removed,
whatever failed half-way.
"""

from __future__ import annotations

import base64
import logging
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from kubernetes import client as kube_client

from homelab_autoscaler.demo.homelab import OPERATOR_NAMESPACE, DemoHomelab
from homelab_autoscaler.native_power import native_power_port
from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import LogLevel, Settings, WebhookCertSource
from kubeapi.kube_client import KubeApi
from kubeapi.webhook_certs import CertificateMaterial, write_files
from schemas import API_GROUP, API_VERSION
from sim.fakeapi import FakeApiServer
from sim.machines import MachineSimulator
from sim.machines.native_power import NativePower
from sim.seed import install_crds
from webhooks.certs import create_certificate_authority, create_serving_certificate
from webhooks.server import VALIDATE_PATH

LOGGER = logging.getLogger(__name__)

PRICE_PER_KWH: Final = Decimal("0.30")
"""Lets the gateway price machines for CA's price expander from their power draw alone."""
ACTING_TIMEOUT_SECONDS: Final = 20.0
SHUTDOWN_GRACE_SECONDS: Final = 2.0
METRICS_TIMEOUT_SECONDS: Final = 5.0
WEBHOOK_DNS_NAMES: Final = ("localhost",)
WEBHOOK_IP_ADDRESSES: Final = ("127.0.0.1",)
WEBHOOK_CONFIGURATIONS: Final = "admissionregistration.k8s.io/v1"


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo listens and where it writes; every address binds a free port by default."""

    api_address: str = "127.0.0.1:0"
    grpc_address: str = "127.0.0.1:0"
    metrics_address: str = "127.0.0.1:0"
    webhook_address: str = "127.0.0.1:0"
    kubeconfig_out: Path | None = None
    """Where to write the fake API's kubeconfig; default a temporary file removed on exit."""
    log_level: LogLevel = LogLevel.WARNING


class DemoSession:
    """The running demo homelab; `start()` then `stop()`, or use it as a context manager."""

    def __init__(self, homelab: DemoHomelab, options: DemoOptions | None = None) -> None:
        self.homelab = homelab
        self.options = options or DemoOptions()
        self._directory: Path | None = None
        self._fake: FakeApiServer | None = None
        self._api_client: kube_client.ApiClient | None = None
        self._operator: Operator | None = None
        self._simulator: MachineSimulator | None = None
        self._native_power: NativePower | None = None
        self._kubeconfig: Path | None = None
        self._webhook_ca_pem: bytes | None = None

    # --- what the scenario, the command and the tests use --------------------------------------------------------

    @property
    def fake(self) -> FakeApiServer:
        if self._fake is None:
            raise RuntimeError("the demo is not running")
        return self._fake

    @property
    def operator(self) -> Operator:
        if self._operator is None:
            raise RuntimeError("the demo is not running")
        return self._operator

    @property
    def simulator(self) -> MachineSimulator:
        if self._simulator is None:
            raise RuntimeError("the demo is not running")
        return self._simulator

    @property
    def native_power(self) -> NativePower:
        """The native machines' Wake-on-LAN listener and BMCs (what each received, e.g. `bmcs[...].commands`)."""
        if self._native_power is None:
            raise RuntimeError("the demo is not running")
        return self._native_power

    @property
    def api_client(self) -> kube_client.ApiClient:
        """A client of the fake API over HTTP (what kubectl would see), owned by the session."""
        if self._api_client is None:
            raise RuntimeError("the demo is not running")
        return self._api_client

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig is None:
            raise RuntimeError("the demo is not running")
        return self._kubeconfig

    @property
    def grpc_target(self) -> str:
        """`host:port` of the operator's gRPC service, as CA's cloud-config `address` wants it."""
        return f"{_host(self.options.grpc_address)}:{self.operator.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_host(self.options.metrics_address)}:{self.operator.metrics_port}/metrics"

    def metrics_text(self) -> str | None:
        """The operator's `/metrics` exposition now, or None when it cannot be read (the summary says so)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=METRICS_TIMEOUT_SECONDS) as answer:
                return str(answer.read().decode())
        except OSError as error:  # URLError and timeouts are OSErrors
            LOGGER.warning("could not read the operator's metrics: %s", error)
            return None

    @property
    def webhook_address(self) -> str | None:
        port = self.operator.webhook_port
        return f"{_host(self.options.webhook_address)}:{port}" if port is not None else None

    @property
    def temporary_directory(self) -> Path | None:
        return self._directory

    # --- lifetime ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every part and wait until the operator acts; on any failure stop what started, then raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="homelab-demo-"))
        host, _separator, port = self.options.api_address.rpartition(":")
        self._fake = FakeApiServer(host=host.strip("[]"), port=int(port))
        self._fake.start()
        self._kubeconfig = self.options.kubeconfig_out or self._directory / "kubeconfig"
        self._fake.write_kubeconfig(self._kubeconfig, namespace=self.homelab.namespace)
        configuration = kube_client.Configuration()
        configuration.host = self._fake.url
        self._api_client = kube_client.ApiClient(configuration)
        timing = self.homelab.timing
        simulator = MachineSimulator(
            self._api_client,
            self.homelab.simulated_machines(),
            namespaces=[self.homelab.namespace],
            complete_jobs=True,  # the fake API has no Job controller
            mark_not_ready=True,  # nor a node-lifecycle controller
            heartbeat_seconds=timing.heartbeat_seconds,
            job_seconds=timing.job_seconds,
        )
        native = [simulator.machine(machine.name, self.homelab.namespace) for machine in self.homelab.native_machines()]
        self._native_power = NativePower(native)
        self._native_power.start()
        self._seed(self._fake, self._api_client, self._native_power)

        self._operator = Operator(
            self._settings(self._kubeconfig, self._directory / "webhook"), power=native_power_port
        )
        self._operator.start()
        if not self._operator.wait_acting(ACTING_TIMEOUT_SECONDS):
            raise TimeoutError(f"the operator did not begin acting within {ACTING_TIMEOUT_SECONDS:.0f} s")
        self._register_webhook(self._fake)
        self._simulator = simulator
        self._simulator.start()

    def _seed(self, fake: FakeApiServer, api_client: kube_client.ApiClient, native: NativePower) -> None:
        install_crds(api_client)  # over HTTP: serving a new resource is the API server's reaction to that request
        store = fake.store
        for manifest in self.homelab.namespace_manifests():
            store.create("v1", "namespaces", manifest)
        namespace = self.homelab.namespace
        power = {machine.name: native.spec_for(machine.name, namespace) for machine in self.homelab.native_machines()}
        for plural, manifests in (
            ("groups", self.homelab.group_manifests()),
            ("nodes", self.homelab.node_manifests(power)),
        ):
            for manifest in manifests:
                store.create(manifest["apiVersion"], plural, manifest, namespace)
        native.create_credentials_secret(KubeApi(api_client), namespace)

    def _register_webhook(self, fake: FakeApiServer) -> None:
        """Register the operator's webhook with the fake API, as manifests/50-webhook.yaml does on a cluster.

        The fake then sends every create and update of a Group or Node made over HTTP (kubectl apply against
        `--serve`) to the operator, which refuses what a cluster running it would refuse, such as a Node without
        its group label. The seeded objects went into the store directly, before, and are valid anyway.
        """
        address = self.webhook_address
        if address is None or self._webhook_ca_pem is None:
            return
        fake.store.create(WEBHOOK_CONFIGURATIONS, "validatingwebhookconfigurations", webhook_configuration(
            f"https://{address}{VALIDATE_PATH}", self._webhook_ca_pem))

    def _settings(self, kubeconfig: Path, certificate_directory: Path) -> Settings:
        webhook = bool(self.options.webhook_address)
        if webhook:
            # Nothing should be written to the cluster for this webhook's certificate, so it is made here and
            # handed over as files; the CA goes into the configuration registered with the fake API.
            self._webhook_ca_pem = _write_webhook_certificate(certificate_directory)
        return Settings.from_flags(
            kubeconfig=kubeconfig,
            namespace=OPERATOR_NAMESPACE,
            watch_namespace=self.homelab.namespace,
            grpc_address=self.options.grpc_address,
            metrics_address=self.options.metrics_address,
            webhook_address=self.options.webhook_address,
            webhook_cert_dir=certificate_directory,
            webhook_cert_source=WebhookCertSource.FILES,
            price_per_kwh=PRICE_PER_KWH,
            shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS,
            log_level=self.options.log_level,
        )

    def stop(self) -> None:
        """Stop everything that started, in reverse order, and remove the temporary directory. Idempotent."""
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
        if self._operator is not None:
            self._operator.stop()
            self._operator = None
        if self._native_power is not None:  # after the operator, whose last commands may still reach a BMC
            self._native_power.stop()
            self._native_power = None
        if self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream
            self._api_client = None
        if self._fake is not None:
            self._fake.stop()
            self._fake = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        self._kubeconfig = None

    def __enter__(self) -> DemoSession:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _write_webhook_certificate(directory: Path) -> bytes:
    """Write the webhook's serving certificate and key; returns the CA that signed them (PEM)."""
    now = datetime.now(UTC)
    authority = create_certificate_authority(now)
    serving = create_serving_certificate(authority, WEBHOOK_DNS_NAMES, now, ip_addresses=WEBHOOK_IP_ADDRESSES)
    write_files(directory, CertificateMaterial(serving.cert_pem, serving.key_pem, authority.cert_pem))
    return authority.cert_pem


def webhook_configuration(url: str, ca_pem: bytes) -> dict[str, Any]:
    """manifests/50-webhook.yaml's configuration, calling `url` (the demo's loopback webhook) and trusting `ca_pem`."""
    return {
        "apiVersion": WEBHOOK_CONFIGURATIONS,
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "homelab-autoscaler"},
        "webhooks": [{
            "name": "validate.infra.homecluster.dev",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "matchPolicy": "Equivalent",
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode("ascii")},
            "rules": [{"apiGroups": [API_GROUP], "apiVersions": [API_VERSION], "operations": ["CREATE", "UPDATE"],
                       "resources": ["groups", "nodes"], "scope": "Namespaced"}],
        }],
    }


def _host(address: str) -> str:
    """The host part of `host:port`, with the wildcard shown as the loopback address a local client dials."""
    host = address.rpartition(":")[0].strip("[]")
    return "127.0.0.1" if host in ("", "0.0.0.0") else host
