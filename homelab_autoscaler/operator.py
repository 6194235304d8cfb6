"""The composition root: one `Operator` that turns `Settings` into a running homelab autoscaler, and stops it.

Every other package is a library; this module is the only place that knows all of them and in which order they
start. What runs, and for how long:

For the whole process (every replica, leader or not):
  the Kubernetes client; the read model and the gRPC gateway over it (health NOT_SERVING until this replica acts);
  the admission webhook with its certificate keeper and its read-only watch caches (when `--webhook-address` is
  set); the metrics and health HTTP server; the leader elector (with `--leader-elect`).

For one leadership term (from gaining leadership, or from start without election, until losing it or stopping):
  an `ActorRuntime` with the Supervisor and the KubeWatcherActor; the `KubeWriter` that applies the actors'
  effects and reports back through the runtime; the power port of machines powered natively (spec.power), when
  the operator was given a factory for one (without, such machines' operations fail with a clear Event); the four
  watches (Groups, Node resources and power Jobs in `--watch-namespace`, core Nodes). The watches list first and
  the watcher hands the Supervisor one inventory, so every machine is derived at once and Jobs in flight are
  adopted, then they watch from the listed version. Once the inventory is applied the replica *acts*: gRPC health
  turns SERVING, mutations are taken, and its pod gets the leader label the gRPC and webhook Services select on.

Losing leadership stops acting at once (health NOT_SERVING and mutations UNAVAILABLE in the elector's callback),
then the term is torn down on the control thread: watches, actors, the writer (work not yet started is dropped;
the next leader derives it again), the read model, the pod label. SIGTERM (`stop()`) does the same in the order
people rely on: stop intake, let the writer finish what it was given (bounded by `--shutdown-grace-seconds`),
release the Lease so a standby takes over at once, close every listener. `kill()` stops every thread without any
of the courtesies, as a crash would (tests of restart recovery use it).

Term transitions run on one control thread because the elector's callbacks must return quickly (its thread also
renews the Lease) and because a term must be fully torn down before the next one begins.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from kubernetes.client import ApiClient

from actors import metrics, watch_port, wiring
from actors.errors import ActorTimeout, RuntimeStopped
from actors.messages import Ping, Pong
from actors.power_port import PowerPort
from actors.read_model import ReadModel, describe_inventory
from actors.runtime import ActorRuntime
from actors.supervisor_actor import start_supervisor
from actors.watcher_actor import start_watcher
from grpc_gateway.mutations import ActorMutations
from grpc_gateway.server import ServingHealth, TlsFiles, create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from homelab_autoscaler.certificates import WebhookCertificateIssuer
from homelab_autoscaler.heap import settle_heap_after_inventory, thaw_heap
from homelab_autoscaler.http_server import HealthServer
from homelab_autoscaler.listeners import Listener, check_free, unavailable
from homelab_autoscaler.settings import Settings, WebhookCertSource
from kubeapi import kube_client, watch
from kubeapi.admission_lookup import CachedAdmissionLookup
from kubeapi.kube_client import MERGE_PATCH, KubeApi, KubeError, KubeNotFound
from kubeapi.leader import LeaderElector
from kubeapi.reachability import ApiReachability
from kubeapi.webhook_certs import (
    WebhookCertificates,
    WebhookCertificateStore,
)
from kubeapi.writer import KubeWriter
from schemas import API_GROUP, API_VERSION
from webhooks.admission import AdmissionRules, KnownMachine
from webhooks.server import WebhookServer, parse_address

LOGGER = logging.getLogger(__name__)

LEADER_LABEL: Final = f"{API_GROUP}/leader"
"""On the acting replica's pod; the gRPC and webhook Services select on it."""
INVENTORY_POLL_SECONDS: Final = 0.05
LEADERSHIP_LOSS_WRITER_SECONDS: Final = 2.0
"""A replica that lost its Lease gives writes already in progress this long, and starts none."""
STOP_TIMEOUT_SECONDS: Final = 5.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- small helpers around the API ------------------------------------------------------------------------------


def check_api_server(api_client: ApiClient, watch_namespace: str) -> None:
    """Raise KubeError, one line naming the server, when the API server does not answer at all.

    `run` calls it before binding anything: without it the operator would start, bind its ports and then log every
    watch's connection failure, retry after retry. A server that answers with an error (RBAC, missing CRDs) is
    left to the parts that know what they asked for. A list of one Group is a request our RBAC already grants (a
    non-resource URL such as /version would need a rule of its own), and as cheap as any.
    """
    namespace_part = f"/namespaces/{watch_namespace}" if watch_namespace else ""
    try:
        KubeApi(api_client).get(
            f"/apis/{API_GROUP}/{API_VERSION}{namespace_part}/groups", {"limit": "1"}, what="list Group resources"
        )
    except KubeError as error:
        if error.status == 0:
            raise
        LOGGER.debug("listing Group resources at start answered %s; the watches report it", error.message)


class PodLabel:
    """Sets and clears the leader label on this replica's own pod (nothing when the pod is unknown, e.g. locally)."""

    def __init__(
        self, api_client: ApiClient, namespace: str, pod_name: str, reachability: ApiReachability | None = None
    ) -> None:
        self._api = KubeApi(api_client)
        self._reachability = reachability
        self._path = f"/api/v1/namespaces/{namespace}/pods/{pod_name}" if namespace and pod_name else ""

    def set(self, leading: bool) -> None:
        if not self._path:
            return
        patch = {"metadata": {"labels": {LEADER_LABEL: "true" if leading else None}}}
        try:
            self._api.patch(self._path, patch, MERGE_PATCH, what=f"label pod {self._path.rpartition('/')[2]}")
        except KubeNotFound:
            LOGGER.warning("leader label: pod %s does not exist; POD_NAME/POD_NAMESPACE are wrong", self._path)
        except KubeError as error:
            if self._reachability is None or not self._reachability.failed("leader label", error):
                LOGGER.warning("leader label: could not %s it: %s", "set" if leading else "clear", error.message)


class _TermRuntime:
    """The `AskingRuntime` of the gateway's mutations: whichever term is acting now, or none."""

    def __init__(self, operator: Operator) -> None:
        self._operator = operator

    def new_request_id(self) -> str:
        term = self._operator.acting_term
        return term.runtime.new_request_id() if term is not None else f"no-term-{uuid.uuid4().hex}"

    def ask(self, address: Any, message: Any, timeout: float, reply_type: type[Any]) -> Any:
        term = self._operator.acting_term
        if term is None:
            future: Future[Any] = Future()
            future.set_exception(RuntimeStopped("this replica stopped acting"))
            return future
        return term.runtime.ask(address, message, timeout, reply_type)


# --- one leadership term ---------------------------------------------------------------------------------------

_term_numbers = itertools.count(1)

PowerReport = Callable[[Any, object], None]
"""Tells an actor (its address) a message through the term's runtime; dropped quietly once the term has ended."""
PowerPortFactory = Callable[[ApiClient, PowerReport], PowerPort]
"""Builds one term's power port: it reads the Secrets spec.power names through the client and tells each
`PowerOutcome` with the report function. A port with a `close(timeout)` (or `stop(timeout)`) method is closed when
the term ends."""


@dataclass
class _Term:
    """The actors, the writer and the watches of one leadership term (see the module docstring)."""

    runtime: ActorRuntime
    writer: KubeWriter
    wiring_key: str
    supervisor: Any
    watcher: Any
    watches: list[watch.ResourceWatch]
    acting: bool = False
    power: PowerPort | None = None

    @classmethod
    def begin(
        cls, api_client: ApiClient, settings: Settings, read_model: ReadModel, clock: Callable[[], datetime],
        identity: str, reachability: ApiReachability, power_factory: PowerPortFactory | None = None,
    ) -> _Term:
        runtime = ActorRuntime(name=f"homelab-autoscaler-term-{next(_term_numbers)}")
        runtime.start()

        def report(address: Any, message: object) -> None:
            try:
                runtime.tell(address, message)
            except RuntimeStopped:
                LOGGER.debug("writer: %s not delivered, the term ended", type(message).__name__)

        writer = KubeWriter(
            api_client, report, workers=settings.kubernetes.writer_workers, reporting_instance=identity,
            reachability=reachability,
        )
        power = power_factory(api_client, report) if power_factory is not None else None
        key = wiring.register(wiring.Wiring(read_model, writer, clock, runtime.ticker, power=power))
        try:
            supervisor = start_supervisor(runtime, key)
            watcher = start_watcher(runtime, supervisor)
        except BaseException:
            runtime.stop()
            writer.stop(STOP_TIMEOUT_SECONDS)
            _stop_power(power)
            wiring.unregister(key)
            raise

        def sink(output: watch_port.WatchOutput) -> None:
            with contextlib.suppress(RuntimeStopped):  # the term is ending; its watches stop next
                runtime.tell(watcher, output)

        namespace = settings.kubernetes.watch_namespace or None
        watches = [
            watch.group_watch(api_client, sink, namespace, reachability=reachability),
            watch.machine_watch(api_client, sink, namespace, reachability=reachability),
            watch.kube_node_watch(api_client, sink, reachability=reachability),
            watch.power_job_watch(api_client, sink, namespace, reachability=reachability),
        ]
        for resource_watch in watches:
            resource_watch.start()
        return cls(runtime, writer, key, supervisor, watcher, watches, power=power)

    def inventory_applied(self) -> bool:
        """Whether the Supervisor has applied the first complete inventory (so every group answers)."""
        try:
            pong = self.runtime.ask(self.supervisor, Ping(self.runtime.new_request_id()), 2.0, Pong).result(3.0)
        except (ActorTimeout, RuntimeStopped, TimeoutError):
            return False
        return pong.inventory_listed

    def end(self, read_model: ReadModel, *, writer_grace: float, writer_timeout: float) -> None:
        """Stop watching, stop the actors, let the writer finish for up to `writer_grace`, forget the groups."""
        self.acting = False
        for resource_watch in self.watches:
            resource_watch.stop(STOP_TIMEOUT_SECONDS)
        try:
            self.runtime.stop(STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            LOGGER.error("the actor runtime did not stop in time")
        if writer_grace > 0 and not self.writer.wait_idle(writer_grace):
            LOGGER.warning("writes still pending after %.1f s; the next leader derives them again", writer_grace)
        self.writer.stop(writer_timeout)
        _stop_power(self.power)
        wiring.unregister(self.wiring_key)
        for group in read_model.groups():
            read_model.remove(group.id)


def _stop_power(power: PowerPort | None) -> None:
    # The drivers' executor closes (answering what is still queued); any other port may offer `stop`.
    close = getattr(power, "close", None) or getattr(power, "stop", None)
    if callable(close):
        close(STOP_TIMEOUT_SECONDS)


# --- the operator ------------------------------------------------------------------------------------------------


class Operator:
    """The running operator; `start()` once, then `stop()` (graceful) or `kill()` (abrupt). Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_client: ApiClient | None = None,
        clock: Callable[[], datetime] = _utc_now,
        identity: str | None = None,
        power: PowerPortFactory | None = None,
    ) -> None:
        self.settings = settings
        self._power_factory = power
        self._own_client = api_client is None
        self._api_client = api_client
        self._clock = clock
        self.identity = identity or settings.pod.name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.read_model = ReadModel()
        self._health = ServingHealth(serving=False)
        self._lock = threading.Lock()
        self._term: _Term | None = None
        self._acting = threading.Event()
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._control: threading.Thread | None = None
        self._stopping = threading.Event()
        self._listening = False
        self._grpc_server: Any = None
        self._grpc_port = 0
        self._health_server: HealthServer | None = None
        self._webhook: WebhookServer | None = None
        self._certificates: WebhookCertificates | None = None
        self._admission: CachedAdmissionLookup[KnownMachine] | None = None
        self._elector: LeaderElector | None = None
        self._pod_label: PodLabel | None = None
        self._reachability: ApiReachability | None = None

    # --- what tests, the bench and the probes read ---------------------------------------------------------------

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def metrics_port(self) -> int:
        if self._health_server is None:
            raise RuntimeError("the operator has not been started")
        return self._health_server.port

    @property
    def webhook_port(self) -> int | None:
        return self._webhook.port if self._webhook is not None else None

    @property
    def acting(self) -> bool:
        """True while this replica runs the actors, has applied its inventory and takes mutations."""
        return self._acting.is_set()

    @property
    def acting_term(self) -> _Term | None:
        term = self._term
        return term if term is not None and term.acting else None

    def wait_acting(self, timeout: float) -> bool:
        return self._acting.wait(timeout)

    def readiness_problem(self) -> str | None:
        """None when ready to serve the moment it leads: listeners bound, caches synced (see http_server)."""
        if not self._listening:
            return "listeners are not bound yet"
        if self._admission is not None and not self._admission.synced:
            return "the webhook's caches have not synced yet"
        if not self.settings.leader_election.enabled and not self.acting:
            return "the inventory has not been applied yet"
        return None

    def liveness_problem(self) -> str | None:
        if self._control is not None and not self._control.is_alive() and not self._stopping.is_set():
            return "the control thread has died"
        term = self._term
        if term is not None and not term.runtime.is_running and not self._stopping.is_set():
            return "the actor runtime stopped unexpectedly"
        return None

    # --- start ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind every listener and begin (or campaign for) acting; raises if something cannot start."""
        try:
            self._start()
        except BaseException:
            # The caller reports why in one line; what was already started is stopped quietly.
            LOGGER.debug("the operator could not start; stopping what did")
            self.kill()
            raise

    def _start(self) -> None:
        settings = self.settings
        # Every configured address is tried before anything else happens: a port in use is the most common reason
        # a start fails, and finding it first means one line naming the flag, no library noise from half-started
        # servers, and nothing written to the cluster.
        for listener in self._listeners():
            check_free(listener)
        if self._api_client is None:
            self._api_client = kube_client.new_api_client(settings.kubernetes.kubeconfig, settings.kubernetes.context)
        api_client = self._api_client
        check_api_server(api_client, settings.kubernetes.watch_namespace)
        # One for the process: every watch, the writer and the elector report to it, so an outage is told once.
        self._reachability = ApiReachability(str(api_client.configuration.host))
        self._start_grpc()
        if settings.webhook.enabled:
            self._start_webhook(api_client)
        metrics_listener = Listener("--metrics-address", settings.metrics.address)
        host, port = parse_address(settings.metrics.address)
        self._health_server = HealthServer(
            (host, port), liveness=self.liveness_problem, readiness=self.readiness_problem,
            leading=lambda: self.acting,
        )
        try:
            self._health_server.start()
        except OSError as error:
            self._health_server = None
            raise unavailable(metrics_listener, error) from error
        self._listening = True
        # Only now, with every listener bound, does the operator write to the cluster: a start that fails on a
        # port must leave the cluster as it found it.
        self._pod_label = PodLabel(
            api_client, settings.pod.namespace or settings.kubernetes.namespace, settings.pod.name, self._reachability
        )
        self._pod_label.set(False)  # a stale label from an earlier life of this pod must not attract traffic
        self._start_certificate_keeper()
        self._control = threading.Thread(target=self._run_control, name="operator-control", daemon=True)
        self._control.start()
        if settings.leader_election.enabled:
            self._elector = LeaderElector(
                api_client,
                settings.kubernetes.namespace,
                settings.leader_election.lease,
                self.identity,
                lease_seconds=settings.leader_election.lease_seconds,
                renew_seconds=settings.leader_election.renew_seconds,
                retry_seconds=settings.leader_election.retry_seconds,
                on_started_leading=self._started_leading,
                on_stopped_leading=self._stopped_leading,
                reachability=self._reachability,
            )
            self._elector.start()
            LOGGER.info("operator %s started; campaigning for lease %s/%s", self.identity,
                        settings.kubernetes.namespace, settings.leader_election.lease)
        else:
            self._commands.put("lead")
            LOGGER.info("operator %s started without leader election", self.identity)

    def _listeners(self) -> list[Listener]:
        settings = self.settings
        listeners = [
            Listener("--grpc-address", settings.grpc.address),
            Listener("--metrics-address", settings.metrics.address),
        ]
        if settings.webhook.enabled:
            listeners.append(Listener("--webhook-address", settings.webhook.address))
        return listeners

    def _start_grpc(self) -> None:
        settings = self.settings
        tls = None
        if settings.grpc.cert is not None and settings.grpc.key is not None:
            tls = TlsFiles(settings.grpc.cert, settings.grpc.key, settings.grpc.client_ca)
        mutations = ActorMutations(_TermRuntime(self), self._supervisor_address)
        servicer = CloudProviderServicer(self.read_model, mutations, price_per_kwh=settings.energy.price_per_kwh)
        try:
            self._grpc_server, self._grpc_port = create_server(
                settings.grpc.address, servicer, tls=tls, health=self._health
            )
        except FileNotFoundError:
            raise  # a TLS file that is not there: its own message names the file
        except OSError as error:
            raise unavailable(Listener("--grpc-address", settings.grpc.address), error) from error

    def _start_webhook(self, api_client: ApiClient) -> None:
        """Bind the webhook with the certificate at hand; nothing is written until `_start_certificate_keeper`."""
        settings = self.settings
        source = settings.webhook.cert_source
        store = None
        issuer = None
        if source is not WebhookCertSource.FILES:
            store = WebhookCertificateStore(
                api_client, settings.kubernetes.namespace, settings.webhook.secret, settings.webhook.config
            )
            issuer = WebhookCertificateIssuer(settings.webhook.service, settings.kubernetes.namespace)
        # May not write yet: this round only reads the Secret (or falls back to a temporary certificate on disk).
        self._certificates = WebhookCertificates(
            source.value, settings.webhook.cert_dir, store=store, issuer=issuer, may_write=False, clock=self._clock,
            reachability=self._reachability,
        )
        self._certificates.prepare()
        self._admission = CachedAdmissionLookup(
            api_client, KnownMachine, settings.kubernetes.watch_namespace,
            watch_options={"reachability": self._reachability},
        )
        self._admission.start()
        webhook = WebhookServer(
            settings.webhook.address,
            self._certificates.cert_file,
            self._certificates.key_file,
            AdmissionRules(self._admission),
        )
        try:
            webhook.start()
        except OSError as error:
            raise unavailable(Listener("--webhook-address", settings.webhook.address), error) from error
        self._webhook = webhook

    def _start_certificate_keeper(self) -> None:
        """Without leader election, store (or rotate) the Secret now, as before serving; then keep it current."""
        certificates, webhook = self._certificates, self._webhook
        if certificates is None or webhook is None:
            return
        if not self.settings.leader_election.enabled:
            certificates.set_may_write(True)
            if certificates.refresh():
                webhook.reload_certificate()
        certificates.start(on_change=webhook.reload_certificate)

    # --- leadership ------------------------------------------------------------------------------------------

    def _supervisor_address(self) -> Any | None:
        term = self.acting_term
        return term.supervisor if term is not None else None

    def _started_leading(self) -> None:
        self._commands.put("lead")

    def _stopped_leading(self) -> None:
        # Stop acting in this very call, before anything else: the Lease may be someone else's in a moment.
        self._stop_acting()
        self._commands.put("follow")

    def _stop_acting(self) -> None:
        with self._lock:
            self._health.set_serving(False)
            self.read_model.set_inventory_applied(False)
            self._acting.clear()
            metrics.LEADER.set(0)
            if self._term is not None:
                self._term.acting = False
            if self._certificates is not None and self.settings.leader_election.enabled:
                self._certificates.set_may_write(False)

    def _run_control(self) -> None:
        retry_at: float | None = None
        while True:
            try:
                wait = None if retry_at is None else max(0.0, retry_at - time.monotonic())
                command = self._commands.get(timeout=wait)
            except queue.Empty:
                command, retry_at = "lead", None
            if command == "stop":
                return
            if command == "follow":
                retry_at = None
                self._guarded(self._follow)
            elif command == "lead" and not self._guarded(self._lead):
                # Acting half-way would be worse than not acting: tear down what began, and try again later.
                self._guarded(self._follow)
                retry_at = time.monotonic() + self.settings.leader_election.retry_seconds
                LOGGER.error("operator %s: could not begin acting; retrying in %.1f s", self.identity,
                             self.settings.leader_election.retry_seconds)

    def _guarded(self, action: Callable[[], None]) -> bool:
        try:
            action()
        except Exception:
            LOGGER.exception("operator %s: %s failed", self.identity, action.__name__.strip("_"))
            return False
        return True

    def _lead(self) -> None:
        if self._term is not None or self._stopping.is_set():
            return
        if self._elector is not None and not self._elector.is_leader:
            return  # lost it again before we began
        started = time.monotonic()
        assert self._api_client is not None
        assert self._reachability is not None
        term = _Term.begin(
            self._api_client, self.settings, self.read_model, self._clock, self.identity, self._reachability,
            self._power_factory,
        )
        with self._lock:
            self._term = term
        LOGGER.info("operator %s: acting; listing everything to rebuild every machine", self.identity)
        while not term.inventory_applied():
            if self._stopping.is_set() or (self._elector is not None and not self._elector.is_leader):
                return  # a stop or a follow command is on its way; it tears the term down
            time.sleep(INVENTORY_POLL_SECONDS)
        # Before serving, while no mutation waits on the pause of a full collection.
        settle_heap_after_inventory()
        assert self._pod_label is not None
        self._pod_label.set(True)  # a moment early is harmless: health says NOT_SERVING until the step below
        with self._lock:
            # Under the lock that _stop_acting takes too, so a step-down cannot slip between check and act.
            if self._stopping.is_set() or (self._elector is not None and not self._elector.is_leader):
                return  # a stop or a follow command is on its way; it tears the term down
            term.acting = True
            self.read_model.set_inventory_applied(True)
            self._health.set_serving(True)
            if self._certificates is not None:
                self._certificates.set_may_write(True)
            self._acting.set()
            metrics.LEADER.set(1)
        # One line for the whole inventory (each machine's derivation is logged at DEBUG): at 5000 machines a line
        # per machine would bury everything else a start says.
        LOGGER.info("operator %s: inventory applied in %.2f s (%s); serving Cluster Autoscaler", self.identity,
                    time.monotonic() - started, describe_inventory(self.read_model.groups()))

    def _follow(self) -> None:
        self._stop_acting()
        term = self._take_term()
        if term is None:
            return
        term.end(self.read_model, writer_grace=0.0, writer_timeout=LEADERSHIP_LOSS_WRITER_SECONDS)
        thaw_heap()
        if self._pod_label is not None:
            self._pod_label.set(False)
        LOGGER.info("operator %s: stopped acting", self.identity)

    def _take_term(self) -> _Term | None:
        with self._lock:
            term, self._term = self._term, None
        return term

    # --- stop ------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM: stop intake, let the writer finish (bounded), release the Lease, close every listener."""
        self._shut_down(graceful=True)

    def kill(self) -> None:
        """Stop every thread at once without any courtesy (no writes finished, Lease kept, label kept)."""
        self._shut_down(graceful=False)

    def _shut_down(self, *, graceful: bool) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        # A start that failed half-way is reported by its caller in one line; its teardown is detail.
        level = logging.INFO if self._control is not None else logging.DEBUG
        LOGGER.log(level, "operator %s: %s", self.identity, "stopping" if graceful else "killed")
        self._health.enter_graceful_shutdown()
        self._stop_acting()
        self._commands.put("stop")
        # Each part is stopped even when an earlier one failed: a stop that gave up half-way would keep the Lease
        # (a standby waits out its whole duration) and leave listeners open.
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the control thread", self._join_control),
            ("the acting term", partial(self._end_term_for_stop, graceful)),
            ("leader election", partial(self._stop_elector, graceful)),
            ("the webhook", self._stop_webhook),
            ("the gRPC gateway", partial(self._stop_grpc, graceful)),
            ("the health server", self._stop_health_server),
            ("the API client", self._close_api_client),
        ]
        for part, step in steps:
            try:
                step()
            except Exception:
                LOGGER.exception("operator %s: stopping %s failed; stopping the rest", self.identity, part)
        self._listening = False
        LOGGER.log(level, "operator %s: stopped", self.identity)

    def _join_control(self) -> None:
        if self._control is not None:
            self._control.join(STOP_TIMEOUT_SECONDS * 4)

    def _end_term_for_stop(self, graceful: bool) -> None:
        term = self._take_term()
        if term is None:
            return
        grace = self.settings.shutdown.grace_seconds if graceful else 0.0
        term.end(self.read_model, writer_grace=grace, writer_timeout=STOP_TIMEOUT_SECONDS if graceful else 0.5)
        if graceful and self._pod_label is not None:
            self._pod_label.set(False)
        thaw_heap()

    def _stop_elector(self, graceful: bool) -> None:
        if self._elector is not None:
            self._elector.stop(STOP_TIMEOUT_SECONDS, release=graceful)

    def _stop_webhook(self) -> None:
        if self._certificates is not None:
            self._certificates.stop()
        if self._webhook is not None:
            self._webhook.stop()
        if self._admission is not None:
            self._admission.stop()

    def _stop_grpc(self, graceful: bool) -> None:
        if self._grpc_server is not None:
            stop_server(self._grpc_server, grace_seconds=2.0 if graceful else 0.0, health=self._health)

    def _stop_health_server(self) -> None:
        if self._health_server is not None:
            self._health_server.stop()

    def _close_api_client(self) -> None:
        if self._reachability is not None:
            self._reachability.close()
        if self._own_client and self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream
