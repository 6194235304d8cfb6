"""Fakes for the actor tests (and the gateway fuzzer and bench/actors.py): a recording effect port, a hand-moved clock,
resource builders and a small lab.

The fakes stand in for *our* seams only (the `EffectPort`, the clock), never for Thespian: the actors under test
run for real on simpleSystemBase through `ActorRuntime`, and tests feed them observations exactly as the watchers
will (`MachineObserved`, `JobObserved`, `KubeNodeObserved`, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from actors import wiring
from actors.effects_port import AnyBatch, EffectBatch, GroupEventBatch, GroupStatusBatch, StoredNotice
from actors.fsm import effects as fx
from actors.messages import (
    DecreaseTargetSize,
    DeleteNodes,
    IncreaseSize,
    InventoryListed,
    JobObserved,
    KubeNodeObserved,
    LookupMachine,
    MachineFound,
    MutationReply,
    NodeIdentity,
    Ping,
    Pong,
)
from actors.power_port import PowerPort
from actors.read_model import GroupSnapshot, MachineSnapshot, ReadModel, group_id
from actors.runtime import ActorRuntime
from actors.supervisor_actor import start_supervisor
from schemas import labels
from schemas.common import Metadata
from schemas.group import Group, GroupSpec
from schemas.node import JobTemplate, Node, NodeSnapshot, NodeSpec, NodeStatus, OperationKind, PowerPolicy, Pricing
from schemas.power import PowerSpec

NAMESPACE = "lab"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WAIT = 10.0

Responder = Callable[[EffectBatch, fx.Effect], object | None]


class FakeClock:
    """A clock that moves only when the test says so (thread-safe: actors read it on the pump thread)."""

    def __init__(self, start: datetime = START) -> None:
        self._lock = threading.Lock()
        self._now = start

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class FakeEffectPort:
    """Records every batch submitted, in order; responders can answer effects the way an adapter would.

    A responder gets (batch, effect) and returns a message for the batch's `reply_to` (or None); the message is
    delivered through the runtime as a later work item, like an adapter thread reporting an outcome.

    A batch's `stored_notice` is told at once, as if every status write were stored instantly, unless the test
    holds notices (an API that is slow, or down) with `hold_stored_notices`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: list[EffectBatch] = []
        self._group_statuses: list[GroupStatusBatch] = []
        self._group_events: list[GroupEventBatch] = []
        self._responders: list[Responder] = []
        self._holding_notices = False
        self._held_notices: list[StoredNotice] = []
        self.runtime: ActorRuntime | None = None

    def submit(self, batch: AnyBatch) -> None:
        with self._lock:
            if isinstance(batch, GroupStatusBatch):
                self._group_statuses.append(batch)
                return
            if isinstance(batch, GroupEventBatch):
                self._group_events.append(batch)
                return
            self._batches.append(batch)
            responders = list(self._responders)
            notice = batch.stored_notice
            if notice is not None and self._holding_notices:
                self._held_notices.append(notice)
                notice = None
        replies = [reply for effect in batch.effects for respond in responders if (reply := respond(batch, effect))]
        for reply in replies:
            self._tell(batch.reply_to, reply)
        if notice is not None:
            self._tell(notice.recipient, notice.message)

    def hold_stored_notices(self) -> None:
        """From now on keep status-stored notices back, as if the API had not taken the writes yet."""
        with self._lock:
            self._holding_notices = True

    def release_stored_notices(self) -> int:
        """Deliver the notices held back (the writes are stored now) and stop holding; how many there were."""
        with self._lock:
            held, self._held_notices = self._held_notices, []
            self._holding_notices = False
        for notice in held:
            self._tell(notice.recipient, notice.message)
        return len(held)

    def _tell(self, recipient: Any, message: object) -> None:
        assert self.runtime is not None, "FakeEffectPort.runtime must be set to deliver replies and notices"
        self.runtime.tell(recipient, message)

    def respond(self, responder: Responder) -> None:
        with self._lock:
            self._responders.append(responder)

    @property
    def batches(self) -> list[EffectBatch]:
        with self._lock:
            return list(self._batches)

    @property
    def group_statuses(self) -> list[GroupStatusBatch]:
        with self._lock:
            return list(self._group_statuses)

    def group_events(self, group: str | None = None) -> list[fx.RecordEvent]:
        """The Events recorded on Group resources (on the Group named `group`, when given), in order."""
        with self._lock:
            return [batch.event for batch in self._group_events if group is None or batch.name == group]

    def effects(self, machine: str | None = None) -> list[fx.Effect]:
        """Every effect submitted (for the machine named `machine`, when given), in submission order."""
        return [
            effect for batch in self.batches if machine is None or batch.machine.name == machine
            for effect in batch.effects
        ]

    def effect_log(self) -> list[tuple[str, fx.Effect]]:
        """(machine name, effect) for every effect submitted, in submission order."""
        return [(batch.machine.name, effect) for batch in self.batches for effect in batch.effects]

    def created_jobs(self, machine: str | None = None, kind: OperationKind | None = None) -> list[fx.CreateJob]:
        return [
            effect for effect in self.effects(machine)
            if isinstance(effect, fx.CreateJob) and (kind is None or effect.kind is kind)
        ]

    def machines_with_jobs(self, kind: OperationKind) -> list[str]:
        return sorted({name for name, effect in self.effect_log() if isinstance(effect, fx.CreateJob)
                       and effect.kind is kind})

    def events(self, machine: str | None = None) -> list[fx.RecordEvent]:
        return [effect for effect in self.effects(machine) if isinstance(effect, fx.RecordEvent)]

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._group_statuses.clear()
            self._group_events.clear()


# --- resource builders ---------------------------------------------------------------------------------------------

TEMPLATE = JobTemplate(image="busybox:1.36")


def make_group(name: str = "workers", namespace: str = NAMESPACE, max_size: int = 10, **spec: Any) -> Group:
    return Group(
        metadata=Metadata(name=name, namespace=namespace, uid=f"uid-group-{name}"),
        spec=GroupSpec.model_validate({"max_size": max_size, **spec}),
    )


def make_node(
    name: str,
    group: str | None = "workers",
    namespace: str = NAMESPACE,
    *,
    priority: int = 0,
    price: str | None = None,
    watts: int | None = None,
    power_policy: PowerPolicy = PowerPolicy.AUTO,
    status: NodeStatus | None = None,
    annotations: dict[str, str] | None = None,
    kubernetes_node_name: str | None = None,
    provider_id: str | None = None,
    power: PowerSpec | None = None,
) -> Node:
    """A Node resource powered by Jobs, or natively when `power` is given."""
    powering: dict[str, Any] = {"power": power} if power is not None else {
        "startup_job": TEMPLATE, "shutdown_job": TEMPLATE
    }
    metadata_labels = {labels.GROUP_LABEL: group} if group else {}
    return Node(
        metadata=Metadata(
            name=name, namespace=namespace, uid=f"uid-{name}", labels=metadata_labels, annotations=annotations or {}
        ),
        spec=NodeSpec.model_validate({
            "kubernetes_node_name": kubernetes_node_name,
            "providerID": provider_id,
            "power_policy": power_policy,
            "priority": priority,
            "pricing": Pricing(hourly_price=price, power_watts=watts),
            **powering,
        }),
        status=status or NodeStatus(),
    )


SNAPSHOT = NodeSnapshot(
    labels={"kubernetes.io/hostname": "x", "kubernetes.io/arch": "amd64"},
    capacity={"cpu": "8", "memory": "32Gi", "pods": "110"},
)


def kube_node(
    name: str, ready: bool = True, provider_id: str = "", snapshot: NodeSnapshot = SNAPSHOT
) -> KubeNodeObserved:
    return KubeNodeObserved(name=name, ready=ready, provider_id=provider_id, snapshot=snapshot)


def job(
    machine: str,
    kind: OperationKind = OperationKind.STARTUP,
    attempt: int = 1,
    *,
    group: str = "workers",
    namespace: str = NAMESPACE,
    succeeded: bool = False,
    failed: bool = False,
    name: str | None = None,
    created: datetime | None = None,
    message: str = "",
) -> JobObserved:
    job_name = name or f"{machine}-{kind.value}-{attempt}"
    return JobObserved(
        namespace=namespace, name=job_name, machine=machine, group=group, kind=kind, attempt=attempt,
        active=not (succeeded or failed), succeeded=succeeded, failed=failed, message=message, created=created,
    )


def identity(snapshot: MachineSnapshot) -> NodeIdentity:
    """How CA names a machine it asks to delete: the registered Node (name + providerID)."""
    return NodeIdentity(snapshot.kubernetes_node_name, snapshot.provider_id)


def stand_in(snapshot: MachineSnapshot) -> NodeIdentity:
    """CA's stand-in for an instance without a registered Node: name == provider id == instance id."""
    return NodeIdentity(snapshot.provider_id, snapshot.provider_id)


# --- the lab: a Supervisor with the fakes, driven like the watchers and the gateway would ------------------------


@dataclass
class Lab:
    runtime: ActorRuntime
    supervisor: Any
    read_model: ReadModel
    port: FakeEffectPort
    clock: FakeClock
    wiring_key: str
    namespace: str = NAMESPACE

    def tell(self, *messages: object) -> None:
        for message in messages:
            self.runtime.tell(self.supervisor, message)

    def sync(self) -> Pong:
        """Returns once everything told before has been handled (the pump handles work in order)."""
        return self.runtime.ask(self.supervisor, Ping(self.runtime.new_request_id()), WAIT, Pong).result(WAIT)

    def list_inventory(
        self,
        groups: tuple[Group, ...],
        machines: tuple[Node, ...],
        kube_nodes: tuple[KubeNodeObserved, ...] = (),
        jobs: tuple[JobObserved, ...] = (),
    ) -> None:
        self.tell(InventoryListed(groups, machines, kube_nodes, jobs))
        self.sync()

    def ask(self, request: IncreaseSize | DeleteNodes | DecreaseTargetSize) -> MutationReply:
        return self.runtime.ask(self.supervisor, request, WAIT, MutationReply).result(WAIT)

    def increase(self, group: str, delta: int) -> MutationReply:
        return self.ask(IncreaseSize(self.runtime.new_request_id(), self.group_id(group), delta))

    def delete(self, group: str, *nodes: NodeIdentity) -> MutationReply:
        return self.ask(DeleteNodes(self.runtime.new_request_id(), self.group_id(group), nodes))

    def decrease(self, group: str, delta: int) -> MutationReply:
        return self.ask(DecreaseTargetSize(self.runtime.new_request_id(), self.group_id(group), delta))

    def lookup(self, name: str) -> MachineFound:
        request = LookupMachine(self.runtime.new_request_id(), self.namespace, name)
        return self.runtime.ask(self.supervisor, request, WAIT, MachineFound).result(WAIT)

    def group_id(self, group: str) -> str:
        return group_id(self.namespace, group)

    def group(self, group: str = "workers") -> GroupSnapshot:
        snapshot = self.read_model.group(self.group_id(group))
        assert snapshot is not None, f"group {group} is not in the read model"
        return snapshot

    def machine(self, name: str, group: str = "workers") -> MachineSnapshot:
        return next(machine for machine in self.group(group).machines if machine.name == name)

    def states(self, group: str = "workers") -> dict[str, str]:
        return {machine.name: machine.state.value for machine in self.group(group).machines}


@contextmanager
def start_lab(
    runtime: ActorRuntime,
    clock: FakeClock | None = None,
    stored_wait_seconds: float = WAIT / 2,
    power: PowerPort | None = None,
) -> Iterator[Lab]:
    """A configured Supervisor in `runtime` with a fresh read model, a recording port and a fake clock.

    `stored_wait_seconds`: how long groups hold a mutation's answer for status writes the test holds back.
    """
    port = FakeEffectPort()
    port.runtime = runtime
    read_model = ReadModel()
    chosen_clock = clock or FakeClock()
    key = wiring.register(
        wiring.Wiring(read_model, port, chosen_clock, runtime.ticker, stored_wait_seconds, power=power)
    )
    try:
        supervisor = start_supervisor(runtime, key, timeout=WAIT)
        yield Lab(runtime, supervisor, read_model, port, chosen_clock, key)
    finally:
        wiring.unregister(key)
