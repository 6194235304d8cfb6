"""Chaos soak: the whole operator under a Cluster-Autoscaler-like load while everything around it misbehaves.

Prints figures and asserts nothing; the exit status is 0 unless a promise broke: an invariant did not hold after
convergence (`sim.invariants`), an acknowledged scale-up was lost, a power Job was duplicated, a target went past
maxSize, a call got an answer no fault explains (INTERNAL, UNKNOWN), or the homelab never converged.

Two processes, so that the RSS printed is the operator's own:

- the *cluster* (a child): our fake API server seeded with N machines in G groups, the machine simulator playing
  the machines and the Job controller, a ledger that follows every power Job, Node resource and Group in the fake's
  store (so it sees what was really created, not what was asked), and the fault executor;
- the *operator side* (this process): the real `Operator` (killed without cleanup and started again a few times),
  a CA-like driver over real gRPC (`--rate` steps a second, each a look at a group and at most one change:
  IncreaseSize with random deltas within maxSize and sometimes past it, DeleteNodes of random running nodes and of
  failed boots, DecreaseTargetSize now and then), a chaos thread that injects faults at random (API 500/429/503s
  and latency, dropped watches, compaction so resuming answers 410, boot failures and hangs, failing shutdowns,
  machines powered on and off by hand, operator kills), and a sampler of the read model's targets and of RSS.

The simulator plays every machine and the Job controller from one thread, so at 1000 machines it lags (the
"simulated Job run time" figure says how much); the Groups' boot and shutdown timeouts grow with the machine
count to stay above that lag, so that a timeout means a hung boot and not a slow simulator.

Odd groups keep spare machines (maxSize below their member count) so a scale-up that overshoots is possible and
would be seen; even groups are sized to all their machines and are the only ones where machines get powered on by
hand, because an adopted machine may legitimately take its group past maxSize (see `sim.invariants`).

At the end the faults stop, the soak waits for convergence (every invariant holds and no machine is starting up
or shutting down), and prints:

- operations issued, completed, refused as expected (by status code), unexpected;
- lost: scale-up promises (machines a successful IncreaseSize turned into instances) that never got a startup Job
  or came up, were not cancelled by a later DecreaseTargetSize, and did not fail; plus IncreaseSize calls answered
  OK whose new instances never appeared;
- duplicate Jobs: a Job name created twice, two Jobs for one machine, operation and attempt, or two Jobs of one
  machine running at once (from the ledger, i.e. from what the fake really stored);
- max target overshoot past maxSize, from gRPC answers, read-model samples and Group status writes;
- convergence time after the faults stopped; RSS at the start (first operator acting), at the end, and its peak.

Run from the repository root: `.venv/bin/python -m bench.soak` (defaults: 1000 machines, 120 s) or e.g.
`.venv/bin/python -m bench.soak --machines 100 --duration 20 --seed 7 --json figures.json`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file, this folder would come first on sys.path; the packages live one level up.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import bisect
import gc
import json
import logging
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import grpc
from kubernetes import client as kube_client

from actors.read_model import GroupSnapshot, MachineSnapshot
from bench.figures import rss_mib
from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import Settings
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from sim.fakeapi import ApiError, FakeApiServer, ResourceType, Store
from sim.fakeapi.store import ListQuery
from sim.invariants import (
    Convergence,
    Findings,
    check_invariants,
    count_by_invariant,
    is_active_job,
    machine_state,
    objects_from_store,
    poll_until_converged,
    unsettled_machines,
)
from sim.machines import MachineSimulator
from sim.seed import seed_homelab

NAMESPACE: Final = "homelab"
OPERATOR_NAMESPACE: Final = "homelab-autoscaler"
MACHINES_PER_GROUP: Final = 50
CALL_TIMEOUT: Final = 10.0
ACTING_TIMEOUT: Final = 90.0
AFTER_LIST_TIMEOUT: Final = 30.0
"""How long the driver keeps asking for NodeGroupNodes after a scale-up (across a restart) to see its instances."""
CONVERGENCE_POLL: Final = 0.25
SAMPLE_SECONDS: Final = 0.05
RSS_SAMPLE_SECONDS: Final = 10.0
FAILURE_POLICY: Final[Mapping[str, Any]] = {
    "quarantineAfter": 3, "cooldownBase": "1s", "cooldownCap": "4s", "shutdownRetries": 1,
}
"""Short cooldowns, so failed machines come back within a soak (the defaults are minutes)."""
EXPECTED_REFUSALS: Final = frozenset({
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # not enough eligible machines (cooling down, quarantined, shutting down)
    grpc.StatusCode.INVALID_ARGUMENT,  # past maxSize on purpose
    grpc.StatusCode.FAILED_PRECONDITION,  # nothing to cancel, or a machine that may not be deleted now
    grpc.StatusCode.UNAVAILABLE,  # the operator was killed or is starting
    grpc.StatusCode.CANCELLED,  # the call was in flight on the channel of a killed operator
    grpc.StatusCode.DEADLINE_EXCEEDED,  # the actors did not answer in time (API latency, a restart)
})
LEDGER_WATCHES: Final = 3
"""The ledger's own watches (Jobs, Node resources, Groups), left out of the counts of watches dropped."""
CLIENT_WATCHES: Final = 5
"""Watches the operator (Groups, Node resources, Nodes, power Jobs) and the simulator (Jobs) hold when connected."""
UP_STATES: Final = frozenset({"Ready", "BootFailed", "Quarantined"})
"""States that end a scale-up promise without a startup Job of ours: it came up (by hand too) or it failed."""


# --- configuration --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakConfig:
    machines: int = 1000
    groups: int = 0
    """0: one group per 50 machines."""
    duration: float = 120.0
    seed: int = 1
    rate: float = 6.0
    """Driver steps (look at a group, then change it) per second, on average."""
    kills: int = -1
    """Operator kills during the run; -1: one per 40 s (at least one)."""
    boot_seconds: float = 1.0
    shutdown_seconds: float = 0.5
    job_seconds: float = 0.2
    heartbeat_seconds: float = 60.0
    """Slower than a kubelet's 10 s: the simulator writes every machine's heartbeats from one thread, which at 1000
    machines would otherwise slow every boot down, and nothing in the fake marks a silent Node NotReady anyway."""
    converge_timeout: float = 120.0
    log_level: str = "ERROR"

    @property
    def group_count(self) -> int:
        return self.groups or max(1, self.machines // MACHINES_PER_GROUP)

    @property
    def timeout_seconds(self) -> int:
        """Boot and shutdown timeouts: short, so a hung boot resolves within the soak, yet longer than the simulated
        machines ever take, which grows with the homelab: on one small machine the simulator lags more the more
        machines it plays (and its Job watch backs off after every dropped watch). A boot that outlasts its timeout
        and registers afterwards is adopted as started by hand, which is not what the soak means to test."""
        return 8 + self.machines // 25

    @property
    def kill_count(self) -> int:
        return self.kills if self.kills >= 0 else max(1, round(self.duration / 40))


@dataclass(frozen=True)
class GroupInfo:
    id: str
    name: str
    members: int
    max_size: int
    hand_powered: bool
    """Sized to all its machines; the only kind where machines are powered on by hand."""


# --- the cluster process: fake API, simulated machines, ledger, fault executor --------------------------------------


@dataclass(frozen=True)
class JobCreated:
    at: float
    name: str
    machine: str
    operation: str
    attempt: str


@dataclass(frozen=True)
class Transition:
    at: float
    machine: str
    state: str
    reason: str


@dataclass
class LedgerReport:
    jobs_created: list[JobCreated] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    job_seconds: list[tuple[float, float]] = field(default_factory=list)
    """From each Job's creation to its Complete or Failed condition, as the ledger saw them."""
    group_status_overshoot: int = 0
    group_status_overshoot_detail: str = ""
    relists: int = 0


class Ledger:
    """What the fake API really stored, in order: Job creations, machine state changes, Group status targets.

    Follows the store's own watch fan-out (no HTTP), resumes from its last resourceVersion after a dropped watch
    and relists after a 410, like any client. `wait_idle` lets the fault executor drop watches only once the
    ledger has caught up, so a relist finds nothing it missed.
    """

    def __init__(self, store: Store) -> None:
        self._lock = threading.Lock()
        self.report = LedgerReport()
        self._job_names: set[str] = set()
        self._job_attempts: dict[tuple[str, str, str], str] = {}
        self._job_uids: dict[str, str] = {}
        self._job_started: dict[str, float] = {}
        self._active: dict[str, set[str]] = defaultdict(set)
        self._states: dict[str, str] = {}
        self._followers = [
            _Follower(store, store.resource("batch/v1", "jobs"), self._on_job),
            _Follower(store, store.resource(GROUP_VERSION, "nodes"), self._on_machine),
            _Follower(store, store.resource(GROUP_VERSION, "groups"), self._on_group),
        ]

    def start(self) -> None:
        for follower in self._followers:
            follower.start()

    def stop(self) -> None:
        for follower in self._followers:
            follower.stop()

    def wait_idle(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(follower.idle() for follower in self._followers):
                return True
            time.sleep(0.005)
        return False

    def snapshot(self) -> LedgerReport:
        with self._lock:
            return LedgerReport(
                list(self.report.jobs_created), list(self.report.transitions), list(self.report.duplicates),
                list(self.report.job_seconds), self.report.group_status_overshoot,
                self.report.group_status_overshoot_detail,
                sum(follower.relists for follower in self._followers),
            )

    # --- handlers (one follower thread each) ---

    def _on_job(self, event_type: str, job: Mapping[str, Any]) -> None:
        metadata = job.get("metadata") or {}
        labels = metadata.get("labels") or {}
        machine = labels.get(label_names.MACHINE_LABEL)
        if labels.get(label_names.MANAGED_BY_LABEL) != label_names.MANAGED_BY_VALUE or not machine:
            return
        name, uid = str(metadata.get("name")), str(metadata.get("uid"))
        key = f"{metadata.get('namespace')}/{name}"
        with self._lock:
            if event_type == "ADDED" and self._job_uids.get(key) != uid:
                self._created(key, uid, name, machine, labels)
            if event_type == "DELETED":
                self._job_uids.pop(key, None)
                self._job_started.pop(key, None)
                self._active[machine].discard(name)
                return
            started = self._job_started.get(key)
            if started is not None and _finished(job):
                self.report.job_seconds.append((started, time.monotonic() - started))
                del self._job_started[key]
            if is_active_job(job):
                if name not in self._active[machine] and self._active[machine]:
                    others = ", ".join(sorted(self._active[machine]))
                    self.report.duplicates.append(f"{machine}: Job {name} running while {others} still runs")
                self._active[machine].add(name)
            else:
                self._active[machine].discard(name)

    def _created(self, key: str, uid: str, name: str, machine: str, labels: Mapping[str, Any]) -> None:
        operation = str(labels.get(label_names.OPERATION_LABEL))
        attempt = str(labels.get(label_names.ATTEMPT_LABEL))
        if name in self._job_names:
            self.report.duplicates.append(f"{machine}: Job {name} created a second time")
        other = self._job_attempts.setdefault((machine, operation, attempt), name)
        if other != name:
            self.report.duplicates.append(f"{machine}: Jobs {other} and {name} for {operation} attempt {attempt}")
        self._job_names.add(name)
        self._job_uids[key] = uid
        self._job_started[key] = time.monotonic()
        self.report.jobs_created.append(JobCreated(time.monotonic(), name, machine, operation, attempt))

    def _on_machine(self, event_type: str, machine: Mapping[str, Any]) -> None:
        name = str((machine.get("metadata") or {}).get("name"))
        state = "Deleted" if event_type == "DELETED" else machine_state(machine)
        with self._lock:
            if self._states.get(name) != state:
                self._states[name] = state
                reason = str((machine.get("status") or {}).get("reason") or "")
                self.report.transitions.append(Transition(time.monotonic(), name, state, reason))

    def _on_group(self, event_type: str, group: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            return
        over = int((group.get("status") or {}).get("targetSize") or 0) - int((group.get("spec") or {})["maxSize"])
        with self._lock:
            if over > self.report.group_status_overshoot:
                self.report.group_status_overshoot = over
                self.report.group_status_overshoot_detail = (
                    f"Group status: {group['metadata']['name']} recorded targetSize {over} past maxSize"
                )


def _finished(job: Mapping[str, Any]) -> bool:
    return any(condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True"
               for condition in (job.get("status") or {}).get("conditions") or ())


def _percentiles(samples: Iterable[float]) -> str:
    ordered = sorted(samples)
    if not ordered:
        return "none"
    middle, high = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)]
    return f"p50 {middle:.2f} s, p90 {high:.2f} s, max {ordered[-1]:.2f} s"


class _Follower:
    """One resource of the store, followed on a thread: list, then watch; resume or relist when cut off."""

    def __init__(self, store: Store, resource: ResourceType, handle: Callable[[str, Mapping[str, Any]], None]) -> None:
        self._store = store
        self._resource = resource
        self._handle = handle
        self._stopping = threading.Event()
        self._busy = threading.Event()
        self._watcher: Any = None
        self._known: dict[str, Mapping[str, Any]] = {}
        self.relists = 0
        self._thread = threading.Thread(target=self._run, name=f"soak-ledger-{resource.plural}", daemon=True)

    def start(self) -> None:
        self._watcher = self._store.open_watch(self._resource, NAMESPACE, ListQuery())
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def idle(self) -> bool:
        watcher = self._watcher
        return not self._busy.is_set() and watcher is not None and watcher.is_idle() and watcher.closed_reason is None

    def _run(self) -> None:
        last = 0
        while not self._stopping.is_set():
            watcher = self._watcher
            items = watcher.take(0.1)
            self._busy.set()
            try:
                for event_type, obj in items:
                    last = max(last, int(obj["metadata"]["resourceVersion"]))
                    self._remember(event_type, obj)
                    self._handle(event_type, obj)
                if watcher.closed_reason is not None and watcher.is_idle():
                    try:
                        self._watcher = self._store.open_watch(
                            self._resource, NAMESPACE, ListQuery(resource_version=str(last))
                        )
                    except ApiError:
                        last = self._relist()
            finally:
                self._busy.clear()
        self._store.close_watch(self._watcher)

    def _remember(self, event_type: str, obj: Mapping[str, Any]) -> None:
        uid = str(obj["metadata"].get("uid"))
        if event_type == "DELETED":
            self._known.pop(uid, None)
        else:
            self._known[uid] = obj

    def _relist(self) -> int:
        """After a 410: list, report the difference as events, and watch from the list's version."""
        self.relists += 1
        listed = self._store.list_objects(self._resource, NAMESPACE, ListQuery())
        current = {str(obj["metadata"].get("uid")): obj for obj in listed.items}
        for uid, obj in list(self._known.items()):
            if uid not in current:
                self._remember("DELETED", obj)
                self._handle("DELETED", obj)
        for uid, obj in current.items():
            event_type = "MODIFIED" if uid in self._known else "ADDED"
            self._remember(event_type, obj)
            self._handle(event_type, obj)
        self._watcher = self._store.open_watch(
            self._resource, NAMESPACE, ListQuery(resource_version=str(listed.resource_version))
        )
        return int(listed.resource_version)


@dataclass(frozen=True)
class PortableGroup:
    """The part of a `GroupSnapshot` the invariants read, in a form that crosses a process boundary.

    The invariants are checked in the cluster process, next to the objects, so that a poll moves a few hundred
    kilobytes of snapshots there instead of every object here (which would also inflate the RSS measured here).
    """

    id: str
    namespace: str
    name: str
    min_size: int
    max_size: int
    target_size: int
    machines: tuple[MachineSnapshot, ...]

    @classmethod
    def of(cls, snapshot: GroupSnapshot) -> PortableGroup:
        return cls(snapshot.id, snapshot.namespace, snapshot.name, snapshot.min_size, snapshot.max_size,
                   snapshot.target_size, snapshot.machines)

    def rebuild(self) -> GroupSnapshot:
        return GroupSnapshot(self.id, self.namespace, self.name, self.min_size, self.max_size, self.target_size,
                             self.machines)


class Cluster:
    """Everything that runs in the cluster process, driven by commands from the operator side."""

    def __init__(self, config: SoakConfig, directory: str) -> None:
        self.config = config
        self.fake = FakeApiServer(history_limit=200_000, watch_queue_limit=1_000_000, bookmark_interval=1.0)
        self.fake.start()
        machines = seed_homelab(
            self.fake, NAMESPACE, groups=config.group_count, machines=config.machines,
            boot_seconds=config.boot_seconds, shutdown_seconds=config.shutdown_seconds,
        )
        self.fake.store.create("v1", "namespaces", {"metadata": {"name": OPERATOR_NAMESPACE}})
        members = Counter(machine.group for machine in machines)
        self.groups: list[GroupInfo] = []
        for number in range(1, config.group_count + 1):
            name = f"group-{number}"
            hand_powered = number % 2 == 0 or members[name] < 2
            max_size = members[name] if hand_powered else members[name] - max(1, members[name] // 5)
            timeout = f"{config.timeout_seconds}s"
            spec: dict[str, Any] = {"bootTimeout": timeout, "shutdownTimeout": timeout,
                                    "failurePolicy": dict(FAILURE_POLICY), "maxSize": max_size}
            if hand_powered:  # seed_homelab allows these 2 boots at once; a quarter of the group still queues boots
                spec["maxConcurrentBoots"] = max(2, members[name] // 4)
            self.fake.store.patch(GROUP_VERSION, "groups", name, {"spec": spec}, NAMESPACE)
            self.groups.append(GroupInfo(f"{NAMESPACE}/{name}", name, members[name], max_size, hand_powered))
        self.hand_powered = {group.name for group in self.groups if group.hand_powered}
        self.kubeconfig = self.fake.write_kubeconfig(Path(directory) / "kubeconfig")
        self.ledger = Ledger(self.fake.store)
        self.ledger.start()
        configuration = kube_client.Configuration()
        configuration.host = self.fake.url
        self._api_client = kube_client.ApiClient(configuration)
        self.simulator = MachineSimulator(
            self._api_client, machines, namespaces=[NAMESPACE], complete_jobs=True, mark_not_ready=True,
            job_seconds=config.job_seconds, heartbeat_seconds=config.heartbeat_seconds,
        )
        self.simulator.start()
        self.groups_of = {machine.name: machine.group for machine in machines}

    def stop(self) -> None:
        self.simulator.stop()
        self.ledger.stop()
        self.fake.stop()
        self._api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream

    # --- commands ---

    def execute(self, command: str, arguments: tuple[Any, ...]) -> Any:
        return getattr(self, f"command_{command.replace('-', '_')}")(*arguments)

    def command_api_errors(self, verb: str, resource: str, count: int, code: int) -> str:
        self.fake.faults.fail(verb, resource, count=count, code=code)
        return f"{count} x {code} on {verb} {resource}"

    def command_latency(self, verb: str, resource: str, seconds: float, for_seconds: float) -> str:
        self.fake.faults.delay(verb, resource, seconds=seconds, for_seconds=for_seconds)
        return f"{seconds:.2f} s on {verb} {resource} for {for_seconds:.1f} s"

    def command_drop_watches(self) -> str:
        self.ledger.wait_idle()
        return f"{self.fake.faults.drop_watches() - LEDGER_WATCHES} watches dropped"

    def command_compaction(self) -> str:
        # Compact, then cut every watch: resuming from any version seen before answers 410 and forces a relist.
        self.fake.faults.compact_history()
        self.ledger.wait_idle()
        return f"history compacted, {self.fake.faults.drop_watches() - LEDGER_WATCHES} watches dropped"

    def _pick(self, choice: float, wanted: Callable[[Any], bool]) -> Any | None:
        candidates = [handle for handle in self.simulator.machines if wanted(handle)]
        return candidates[int(choice * len(candidates))] if candidates else None

    def _machine_fault(self, choice: float, wanted: Callable[[Any], bool], act: Callable[[Any], None]) -> str | None:
        handle = self._pick(choice, wanted)
        if handle is None:
            return None
        act(handle)
        return str(handle.name)

    def command_boot_failure(self, choice: float) -> str | None:
        return self._machine_fault(choice, lambda handle: not handle.powered_on, lambda handle: handle.fail_next_boot())

    def command_hang_boot(self, choice: float) -> str | None:
        return self._machine_fault(choice, lambda handle: not handle.powered_on, lambda handle: handle.hang_next_boot())

    def command_fail_shutdown(self, choice: float) -> str | None:
        return self._machine_fault(choice, lambda handle: handle.powered_on,
                                   lambda handle: handle.fail_next_shutdown())

    def command_power_on(self, choice: float) -> str | None:
        return self._machine_fault(
            choice, lambda handle: not handle.powered_on and self.groups_of[handle.name] in self.hand_powered,
            lambda handle: handle.power_on_unexpectedly(),
        )

    def command_power_off(self, choice: float) -> str | None:
        return self._machine_fault(choice, lambda handle: handle.powered_on,
                                   lambda handle: handle.power_off_unexpectedly())

    def command_clear(self) -> None:
        self.fake.faults.clear()

    def command_check(self, groups: list[PortableGroup]) -> Findings:
        objects = objects_from_store(self.fake.store, NAMESPACE)
        snapshots = [group.rebuild() for group in groups]
        return check_invariants(objects, snapshots), unsettled_machines(objects)

    def command_report(self) -> LedgerReport:
        self.ledger.wait_idle()
        return self.ledger.snapshot()

    def command_groups(self) -> list[GroupInfo]:
        return self.groups

    def command_kubeconfig(self) -> str:
        return str(self.kubeconfig)


def run_cluster(config: SoakConfig, connection: Any) -> None:
    """The cluster process: serve commands from `connection` until told to stop."""
    logging.basicConfig(level=config.log_level, format="cluster %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        try:
            cluster = Cluster(config, directory)
        except Exception as error:
            logging.getLogger("soak").exception("the cluster could not start")
            connection.send(("error", f"{type(error).__name__}: {error}"))
            return
        try:
            connection.send(("ready", None))
            while True:
                command, arguments = connection.recv()
                if command == "stop":
                    break
                try:
                    connection.send(("ok", cluster.execute(command, arguments)))
                except Exception as error:  # report to the operator side, which prints it and fails the soak
                    logging.getLogger("soak").exception("cluster command %s failed", command)
                    connection.send(("error", f"{type(error).__name__}: {error}"))
        finally:
            cluster.stop()
            connection.send(("stopped", None))


class ClusterClient:
    """The operator side's handle on the cluster process: one command at a time, from any thread."""

    def __init__(self, config: SoakConfig) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=run_cluster, args=(config, child_end), name="soak-cluster",
                                        daemon=True)
        self._lock = threading.Lock()
        self._process.start()
        if not self._connection.poll(120):
            raise TimeoutError("the cluster process did not start")
        outcome, value = self._connection.recv()
        if outcome == "error":
            self._process.join(10)
            raise RuntimeError(f"the cluster process could not start: {value}")

    def call(self, command: str, *arguments: Any) -> Any:
        with self._lock:
            self._connection.send((command, arguments))
            outcome, value = self._connection.recv()
        if outcome == "error":
            raise RuntimeError(f"cluster command {command} failed: {value}")
        return value

    def stop(self) -> None:
        with self._lock:
            self._connection.send(("stop", ()))
            if self._connection.poll(30):
                self._connection.recv()
        self._process.join(30)


# --- the operator side ----------------------------------------------------------------------------------------------


class OperatorHolder:
    """The operator now running (there is one at a time) and a gRPC stub to it; killed and restarted on demand."""

    def __init__(self, kubeconfig: str) -> None:
        self._settings = Settings.from_flags(
            kubeconfig=Path(kubeconfig), namespace=OPERATOR_NAMESPACE, watch_namespace=NAMESPACE,
            grpc_address="127.0.0.1:0", metrics_address="127.0.0.1:0", webhook_address="",
            shutdown_grace_seconds=2.0,
        )
        self._lock = threading.Lock()
        self._available = threading.Event()
        self._operator: Operator | None = None
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self.restart_seconds: list[float] = []

    def start(self) -> float:
        """Start an operator and wait until it acts; returns how long that took."""
        started = time.monotonic()
        operator = Operator(self._settings)
        operator.start()
        if not operator.wait_acting(ACTING_TIMEOUT):
            operator.kill()
            raise TimeoutError(f"the operator did not act within {ACTING_TIMEOUT:.0f} s")
        channel = grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}")
        with self._lock:
            self._operator, self._channel = operator, channel
            self._stub = externalgrpc_grpc.CloudProviderStub(channel)
        self._available.set()
        return time.monotonic() - started

    def kill(self) -> None:
        with self._lock:
            operator, channel = self._operator, self._channel
            self._operator = self._channel = self._stub = None
            self._available.clear()
        if operator is not None:
            operator.kill()
        if channel is not None:
            channel.close()

    def stop(self) -> None:
        with self._lock:
            operator, channel = self._operator, self._channel
            self._operator = self._channel = self._stub = None
        if operator is not None:
            operator.stop()
        if channel is not None:
            channel.close()

    def stub(self, timeout: float) -> Any | None:
        if not self._available.wait(timeout):
            return None
        with self._lock:
            return self._stub

    @property
    def operator(self) -> Operator | None:
        with self._lock:
            return self._operator


@dataclass(frozen=True)
class Promise:
    """A machine a successful IncreaseSize turned into an instance: it must start, fail, or be cancelled."""

    machine: str
    group: str
    asked_at: float


@dataclass(frozen=True)
class Unattributed:
    group: str
    delta: int
    found: int
    asked_at: float
    listed_at: float | None
    """When the listing that should have shown them was taken (None: no listing within the timeout)."""

    def describe(self, kills: Iterable[float]) -> str:
        seen = "no listing answered afterwards" if self.listed_at is None else f"only {self.found} new instance(s)"
        end = self.listed_at if self.listed_at is not None else float("inf")
        killed = any(self.asked_at <= at <= end for at in kills)
        return f"{self.group}: IncreaseSize({self.delta}) answered OK, {seen}" + (
            " (an operator kill came in between)" if killed else ""
        )


@dataclass
class Tally:
    """Everything the driver, the chaos thread and the sampler count (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    hot_calls: int = 0
    hot_call_failures: Counter[str] = field(default_factory=Counter)
    promises: list[Promise] = field(default_factory=list)
    unattributed: list[Unattributed] = field(default_factory=list)
    """IncreaseSize calls answered OK whose new instances did not all appear in the listing right after."""
    released: list[tuple[float, str]] = field(default_factory=list)
    """(when asked, machine) of every boot CA cancelled: DeleteNodes naming it, or a DecreaseTargetSize that did."""
    overshoot_grpc: int = 0
    overshoot_read_model: int = 0
    overshoot_seen: dict[tuple[str, str, int], float] = field(default_factory=dict)
    """(source, group, target) past maxSize -> when first seen."""
    overshoot_members: dict[str, tuple[float, tuple[str, ...]]] = field(default_factory=dict)
    """group -> (when, the machines the read model counted) at its first overshoot, to explain it."""
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str, str]] = field(default_factory=list)
    last_fault_at: float = 0.0
    kills: list[float] = field(default_factory=list)
    """When each kill happened."""

    def overshoot(self, source: str, group: GroupInfo, target: int) -> None:
        over = target - group.max_size
        with self.lock:
            if over > 0:
                self.overshoot_seen.setdefault((source, group.id, target), time.monotonic())
            if source == "gRPC":
                self.overshoot_grpc = max(self.overshoot_grpc, over)
            else:
                self.overshoot_read_model = max(self.overshoot_read_model, over)


def _instance_name(instance_id: str) -> str:
    """The seeded homelab names each Kubernetes Node after its machine: the last part of `homelab://ns/name`."""
    return instance_id.rpartition("/")[2]


def _failed(instance: Any) -> bool:
    return bool(instance.status.instanceState == externalgrpc.InstanceStatus.instanceCreating
                and instance.status.errorInfo.errorCode)


class Driver:
    """Cluster Autoscaler's side of the conversation, in one thread: look at a group, then change it."""

    def __init__(self, holder: OperatorHolder, groups: list[GroupInfo], tally: Tally, rng: random.Random,
                 rate: float) -> None:
        self._pause = 1.0 / rate
        self._holder = holder
        self._groups = groups
        self._tally = tally
        self._rng = rng
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-driver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(AFTER_LIST_TIMEOUT + CALL_TIMEOUT * 2)

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._rng.random() < 0.05:  # CA's loop starts with these
                self._hot("Refresh", externalgrpc.RefreshRequest())
                self._hot("NodeGroups", externalgrpc.NodeGroupsRequest())
            self._step(self._rng.choice(self._groups), self._rng.random())
            self._stopping.wait(self._rng.uniform(0.5, 1.5) * self._pause)

    def _hot(self, method: str, request: Any) -> Any | None:
        stub = self._holder.stub(CALL_TIMEOUT)
        with self._tally.lock:
            self._tally.hot_calls += 1
        if stub is None:
            with self._tally.lock:
                self._tally.hot_call_failures["operator down"] += 1
            return None
        try:
            return getattr(stub, method)(request, timeout=CALL_TIMEOUT)
        except (grpc.RpcError, ValueError) as error:
            code = error.code().name if isinstance(error, grpc.RpcError) else "CLOSED_CHANNEL"
            with self._tally.lock:
                self._tally.hot_call_failures[f"{method} {code}"] += 1
                if isinstance(error, grpc.RpcError) and error.code() in (grpc.StatusCode.INTERNAL,
                                                                         grpc.StatusCode.UNKNOWN):
                    self._tally.unexpected.append(f"{method}: {error.code().name} {error.details()}")
            return None

    def _mutate(self, kind: str, method: str, request: Any) -> bool:
        """Issue one mutation; True when answered OK. Refusals are counted by code, other errors as unexpected."""
        stub = self._holder.stub(CALL_TIMEOUT)
        with self._tally.lock:
            self._tally.issued[kind] += 1
        if stub is None:
            with self._tally.lock:
                self._tally.refused["UNAVAILABLE (operator down)"] += 1
            return False
        try:
            getattr(stub, method)(request, timeout=CALL_TIMEOUT)
        except ValueError:  # the channel was closed under us: the operator was killed
            with self._tally.lock:
                self._tally.refused["CANCELLED"] += 1
            return False
        except grpc.RpcError as error:
            with self._tally.lock:
                if error.code() in EXPECTED_REFUSALS:
                    self._tally.refused[error.code().name] += 1
                else:
                    self._tally.unexpected.append(f"{kind}: {error.code().name} {error.details()}")
            return False
        with self._tally.lock:
            self._tally.completed[kind] += 1
        return True

    def _listing(self, group: GroupInfo) -> list[Any] | None:
        reply = self._hot("NodeGroupNodes", externalgrpc.NodeGroupNodesRequest(id=group.id))
        return list(reply.instances) if reply is not None else None

    def _target(self, group: GroupInfo) -> int | None:
        reply = self._hot("NodeGroupTargetSize", externalgrpc.NodeGroupTargetSizeRequest(id=group.id))
        if reply is None:
            return None
        self._tally.overshoot("gRPC", group, int(reply.targetSize))
        return int(reply.targetSize)

    def _step(self, group: GroupInfo, roll: float) -> None:
        instances = self._listing(group)
        target = self._target(group)
        if instances is None or target is None:
            return
        failed = [instance for instance in instances if _failed(instance)]
        # Half the steps scale up (a tenth of those past maxSize on purpose), a third delete running nodes, the rest
        # cancel boots; failed boots are let go first, whatever the roll.
        if failed:
            self._delete(group, failed, "delete failed boots")  # CA lets failed creations go at once
        elif roll < 0.50:
            self._increase(group, target)
        elif roll < 0.55:
            self._mutate("increase past maxSize", "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(
                id=group.id, delta=group.max_size - target + self._rng.randint(1, 3)))
        elif roll < 0.88:
            running = [instance for instance in instances
                       if instance.status.instanceState == externalgrpc.InstanceStatus.instanceRunning]
            if running:
                self._delete(group, self._rng.sample(running, self._rng.randint(1, min(3, len(running)))),
                             "delete running nodes")
        else:
            self._decrease(group)
        self._target(group)

    def _delete(self, group: GroupInfo, instances: Iterable[Any], kind: str) -> None:
        chosen = list(instances)
        nodes = [externalgrpc.ExternalGrpcNode(name=_instance_name(instance.id), providerID=instance.id)
                 for instance in chosen]
        asked_at = time.monotonic()
        if self._mutate(kind, "NodeGroupDeleteNodes", externalgrpc.NodeGroupDeleteNodesRequest(id=group.id,
                                                                                               nodes=nodes)):
            with self._tally.lock:
                self._tally.released.extend((asked_at, _instance_name(instance.id)) for instance in chosen)

    def _decrease(self, group: GroupInfo) -> None:
        before = self._listing(group)
        if before is None:
            return
        booting = {instance.id for instance in before
                   if instance.status.instanceState == externalgrpc.InstanceStatus.instanceCreating}
        delta = -self._rng.randint(1, max(1, len(booting)))
        asked_at = time.monotonic()
        if not self._mutate("decrease target", "NodeGroupDecreaseTargetSize",
                            externalgrpc.NodeGroupDecreaseTargetSizeRequest(id=group.id, delta=delta)):
            return
        after = self._listing_after(group)
        # Without a listing afterwards every boot that was in flight counts as possibly cancelled: a loss must be
        # certain to be reported.
        remaining = {instance.id for instance in after} if after is not None else set()
        with self._tally.lock:
            self._tally.released.extend((asked_at, _instance_name(item)) for item in booting - remaining)

    def _increase(self, group: GroupInfo, target: int) -> None:
        headroom = group.max_size - target
        if headroom <= 0:
            return
        delta = self._rng.randint(1, min(headroom, 5))
        before = self._listing(group)
        if before is None:
            return
        asked_at = time.monotonic()
        if not self._mutate("increase", "NodeGroupIncreaseSize",
                            externalgrpc.NodeGroupIncreaseSizeRequest(id=group.id, delta=delta)):
            return
        after = self._listing_after(group)
        listed_at = time.monotonic() if after is not None else None
        deleting = {instance.id for instance in before
                    if instance.status.instanceState == externalgrpc.InstanceStatus.instanceDeleting}
        known = {instance.id for instance in before} - deleting
        new = [instance.id for instance in after or ()
               if instance.id not in known
               and instance.status.instanceState != externalgrpc.InstanceStatus.instanceDeleting]
        with self._tally.lock:
            self._tally.promises.extend(Promise(_instance_name(item), group.id, asked_at) for item in new)
            if len(new) < delta:
                self._tally.unattributed.append(Unattributed(group.id, delta, len(new), asked_at, listed_at))

    def _listing_after(self, group: GroupInfo) -> list[Any] | None:
        deadline = time.monotonic() + AFTER_LIST_TIMEOUT
        while time.monotonic() < deadline:
            listed = self._listing(group)
            if listed is not None:
                return listed
            time.sleep(0.1)
        return None


class Chaos:
    """Injects one random fault at a time and kills the operator at planned moments; counts what it did.

    Every kind of fault comes once, in a shuffled order, before the weighted draw takes over, so that even a short
    soak meets them all.
    """

    FAULTS: Final = (
        ("api-errors", 30), ("latency", 14), ("drop-watches", 10), ("compaction", 8), ("boot-failure", 12),
        ("hang-boot", 4), ("fail-shutdown", 5), ("power-on", 8), ("power-off", 8),
    )
    VERBS: Final = ("create", "patch", "get", "list", "watch", "delete", "update", "*")
    RESOURCES: Final = ("jobs", "nodes", "nodes/status", "groups/status", "leases", "*")
    SLOW_REQUESTS: Final = (
        ("create", "jobs"), ("delete", "jobs"), ("patch", "nodes"), ("patch", "groups/status"), ("list", "*"),
        ("watch", "*"), ("get", "*"),
    )
    """What latency is injected into: only requests the operator makes and the simulator does not. The simulator
    plays every kubelet and the Job controller from one thread, so slowing its requests would stall all machines
    at once, which real kubelets never do; errors are injected anywhere (the simulator retries)."""

    def __init__(self, cluster: ClusterClient, holder: OperatorHolder, tally: Tally, rng: random.Random,
                 kill_at: list[float]) -> None:
        self._cluster = cluster
        self._holder = holder
        self._tally = tally
        self._rng = rng
        self._kill_at = kill_at
        self._first_round = [kind for kind, _weight in self.FAULTS]
        rng.shuffle(self._first_round)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(ACTING_TIMEOUT + 30)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while not self._stopping.is_set():
                if self._kill_at and time.monotonic() - started >= self._kill_at[0]:
                    self._kill_at.pop(0)
                    self._kill_and_restart()
                else:
                    self._inject()
                self._stopping.wait(self._rng.uniform(0.2, 1.2))
        except BaseException as error:  # reported by the soak's verdict, never swallowed
            self.failure = error

    def _kill_and_restart(self) -> None:
        self._holder.kill()
        with self._tally.lock:
            self._tally.kills.append(time.monotonic())
            self._tally.last_fault_at = time.monotonic()
        time.sleep(self._rng.uniform(0.2, 1.0))
        self._holder.restart_seconds.append(self._holder.start())

    def _inject(self) -> None:
        kinds, weights = zip(*self.FAULTS, strict=True)
        first = bool(self._first_round)
        kind = self._first_round.pop() if first else self._rng.choices(kinds, weights)[0]
        arguments: tuple[Any, ...]
        if kind == "api-errors":
            arguments = (self._rng.choice(self.VERBS), self._rng.choice(self.RESOURCES), self._rng.randint(1, 3),
                         self._rng.choice((500, 500, 503, 429)))
        elif kind == "latency":
            arguments = (*self._rng.choice(self.SLOW_REQUESTS), round(self._rng.uniform(0.05, 0.4), 2),
                         round(self._rng.uniform(1.0, 4.0), 1))
        elif kind in ("drop-watches", "compaction"):
            arguments = ()
        else:
            arguments = (self._rng.random(),)
        what = self._cluster.call(kind, *arguments)
        if what is None:  # no machine in a state this fault needs (none running yet, say): try it again later
            if first:
                self._first_round.insert(0, kind)
            return
        with self._tally.lock:
            self._tally.fault_log.append((time.monotonic(), kind, str(what)))
            self._tally.faults[kind] += 1
            self._tally.last_fault_at = time.monotonic()


class Sampler:
    """Reads every group's target from the running operator's read model, the way the gateway would."""

    def __init__(self, holder: OperatorHolder, groups: list[GroupInfo], tally: Tally) -> None:
        self._holder = holder
        self._groups = {group.id: group for group in groups}
        self._tally = tally
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self.samples = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def _run(self) -> None:
        next_rss = 0.0
        while not self._stopping.wait(SAMPLE_SECONDS):
            if time.monotonic() >= next_rss:
                with self._tally.lock:
                    self._tally.rss_samples.append((time.monotonic(), rss_mib()))
                next_rss = time.monotonic() + RSS_SAMPLE_SECONDS
            operator = self._holder.operator
            if operator is None:
                continue
            for snapshot in operator.read_model.groups():
                group = self._groups.get(snapshot.id)
                if group is not None:
                    self._tally.overshoot("read model", group, snapshot.target_size)
                    if snapshot.target_size > group.max_size:
                        counted = tuple(machine.name for machine in snapshot.machines if machine.instance is not None)
                        with self._tally.lock:
                            self._tally.overshoot_members.setdefault(group.id, (time.monotonic(), counted))
            self.samples += 1


# --- the verdict ----------------------------------------------------------------------------------------------------




@dataclass(frozen=True)
class Resolution:
    started: int
    failed: int
    cancelled: int
    lost: list[str]
    lost_machines: list[str]
    lost_across_a_kill: int
    """Of the lost: how many were asked for before an operator kill that came before their machine's next use."""


def resolve_promises(tally: Tally, report: LedgerReport) -> Resolution:
    """Which scale-up promises came true, failed, were cancelled, or were lost. Pure.

    A promise is kept by a startup Job of its machine created after the request (and before the next promise
    of the same machine), or by the machine coming up in that window (it failed if it also reached BootFailed or
    Quarantined there); or cancelled in that window by a DeleteNodes naming it or a DecreaseTargetSize that took it
    out of the listing. Anything else was lost.
    """
    jobs: dict[str, list[float]] = defaultdict(list)
    for job in report.jobs_created:
        if job.operation == "startup":
            jobs[job.machine].append(job.at)
    ups: dict[str, list[float]] = defaultdict(list)
    for transition in report.transitions:
        if transition.state in UP_STATES:
            ups[transition.machine].append(transition.at)
    failures = {(transition.machine, transition.at) for transition in report.transitions
                if transition.state in ("BootFailed", "Quarantined")}
    by_machine: dict[str, list[Promise]] = defaultdict(list)
    for promise in tally.promises:
        by_machine[promise.machine].append(promise)
    started = failed = cancelled = across_a_kill = 0
    lost: list[str] = []
    lost_machines: list[str] = []
    for machine, promises in by_machine.items():
        promises.sort(key=lambda promise: promise.asked_at)
        for index, promise in enumerate(promises):
            until = promises[index + 1].asked_at if index + 1 < len(promises) else float("inf")
            if _any_between(sorted(jobs[machine]), promise.asked_at, until) or _any_between(
                sorted(ups[machine]), promise.asked_at, until
            ):
                if any(machine == name and promise.asked_at <= at < until for name, at in failures):
                    failed += 1
                else:
                    started += 1
            elif any(name == machine and promise.asked_at <= at < until for at, name in tally.released):
                cancelled += 1
            else:
                killed = any(promise.asked_at <= at < until for at in tally.kills)
                across_a_kill += killed
                lost.append(f"{machine} ({promise.group}): IncreaseSize answered OK, never started nor cancelled"
                            + (" (an operator kill came in between)" if killed else ""))
                lost_machines.append(machine)
    return Resolution(started, failed, cancelled, sorted(lost), sorted(set(lost_machines)), across_a_kill)


def _any_between(moments: list[float], start: float, until: float) -> bool:
    index = bisect.bisect_left(moments, start)
    return index < len(moments) and moments[index] < until


def kill_schedule(rng: random.Random, kills: int, duration: float) -> list[float]:
    """Seconds into the run at which to kill the operator: spread over the middle of it, at least 3 s apart."""
    if kills <= 0:
        return []
    slot = duration * 0.7 / kills
    return [duration * 0.15 + slot * index + rng.uniform(0, max(0.0, slot - 3.0)) for index in range(kills)]


def soak(config: SoakConfig) -> dict[str, Any]:
    """Run the soak; returns every figure (the verdict under "passed")."""
    rng = random.Random(config.seed)
    cluster = ClusterClient(config)
    holder: OperatorHolder | None = None
    try:
        groups: list[GroupInfo] = cluster.call("groups")
        holder = OperatorHolder(cluster.call("kubeconfig"))
        first_start = holder.start()
        gc.collect()
        rss_start = rss_mib()
        tally = Tally()
        driver = Driver(holder, groups, tally, random.Random(rng.random()), config.rate)
        chaos = Chaos(cluster, holder, tally, random.Random(rng.random()),
                      kill_schedule(rng, config.kill_count, config.duration))
        sampler = Sampler(holder, groups, tally)
        started = time.monotonic()
        for part in (sampler, driver, chaos):
            part.start()
        time.sleep(config.duration)
        chaos.stop()
        driver.stop()
        cluster.call("clear")
        faults_stopped = time.monotonic()
        if holder.operator is None:  # the chaos thread failed half-way through a restart
            holder.restart_seconds.append(holder.start())
        running = holder

        def look() -> Findings:
            operator = running.operator
            snapshots = operator.read_model.groups() if operator is not None else ()
            findings: Findings = cluster.call("check", [PortableGroup.of(snapshot) for snapshot in snapshots])
            return findings

        convergence: Convergence = poll_until_converged(look, config.converge_timeout,
                                                        poll_seconds=CONVERGENCE_POLL)
        convergence_seconds = time.monotonic() - faults_stopped
        sampler.stop()
        report: LedgerReport = cluster.call("report")
        gc.collect()
        rss_end = rss_mib()
        resolution = resolve_promises(tally, report)
        figures = _figures(config, groups, tally, report, resolution, convergence, first_start, holder,
                           started, faults_stopped, convergence_seconds, rss_start, rss_end,
                           sampler.samples, chaos.failure)
    finally:
        if holder is not None:
            holder.stop()
        cluster.stop()
    return figures


def _overshoot_detail(tally: Tally, started: float) -> list[str]:
    lines = []
    for (source, group, target), at in sorted(tally.overshoot_seen.items(), key=lambda item: item[1]):
        earlier = [kill for kill in tally.kills if kill <= at]
        after_kill = f", {at - earlier[-1]:.1f} s after a kill" if earlier else ""
        lines.append(f"{source}: {group} target {target} at {at - started:.1f} s{after_kill}")
    return lines


OVERSHOOT_WINDOW_SECONDS: Final = 20.0
"""How far back an overshoot's explanation looks for the changes that caused it."""


def _overshoot_timelines(tally: Tally, report: LedgerReport, started: float) -> dict[str, list[str]]:
    """For each group's first overshoot: the timelines of the counted machines that changed in the 20 s before."""
    explained: dict[str, list[str]] = {}
    for _group, (at, counted) in sorted(tally.overshoot_members.items()):
        window_start = at - OVERSHOOT_WINDOW_SECONDS
        for machine in counted:
            if any(window_start <= transition.at <= at for transition in report.transitions
                   if transition.machine == machine):
                explained[machine] = timeline(machine, tally, report, started, not_before=window_start)
    return dict(list(explained.items())[:12])


def _connected_at_drops(tally: Tally) -> str:
    """How many of the operator's and the simulator's watches were connected when watches were cut."""
    counts = [int(what.split()[-3]) for _at, kind, what in tally.fault_log if kind in ("drop-watches", "compaction")]
    if not counts:
        return "no drops"
    return f"{statistics.mean(counts):.1f} of {CLIENT_WATCHES} on average, fewest {min(counts)}"


def timeline(
    machine: str, tally: Tally, report: LedgerReport, started: float, not_before: float = float("-inf")
) -> list[str]:
    """Everything the soak knows about one machine (from `not_before` on), in order, for explaining a problem."""
    events = [(promise.asked_at, f"IncreaseSize promised it ({promise.group})") for promise in tally.promises
              if promise.machine == machine]
    events += [(at, "released by DeleteNodes or DecreaseTargetSize") for at, name in tally.released if name == machine]
    events += [(job.at, f"Job {job.name} created") for job in report.jobs_created if job.machine == machine]
    events += [(transition.at, f"status {transition.state} ({transition.reason or 'no reason'})")
               for transition in report.transitions if transition.machine == machine]
    events += [(at, "operator killed") for at in tally.kills]
    first = min((at for at, what in events if what != "operator killed"), default=started)
    return [f"{at - started:7.2f} s  {what}" for at, what in sorted(events) if at >= max(first, not_before)]


def _figures(config: SoakConfig, groups: list[GroupInfo], tally: Tally, report: LedgerReport,
             resolution: Resolution, convergence: Convergence, first_start: float, holder: OperatorHolder,
             started: float, faults_stopped: float, convergence_seconds: float, rss_start: float, rss_end: float,
             samples: int, chaos_failure: BaseException | None) -> dict[str, Any]:
    overshoot = max(tally.overshoot_grpc, tally.overshoot_read_model, report.group_status_overshoot, 0)
    lost = len(resolution.lost) + len(tally.unattributed)
    problems = []
    if not convergence.converged:
        problems.append("the homelab did not converge")
    if convergence.violations:
        problems.append(f"{len(convergence.violations)} invariant violation(s)")
    if lost:
        problems.append(f"{lost} scale-up(s) lost")
    if report.duplicates:
        problems.append(f"{len(report.duplicates)} duplicate Job(s)")
    if overshoot:
        problems.append(f"target overshoot {overshoot}")
    if tally.unexpected:
        problems.append(f"{len(tally.unexpected)} unexpected answer(s)")
    if chaos_failure is not None:
        problems.append(f"the chaos thread failed: {chaos_failure!r}")
    return {
        "config": asdict(config) | {"groups": len(groups), "kills": config.kill_count},
        "groups_with_spares": sum(1 for group in groups if not group.hand_powered),
        "seconds": round(time.monotonic() - started, 1),
        "operations_issued": sum(tally.issued.values()),
        "operations_completed": sum(tally.completed.values()),
        "operations_refused_as_expected": sum(tally.refused.values()),
        "operations_unexpected": len(tally.unexpected),
        "issued_by_kind": dict(sorted(tally.issued.items())),
        "completed_by_kind": dict(sorted(tally.completed.items())),
        "refused_by_code": dict(sorted(tally.refused.items())),
        "unexpected": tally.unexpected[:20],
        "hot_calls": tally.hot_calls,
        "hot_call_failures": dict(sorted(tally.hot_call_failures.items())),
        "faults": sum(tally.faults.values()),
        "faults_by_kind": dict(sorted(tally.faults.items())),
        "operator_kills": len(tally.kills),
        "operator_first_start_seconds": round(first_start, 2),
        "operator_restart_seconds": [round(seconds, 2) for seconds in holder.restart_seconds],
        "last_fault_before_stop_seconds": round(faults_stopped - tally.last_fault_at, 2),
        "scale_up_promises": len(tally.promises),
        "promises_started": resolution.started,
        "promises_failed": resolution.failed,
        "promises_cancelled": resolution.cancelled,
        "lost": lost,
        "lost_across_a_kill": resolution.lost_across_a_kill + sum(
            "operator kill" in item.describe(tally.kills) for item in tally.unattributed
        ),
        "lost_detail": (resolution.lost + [item.describe(tally.kills) for item in tally.unattributed])[:20],
        "lost_timelines": {machine: timeline(machine, tally, report, started)
                           for machine in resolution.lost_machines[:3]},
        "jobs_created": len(report.jobs_created),
        "duplicate_jobs": len(report.duplicates),
        "duplicate_detail": report.duplicates[:20],
        "ledger_relists": report.relists,
        "watches_connected_at_drops": _connected_at_drops(tally),
        "job_run_seconds": _percentiles(seconds for _at, seconds in report.job_seconds),
        "machine_transitions": dict(sorted(Counter(
            f"{transition.state} ({transition.reason})" for transition in report.transitions
            if transition.reason and transition.state != "Deleted"
        ).items())),
        "max_target_overshoot": overshoot,
        "overshoot_detail": [*_overshoot_detail(tally, started), report.group_status_overshoot_detail][:20]
        if report.group_status_overshoot_detail else _overshoot_detail(tally, started)[:20],
        "overshoot_timelines": _overshoot_timelines(tally, report, started),
        "read_model_samples": samples,
        "converged": convergence.converged,
        "convergence_seconds_after_faults": round(convergence_seconds, 2),
        "invariant_violations": len(convergence.violations),
        "violations_by_invariant": count_by_invariant(convergence.violations),
        "violation_detail": [str(violation) for violation in convergence.violations[:20]],
        "unsettled": list(convergence.unsettled[:20]),
        "rss_start_mib": round(rss_start, 1),
        "rss_every_10_seconds_mib": [round(rss, 1) for _at, rss in tally.rss_samples],
        "kills_at_seconds": [round(at - started, 1) for at in tally.kills],
        "rss_end_mib": round(rss_end, 1),
        "rss_growth_mib": round(rss_end - rss_start, 1),
        "rss_peak_mib": round(rss_mib("VmHWM"), 1),
        "problems": problems,
        "passed": not problems,
    }


def print_figures(figures: Mapping[str, Any]) -> None:
    config = figures["config"]

    def line(label: str, value: object, detail: str = "") -> None:
        print(f"{label:<34}{value!s:>10}  {detail}".rstrip(), flush=True)

    def listing(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{name} {count}" for name, count in counts.items())

    print(f"soak: {config['machines']} machines in {config['groups']} groups ({figures['groups_with_spares']} with "
          f"spares), {config['duration']:.0f} s, {config['rate']:g} CA steps/s, seed {config['seed']}", flush=True)
    line("operations issued", figures["operations_issued"], listing(figures["issued_by_kind"]))
    line("  completed", figures["operations_completed"])
    line("  refused as expected", figures["operations_refused_as_expected"], listing(figures["refused_by_code"]))
    line("  unexpected answers", figures["operations_unexpected"], "; ".join(figures["unexpected"][:3]))
    line("hot calls", figures["hot_calls"], f"failed: {listing(figures['hot_call_failures']) or 'none'}")
    line("faults injected", figures["faults"], listing(figures["faults_by_kind"]))
    restarts = figures["operator_restart_seconds"]
    line("operator kills", figures["operator_kills"],
         f"back to acting in {statistics.mean(restarts):.2f} s on average" if restarts else "")
    line("scale-up promises", figures["scale_up_promises"], f"started {figures['promises_started']}, failed "
         f"{figures['promises_failed']}, cancelled {figures['promises_cancelled']}")
    line("lost (must be 0)", figures["lost"], f"{figures['lost_across_a_kill']} across an operator kill; "
         + "; ".join(figures["lost_detail"][:2]))
    line("duplicate Jobs (must be 0)", figures["duplicate_jobs"],
         f"of {figures['jobs_created']} Jobs created; " + "; ".join(figures["duplicate_detail"][:3]))
    line("max target overshoot (must be 0)", figures["max_target_overshoot"],
         "; ".join(figures["overshoot_detail"][:3]))
    line("converged after the faults", f"{figures['convergence_seconds_after_faults']:.2f} s",
         "" if figures["converged"] else "NOT CONVERGED")
    line("invariant violations", figures["invariant_violations"], "; ".join(figures["violation_detail"][:3]))
    line("watches connected at each drop", "", figures["watches_connected_at_drops"])
    line("simulated Job run time", "", f"{figures['job_run_seconds']} (0.2 s when the simulator keeps up)")
    line("RSS (MiB)", f"{figures['rss_growth_mib']:+.1f}", f"start {figures['rss_start_mib']:.1f}, end "
         f"{figures['rss_end_mib']:.1f}, peak {figures['rss_peak_mib']:.1f}")
    print("verdict: " + ("PASS" if figures["passed"] else "FAIL: " + "; ".join(figures["problems"])), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="chaos soak of the whole operator against the fake API")
    parser.add_argument("--machines", type=int, default=SoakConfig.machines, help="machines (default 1000)")
    parser.add_argument("--groups", type=int, default=0, help="groups (default one per 50 machines)")
    parser.add_argument("--duration", type=float, default=SoakConfig.duration, help="seconds of chaos (default 120)")
    parser.add_argument("--seed", type=int, default=SoakConfig.seed, help="random seed (default 1)")
    parser.add_argument("--rate", type=float, default=SoakConfig.rate,
                        help="CA-like steps per second, each one look and at most one change (default 6)")
    parser.add_argument("--kills", type=int, default=-1, help="operator kills (default one per 40 s, at least one)")
    parser.add_argument("--converge-timeout", type=float, default=SoakConfig.converge_timeout,
                        help="seconds to wait for convergence after the faults stop (default 120)")
    parser.add_argument("--log-level", default="ERROR", help="log level of both processes (default ERROR)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    arguments = parser.parse_args(argv)
    config = SoakConfig(
        machines=arguments.machines, groups=arguments.groups, duration=arguments.duration, seed=arguments.seed,
        rate=arguments.rate, kills=arguments.kills, converge_timeout=arguments.converge_timeout,
        log_level=arguments.log_level.upper(),
    )
    logging.basicConfig(level=config.log_level, format="operator %(levelname)s %(name)s: %(message)s")
    figures = soak(config)
    print_figures(figures)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
