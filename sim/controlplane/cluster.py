"""`ControlPlane`: a real etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler) on loopback for tests.

The envtest idea in Python: where the fake API in `sim.fakeapi` is fast but only as faithful as we made it, this
runs the real binaries (found by `sim.controlplane.binaries`) with a fresh PKI, fresh etcd data and free ports in one
folder, so several can run at once and nothing outlives `stop()`. No kubelet runs: Nodes are whatever a test
creates. The flags are the ones that matter on loopback (see the comments beside them); a caller adds or overrides
flags per component, an override given as `--name=value` replacing the default of the same name.

    with ControlPlane(find_binaries(), tmp_path) as control_plane:
        client = new_api_client(control_plane.kubeconfig)

Start order is etcd, kube-apiserver (ready when /readyz says ok and /openapi/v2 and /openapi/v3 answer, which
`kubectl apply` needs), then kube-controller-manager and kube-scheduler (ready when their /healthz says ok over
TLS). A component that dies or a wait that times out stops everything started so far and raises
`ControlPlaneStartFailed` with that component's log tail.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final

import yaml

from sim.controlplane.binaries import Binaries
from sim.controlplane.errors import ControlPlaneError, ControlPlaneStartFailed
from sim.controlplane.pki import (
    CONTROLLER_MANAGER_USER,
    FRONT_PROXY_CLIENT_NAME,
    SCHEDULER_USER,
    KeyPair,
    Pki,
    generate_pki,
)
from sim.controlplane.processes import ManagedProcess

ETCD: Final = "etcd"
API_SERVER: Final = "kube-apiserver"
CONTROLLER_MANAGER: Final = "kube-controller-manager"
SCHEDULER: Final = "kube-scheduler"
COMPONENTS: Final = (ETCD, API_SERVER, CONTROLLER_MANAGER, SCHEDULER)
"""Every component in start order; stop goes the other way."""

LOOPBACK: Final = "127.0.0.1"
CLUSTER_NAME: Final = "homelab-k8s"
SERVICE_CLUSTER_IP_RANGE: Final = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
READY_PATHS: Final = ("/readyz", "/openapi/v2", "/openapi/v3")
START_ATTEMPTS: Final = 3
PORT_TAKEN: Final = "bind: address already in use"
"""What Go's net package logs when a listen fails because the port is taken."""
REQUEST_TIMEOUT: Final = 5.0
"""Seconds one readiness probe may take: a probe that hangs must not eat the whole start deadline."""


class ControlPlane:
    """A real control plane in `directory`; see the module docstring. Also a context manager (start, then stop).

    After `start()`: `server` (https://127.0.0.1:PORT), `kubeconfig` (admin, certificates embedded),
    `ca_certificate`, `logs` (component name to log file) and `log_tail()` for failure messages.
    """

    poll_interval: ClassVar[float] = 0.1
    """Seconds between readiness probes while starting."""
    stop_grace: ClassVar[float] = 10.0
    """Seconds `stop()` gives each component between SIGTERM and SIGKILL."""
    fast_node_lifecycle: ClassVar[tuple[str, ...]] = ("--node-monitor-period=1s", "--node-monitor-grace-period=10s")
    """controller_manager_args that make the node-lifecycle controller react in seconds (taints, NotReady)."""

    def __init__(
        self,
        binaries: Binaries,
        directory: Path,
        *,
        controller_manager: bool = True,
        scheduler: bool = True,
        apiserver_args: Sequence[str] = (),
        controller_manager_args: Sequence[str] = (),
        scheduler_args: Sequence[str] = (),
    ) -> None:
        self.binaries = binaries
        self.directory = directory.absolute()  # every flag and config file names it; components may chdir
        self.components = tuple(
            name
            for name, wanted in (
                (ETCD, True),
                (API_SERVER, True),
                (CONTROLLER_MANAGER, controller_manager),
                (SCHEDULER, scheduler),
            )
            if wanted
        )
        self.extra_args: dict[str, tuple[str, ...]] = {
            ETCD: (),
            API_SERVER: tuple(apiserver_args),
            CONTROLLER_MANAGER: tuple(controller_manager_args),
            SCHEDULER: tuple(scheduler_args),
        }
        # Resolved now, so a missing optional binary fails at construction rather than halfway through a start.
        self._executables = {name: binaries.require(name) for name in self.components}
        self.kubeconfig = self.directory / "kubeconfig"
        self.ca_certificate = self.directory / "pki" / "ca.crt"
        self.logs: dict[str, Path] = {name: self.directory / "logs" / f"{name}.log" for name in self.components}
        self.ports: dict[str, int] = {}
        self.server = ""
        self._processes: dict[str, ManagedProcess] = {}
        self._pki: Pki | None = None

    def __repr__(self) -> str:
        return f"ControlPlane({self.directory}, server={self.server or 'not started'})"

    # ---- lifecycle

    def start(self, timeout: float = 120.0) -> None:
        """Start every component and wait until each is ready; ControlPlaneStartFailed (all stopped) otherwise.

        `timeout` bounds the whole start. A start that failed only because a port was taken is retried with new
        ports, up to START_ATTEMPTS times in all."""
        if self.running():
            raise ControlPlaneError(f"control plane in {self.directory} is already running")
        deadline = time.monotonic() + timeout
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._prepare()
                for name in self.components:
                    self._launch(name, deadline)
                return
            except ControlPlaneStartFailed as failure:
                self.stop()
                # A port found free was taken before the component bound it (another test's outgoing connection
                # can land on it): new ports are a fresh chance, any other failure would only repeat.
                if PORT_TAKEN not in failure.log_tail or attempt == START_ATTEMPTS:
                    raise
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop every component this control plane started, last started first. Idempotent; never raises for a
        component that already died."""
        for name in reversed(COMPONENTS):
            process = self._processes.get(name)
            if process is not None:
                process.stop(self.stop_grace)

    def stop_component(self, name: str, kill: bool = False) -> None:
        """Stop one component (SIGKILL at once with `kill`), e.g. to test an API server outage."""
        process = self._process(name)
        if kill:
            process.kill()
        else:
            process.stop(self.stop_grace)

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        """Start a stopped component again with the same flags and port, and wait until it is ready again."""
        process = self._process(name)
        if process.alive:
            raise ControlPlaneError(f"{name} is already running (pid {process.pid})")
        self._launch(name, time.monotonic() + timeout)

    def running(self) -> bool:
        """Whether any component of this control plane is running."""
        return any(process.alive for process in self._processes.values())

    def processes(self) -> dict[str, ManagedProcess]:
        """The processes started so far, by component name (for leak checks and the reuse of their logs)."""
        return dict(self._processes)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of every started component's log, each headed by its name."""
        return "\n".join(
            f"==== {name} ({process.log_path}) ====\n{process.tail(lines)}" for name, process in self._processes.items()
        )

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ---- one start

    def _prepare(self) -> None:
        # A fresh start gets fresh everything: certificates, etcd data, logs, ports.
        for leftover in ("pki", "etcd-data", "logs"):
            shutil.rmtree(self.directory / leftover, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pki = pki = generate_pki(self.directory / "pki")
        ports = free_ports(len(COMPONENTS) + 1)
        self.ports = {"etcd-peer": ports[-1], **dict(zip(COMPONENTS, ports, strict=False))}
        self.server = f"https://{LOOPBACK}:{self.ports[API_SERVER]}"
        self._write_kubeconfig(self.kubeconfig, "admin", pki.admin)
        self._write_kubeconfig(
            self._kubeconfig_of(CONTROLLER_MANAGER), CONTROLLER_MANAGER_USER, pki.controller_manager_client
        )
        self._write_kubeconfig(self._kubeconfig_of(SCHEDULER), SCHEDULER_USER, pki.scheduler_client)
        self._write_etcd_config()
        self._processes = {
            name: ManagedProcess(name, [self._executables[name], *self._arguments(name)], self.logs[name])
            for name in self.components
        }

    def _launch(self, name: str, deadline: float) -> None:
        process = self._process(name)
        try:
            process.start()
        except OSError as error:
            raise ControlPlaneStartFailed(name, f"could not be executed: {error}", process.tail()) from error
        probes: dict[str, Callable[[], bool]] = {
            ETCD: self._etcd_healthy,
            API_SERVER: self._api_server_ready,
            CONTROLLER_MANAGER: lambda: self._healthy(self.ports[CONTROLLER_MANAGER]),
            SCHEDULER: lambda: self._healthy(self.ports[SCHEDULER]),
        }
        self._wait(name, probes[name], deadline)

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        process = self._process(name)
        while True:
            if not process.alive:
                raise ControlPlaneStartFailed(
                    name, f"exited with status {process.returncode} while starting", process.tail()
                )
            if PORT_TAKEN in process.tail():
                # Some components (etcd) take seconds to exit after a failed listen; the start is lost already.
                raise ControlPlaneStartFailed(name, "could not listen: a port was taken", process.tail())
            if ready():
                return
            if time.monotonic() >= deadline:
                raise ControlPlaneStartFailed(name, "was not ready before the start deadline", process.tail())
            time.sleep(self.poll_interval)

    def _process(self, name: str) -> ManagedProcess:
        try:
            return self._processes[name]
        except KeyError:
            raise ControlPlaneError(
                f"{name} is not part of this control plane (it has {', '.join(self.components)}) or it never started"
            ) from None

    # ---- readiness probes

    def _etcd_healthy(self) -> bool:
        connection = http.client.HTTPConnection(LOOPBACK, self.ports[ETCD], timeout=REQUEST_TIMEOUT)
        status, body = _get(connection, "/health")
        if status != 200:
            return False
        with contextlib.suppress(ValueError):
            return bool(json.loads(body).get("health") == "true")
        return False

    def _api_server_ready(self) -> bool:
        context = self._client_context(self.pki.admin)
        for path in READY_PATHS:
            connection = http.client.HTTPSConnection(
                LOOPBACK, self.ports[API_SERVER], timeout=REQUEST_TIMEOUT, context=context
            )
            status, body = _get(connection, path)
            if status != 200 or (path == "/readyz" and body.strip() != b"ok"):
                return False
        return True

    def _healthy(self, port: int) -> bool:
        # /healthz is always allowed without credentials; the serving certificate is checked against our CA.
        context = ssl.create_default_context(cafile=str(self.pki.ca.certificate))
        connection = http.client.HTTPSConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT, context=context)
        status, body = _get(connection, "/healthz")
        return status == 200 and body.strip() == b"ok"

    def _client_context(self, identity: KeyPair) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca.certificate))
        context.load_cert_chain(str(identity.certificate), str(identity.key))
        return context

    @property
    def pki(self) -> Pki:
        """The PKI of the current start (ControlPlaneError before the first)."""
        if self._pki is None:
            raise ControlPlaneError(f"control plane in {self.directory} was never started")
        return self._pki

    # ---- files and flags

    def _kubeconfig_of(self, component: str) -> Path:
        return self.directory / f"{component}.kubeconfig"

    def _write_kubeconfig(self, path: Path, user: str, identity: KeyPair) -> None:
        def embedded(file: Path) -> str:
            return base64.b64encode(file.read_bytes()).decode("ascii")

        context = f"{user}@{CLUSTER_NAME}"
        document: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {"server": self.server, "certificate-authority-data": embedded(self.ca_certificate)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": embedded(identity.certificate),
                        "client-key-data": embedded(identity.key),
                    },
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": user}}],
            "current-context": context,
        }
        path.touch(mode=0o600)
        path.chmod(0o600)  # it holds a private key
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def _write_etcd_config(self) -> None:
        # Our etcd build reads only --config-file. One throwaway member: no fsync, short election timings.
        client = f"http://{LOOPBACK}:{self.ports[ETCD]}"
        peer = f"http://{LOOPBACK}:{self.ports['etcd-peer']}"
        data = self.directory / "etcd-data"
        data.mkdir(mode=0o700)
        config = {
            "name": CLUSTER_NAME,
            "data-dir": str(data),
            "listen-client-urls": client,
            "advertise-client-urls": client,
            "listen-peer-urls": peer,
            "initial-advertise-peer-urls": peer,
            "initial-cluster": f"{CLUSTER_NAME}={peer}",
            "initial-cluster-state": "new",
            "unsafe-no-fsync": True,
            "snapshot-count": 10000,
            "heartbeat-interval": 20,
            "election-timeout": 200,
            "logger": "zap",
            "log-level": "warn",
        }
        (self.directory / "etcd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _arguments(self, name: str) -> list[str]:
        defaults = {
            ETCD: self._etcd_arguments,
            API_SERVER: self._api_server_arguments,
            CONTROLLER_MANAGER: self._controller_manager_arguments,
            SCHEDULER: self._scheduler_arguments,
        }[name]()
        return merge_arguments(defaults, self.extra_args[name])

    def _etcd_arguments(self) -> list[str]:
        return ["--config-file", str(self.directory / "etcd.yaml")]

    def _api_server_arguments(self) -> list[str]:
        pki = self.pki
        return [
            f"--advertise-address={LOOPBACK}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports[API_SERVER]}",
            f"--etcd-servers=http://{LOOPBACK}:{self.ports[ETCD]}",
            f"--client-ca-file={pki.ca.certificate}",
            f"--tls-cert-file={pki.api_server.certificate}",
            f"--tls-private-key-file={pki.api_server.key}",
            f"--kubelet-client-certificate={pki.api_server_kubelet_client.certificate}",
            f"--kubelet-client-key={pki.api_server_kubelet_client.key}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_private_key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # Request-header authentication for the aggregation layer; without it kube-controller-manager and
            # kube-scheduler log forever about a missing CA bundle.
            f"--requestheader-client-ca-file={pki.front_proxy_ca.certificate}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_client.certificate}",
            f"--proxy-client-key-file={pki.front_proxy_client.key}",
            # On loopback the default reconciler logs forever that 127.0.0.1 is no valid endpoint for the
            # `kubernetes` Service; nothing in the tests needs that Service's endpoints.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _controller_manager_arguments(self) -> list[str]:
        pki = self.pki
        kubeconfig = self._kubeconfig_of(CONTROLLER_MANAGER)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports[CONTROLLER_MANAGER]}",
            f"--tls-cert-file={pki.controller_manager_serving.certificate}",
            f"--tls-private-key-file={pki.controller_manager_serving.key}",
            f"--client-ca-file={pki.ca.certificate}",
            f"--service-account-private-key-file={pki.service_account_private_key}",
            f"--root-ca-file={pki.ca.certificate}",
            f"--cluster-signing-cert-file={pki.ca.certificate}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",  # one instance; leader election would only delay the start
            "--controllers=*",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--cluster-name={CLUSTER_NAME}",
            "--profiling=false",
        ]

    def _scheduler_arguments(self) -> list[str]:
        pki = self.pki
        kubeconfig = self._kubeconfig_of(SCHEDULER)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.ports[SCHEDULER]}",
            f"--tls-cert-file={pki.scheduler_serving.certificate}",
            f"--tls-private-key-file={pki.scheduler_serving.key}",
            f"--client-ca-file={pki.ca.certificate}",
            "--leader-elect=false",
            "--profiling=false",
        ]


def merge_arguments(defaults: Iterable[str], extra: Iterable[str]) -> list[str]:
    """`defaults` then `extra`, dropping each default flag that `extra` sets again (`--name=value` or `--name`).

    Kubernetes components keep the last value of a repeated scalar flag but append to list flags
    (`--controllers`), so an override must remove the default rather than only come after it.
    """
    extra = list(extra)
    overridden = {_flag_name(argument) for argument in extra if argument.startswith("--")}
    kept = [argument for argument in defaults if not (argument.startswith("--") and _flag_name(argument) in overridden)]
    return kept + extra


def _flag_name(argument: str) -> str:
    return argument.split("=", 1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago (the kernel picks them; all held until all are
    picked, so they differ). Another program may take one before our component binds it: rare on loopback, and
    the start then fails naming the component."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(held)
            held.bind((LOOPBACK, 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """Status and body of GET `path`; (0, b"") when nothing answers yet (refused, reset, TLS not up, timeout)."""
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        connection.close()
