"""The NodeActor shell: derive on configure, one `step` per event, effects out, state reports to its group.

Each test runs one NodeActor for real with a stand-in actor playing its group and its Supervisor (recording what
the node tells them), the recording effect port, and a clock the test moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from thespian.actors import ActorExitRequest

from actors import metrics, wiring
from actors.base import ShellActor
from actors.fsm import effects as fx
from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation
from actors.fsm.events import DrainFinished, NodeReady, PowerOffRequested, PowerOnRequested
from actors.messages import (
    ConfigureMachine,
    DrainCompleted,
    EffectFailed,
    IntentStored,
    MachineEvent,
    MachineReconfigured,
    MachineStateChanged,
    MachineStatusWritten,
)
from actors.node_actor import NodeActor
from actors.read_model import ReadModel
from actors.runtime import ActorRuntime
from actors.ticker_actor import Tick, TimerDue
from schemas import labels
from schemas.group import GroupSpec
from schemas.node import Node, NodeState, NodeStatus, Operation, OperationKind, PowerPolicy
from tests.support.actor_fakes import SNAPSHOT, START, WAIT, FakeClock, FakeEffectPort, make_node

STARTUP, SHUTDOWN = OperationKind.STARTUP, OperationKind.SHUTDOWN
SPEC = GroupSpec(max_size=5, boot_timeout="10m")


@dataclass(frozen=True)
class Deliver:
    """Make the stand-in send `message` to `target`, so the target sees the stand-in as its sender."""

    target: Any
    message: object


@dataclass(frozen=True)
class GetHeard:
    request_id: str


@dataclass(frozen=True)
class Heard:
    request_id: str
    reports: tuple[MachineStateChanged, ...]
    written: tuple[NodeStatus, ...]
    stored: tuple[IntentStored, ...]


class GroupAndSupervisorStandIn(ShellActor):
    """Plays the node's group (state reports) and its Supervisor (written statuses), recording both."""

    actor_kind = "test-stand-in"

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[MachineStateChanged] = []
        self.written: list[NodeStatus] = []
        self.stored: list[IntentStored] = []

    def receiveMsg_Deliver(self, message: Deliver, sender: Any) -> None:
        self.send(message.target, message.message)

    def receiveMsg_MachineStateChanged(self, message: MachineStateChanged, sender: Any) -> None:
        self.reports.append(message)

    def receiveMsg_MachineStatusWritten(self, message: MachineStatusWritten, sender: Any) -> None:
        self.written.append(message.status)

    def receiveMsg_IntentStored(self, message: IntentStored, sender: Any) -> None:
        self.stored.append(message)

    def receiveMsg_GetHeard(self, message: GetHeard, sender: Any) -> None:
        self.send(sender, Heard(message.request_id, tuple(self.reports), tuple(self.written), tuple(self.stored)))


@dataclass
class OneMachine:
    runtime: ActorRuntime
    port: FakeEffectPort
    clock: FakeClock
    wiring_key: str
    stand_in: Any
    group_id: str
    node: Any = None
    sequence: int = field(default=0)

    def configure(
        self,
        node: Node,
        jobs: tuple[JobObservation, ...] = (),
        kube_node: KubeNodeObservation | None = None,
        spec: GroupSpec = SPEC,
    ) -> None:
        self.node = self.runtime.create_actor(NodeActor).result(WAIT)
        configure = ConfigureMachine(self.wiring_key, node, self.group_id, spec, self.stand_in, jobs, kube_node)
        self.runtime.tell(self.stand_in, Deliver(self.node, configure))
        self.heard()  # the configuration has been handled once the stand-in answers

    def command(self, event: Any, confirm_stored: bool = False) -> None:
        """A command from the group (the stand-in): numbered, like the real group numbers them."""
        self.sequence += 1
        self.runtime.tell(self.stand_in, Deliver(self.node, MachineEvent(event, self.sequence, confirm_stored)))

    def tell(self, message: object) -> None:
        self.runtime.tell(self.node, message)

    def heard(self) -> Heard:
        return self.runtime.ask(self.stand_in, GetHeard(self.runtime.new_request_id()), WAIT, Heard).result(WAIT)

    def last(self) -> MachineStateChanged:
        return self.heard().reports[-1]

    def state(self) -> NodeState:
        return self.last().view.state


@pytest.fixture
def machine(runtime: ActorRuntime, request: pytest.FixtureRequest) -> Iterator[OneMachine]:
    port, clock = FakeEffectPort(), FakeClock()
    port.runtime = runtime
    key = wiring.register(wiring.Wiring(ReadModel(), port, clock, runtime.ticker))
    stand_in = runtime.create_actor(GroupAndSupervisorStandIn).result(WAIT)
    try:
        yield OneMachine(runtime, port, clock, key, stand_in, f"lab/{request.node.name[:40]}")
    finally:
        wiring.unregister(key)


def booting_status(clock: FakeClock, attempt: int = 1) -> NodeStatus:
    operation = Operation(kind=STARTUP, attempt=attempt, job_name=f"m1-startup-{attempt}", started=clock())
    return NodeStatus(
        state=NodeState.STARTING_UP, since=clock(), attempts=attempt, operation_tries=1, operation=operation
    )


def test_configure_derives_from_the_cluster_and_adopts_the_running_job(machine: OneMachine) -> None:
    running = JobObservation("m1-startup-1", STARTUP, 1, JobPhase.ACTIVE, created=START)
    machine.configure(make_node("m1", status=booting_status(machine.clock)), jobs=(running,))
    report = machine.last()
    assert report.view.state is NodeState.STARTING_UP
    assert report.snapshot.instance is not None
    assert machine.port.created_jobs() == []


def test_every_transition_is_one_ordered_batch_and_a_report(machine: OneMachine) -> None:
    machine.configure(make_node("m1", price="0.25", priority=2))
    machine.port.clear()
    machine.command(PowerOnRequested())
    heard = machine.heard()
    # A command's status is written first (write-ahead), then its effects.
    assert [type(effect) for effect in machine.port.effects()] == [fx.PatchStatus, fx.CreateJob, fx.RecordEvent]
    assert len(machine.port.batches) == 1
    report = heard.reports[-1]
    assert (report.view.state, report.view.priority, str(report.view.hourly_price)) == (
        NodeState.STARTING_UP, 2, "0.25"
    )
    assert report.commands_handled == 1
    assert heard.written[-1].state is NodeState.STARTING_UP  # the Supervisor knows what was written


def test_a_refused_command_keeps_the_state_and_tells_the_group_at_once(
    machine: OneMachine, caplog: pytest.LogCaptureFixture
) -> None:
    cooling = NodeStatus(
        state=NodeState.SHUTDOWN, since=machine.clock(), consecutive_failures=1,
        cooldown_until=machine.clock() + timedelta(minutes=5),
    )
    machine.configure(make_node("m1", status=cooling))
    reports_before = len(machine.heard().reports)
    machine.port.clear()
    with caplog.at_level(logging.WARNING, logger="actors.node_actor"):
        machine.command(PowerOnRequested())
        heard = machine.heard()
    assert len(heard.reports) == reports_before + 1  # sent although nothing changed, so the mirror corrects
    assert (heard.reports[-1].view.state, heard.reports[-1].commands_handled) == (NodeState.SHUTDOWN, 1)
    assert machine.port.effects() == []
    assert any("cooldown" in record.getMessage() for record in caplog.records)


def test_a_command_to_confirm_is_confirmed_once_its_status_is_stored(machine: OneMachine) -> None:
    machine.configure(make_node("m1"))
    machine.port.hold_stored_notices()  # the API has not taken the status write yet
    machine.command(PowerOnRequested(), confirm_stored=True)
    assert machine.heard().stored == ()
    assert machine.port.batches[-1].stored_notice is not None

    assert machine.port.release_stored_notices() == 1

    assert machine.heard().stored == (IntentStored("m1", 1),)


@pytest.mark.parametrize(
    ("status", "event"),
    [
        pytest.param(
            NodeStatus(state=NodeState.SHUTDOWN, consecutive_failures=1, cooldown_until=START + timedelta(minutes=5)),
            PowerOnRequested(), id="refused-power-on-during-cooldown",
        ),
        pytest.param(
            NodeStatus(state=NodeState.SHUTDOWN), PowerOffRequested(), id="power-off-of-a-machine-that-is-off"
        ),
    ],
)
def test_a_command_to_confirm_that_stores_nothing_is_confirmed_at_once(
    machine: OneMachine, status: NodeStatus, event: Any
) -> None:
    machine.configure(make_node("m1", status=status))
    machine.port.clear()
    machine.port.hold_stored_notices()  # would hold a write back, if there were one

    machine.command(event, confirm_stored=True)

    assert machine.heard().stored == (IntentStored("m1", 1),)
    assert [batch for batch in machine.port.batches if batch.stored_notice is not None] == []


@pytest.mark.parametrize(
    ("permanent", "state"),
    [
        pytest.param(True, NodeState.BOOT_FAILED, id="refused-job-is-a-failed-boot"),
        pytest.param(False, NodeState.STARTING_UP, id="retries-exhausted-leaves-it-to-the-boot-timer"),
    ],
)
def test_a_startup_job_that_cannot_be_created(machine: OneMachine, permanent: bool, state: NodeState) -> None:
    machine.configure(make_node("m1"))
    machine.command(PowerOnRequested())
    machine.heard()
    machine.tell(EffectFailed(fx.CreateJob(STARTUP, 1, "m1-startup-1"), "admission webhook said no", permanent))
    assert machine.state() is state


@pytest.mark.parametrize(
    ("outcome", "state", "effect"),
    [
        pytest.param(DrainCompleted(True, "evicted 3 pods"), NodeState.SHUTTING_DOWN,
                     fx.CreateJob(SHUTDOWN, 1, "m1-shutdown-1"), id="drained-then-powered-off"),
        pytest.param(DrainCompleted(False, "PDB blocks"), NodeState.READY, fx.Uncordon(), id="drain-failed"),
        pytest.param(EffectFailed(fx.Drain(), "forbidden", True), NodeState.READY, fx.Uncordon(),
                     id="drain-not-even-started"),
    ],
)
def test_drain_outcomes(machine: OneMachine, outcome: object, state: NodeState, effect: fx.Effect) -> None:
    machine.configure(make_node("m1"), kube_node=KubeNodeObservation(True, "k3s://m1", SNAPSHOT))
    machine.command(PowerOffRequested(drain=True))
    machine.heard()
    machine.port.clear()
    machine.tell(outcome)
    assert machine.state() is state
    assert effect in machine.port.effects()


def test_a_refused_cordon_shows_as_a_condition_and_a_warning(machine: OneMachine) -> None:
    machine.configure(make_node("m1"), kube_node=KubeNodeObservation(True, "k3s://m1", SNAPSHOT))
    machine.command(PowerOffRequested(drain=True))
    machine.heard()
    machine.port.clear()

    machine.tell(EffectFailed(fx.Cordon(), 'nodes "m1" is forbidden', permanent=True))
    machine.heard()

    message = 'Cordon was permanently refused by the Kubernetes API: nodes "m1" is forbidden'
    assert [type(effect) for effect in machine.port.effects()] == [fx.RecordEvent, fx.PatchStatus]
    assert machine.port.events() == [fx.RecordEvent(fx.EventType.WARNING, "WriteFailed", message)]
    written = [effect.status for effect in machine.port.effects() if isinstance(effect, fx.PatchStatus)][-1]
    condition = next(c for c in written.conditions if c.type == labels.CONDITION_WRITE_FAILED)
    assert (condition.status, condition.reason, condition.message) == ("True", "Cordon", message)
    assert written.state is NodeState.SHUTTING_DOWN  # the drain goes on


def test_status_and_event_writes_that_keep_failing_do_not_loop(machine: OneMachine) -> None:
    machine.configure(make_node("m1"), kube_node=KubeNodeObservation(True, "k3s://m1", SNAPSHOT))
    # An API that refuses every status, Event and cordon write, answering like the writer does.
    machine.port.respond(
        lambda batch, effect: EffectFailed(effect, "403 Forbidden", True)
        if isinstance(effect, fx.PatchStatus | fx.RecordEvent | fx.Cordon)
        else None
    )
    machine.port.clear()
    machine.command(PowerOffRequested(drain=True))
    machine.heard()
    machine.heard()  # let every reply (and any reply to a reply) be delivered

    # The power-off batch, then one report of the refused cordon; its own failed writes stay in the log.
    assert [[type(effect) for effect in batch.effects] for batch in machine.port.batches] == [
        [fx.PatchStatus, fx.Cordon, fx.Drain, fx.RecordEvent],
        [fx.RecordEvent, fx.PatchStatus],
    ]


def test_timers_go_through_the_ticker_and_stale_ones_are_ignored(machine: OneMachine) -> None:
    machine.configure(make_node("m1"))
    machine.command(PowerOnRequested())
    machine.heard()
    machine.clock.advance(timedelta(minutes=10, seconds=1).total_seconds())
    machine.tell(TimerDue("m1-startup-0:boot-timeout", "boot-timeout"))  # an older operation's timer
    assert machine.state() is NodeState.STARTING_UP

    machine.runtime.tell(machine.runtime.ticker, Tick(time.monotonic() + 10_000))
    report = machine.last()
    assert report.view.state is NodeState.BOOT_FAILED
    assert report.snapshot.instance is not None
    assert report.snapshot.instance.error is not None


def test_an_unchanged_observation_sends_no_report(machine: OneMachine) -> None:
    machine.configure(make_node("m1"), kube_node=KubeNodeObservation(True, "k3s://m1", SNAPSHOT))
    reports = len(machine.heard().reports)
    machine.tell(MachineEvent(NodeReady("k3s://m1", SNAPSHOT)))
    machine.tell(MachineEvent(DrainFinished(True)))  # ignored in Ready
    assert len(machine.heard().reports) == reports


def test_the_reset_annotation_releases_a_quarantined_machine_once(machine: OneMachine) -> None:
    quarantined = NodeStatus(state=NodeState.QUARANTINED, since=machine.clock(), consecutive_failures=3)
    machine.configure(make_node("m1", status=quarantined))
    assert machine.state() is NodeState.QUARANTINED
    reset = make_node("m1", annotations={labels.RESET_ANNOTATION: "2026-03-01"})
    for _ in range(2):
        machine.tell(MachineReconfigured(reset, machine.group_id, SPEC, machine.stand_in))
    assert machine.state() is NodeState.SHUTDOWN
    assert [event.reason for event in machine.port.events()] == ["Reset"]


def test_a_new_power_policy_arrives_as_a_configuration_change(machine: OneMachine) -> None:
    machine.configure(make_node("m1"), kube_node=KubeNodeObservation(True, "k3s://m1", SNAPSHOT))
    off = make_node("m1", power_policy=PowerPolicy.OFF)
    machine.tell(MachineReconfigured(off, machine.group_id, SPEC, machine.stand_in))
    assert machine.state() is NodeState.SHUTTING_DOWN
    assert fx.Drain() in machine.port.effects()


def test_transitions_are_counted_per_group(machine: OneMachine) -> None:
    machine.configure(make_node("m1"))
    machine.command(PowerOnRequested())
    machine.heard()
    sample = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_node_transitions_total",
        {"group": machine.group_id, "from_state": "Shutdown", "to_state": "StartingUp"},
    )
    state = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_node_state", {"group": machine.group_id, "node": "m1", "state": "StartingUp"}
    )
    left_behind = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_node_state", {"group": machine.group_id, "node": "m1", "state": "Shutdown"}
    )
    # The machine's one state series moved to the new state; the old state's series is gone, not zeroed.
    assert (sample, state, left_behind) == (1.0, 1.0, None)


def test_a_retired_machine_cancels_its_timers(machine: OneMachine) -> None:
    machine.configure(make_node("m1"))
    machine.command(PowerOnRequested())
    machine.heard()
    assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_pending_timers") == 1.0
    machine.tell(ActorExitRequest())
    machine.heard()
    assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_pending_timers") == 0.0


def _histogram(name: str, group: str) -> tuple[float | None, float | None]:
    labels = {"group": group}
    return (
        metrics.REGISTRY.get_sample_value(f"homelab_autoscaler_{name}_count", labels),
        metrics.REGISTRY.get_sample_value(f"homelab_autoscaler_{name}_sum", labels),
    )


def test_boot_durations_go_to_the_group_histogram_including_one_finished_while_the_operator_was_down(
    machine: OneMachine,
) -> None:
    # Restarted while booting, and the Node is already Ready: derive completes the boot and it is observed.
    status = booting_status(machine.clock)
    machine.clock.advance(80)
    machine.configure(make_node("m1", status=status), kube_node=KubeNodeObservation(True, "k3s://m1", SNAPSHOT))
    assert machine.state() is NodeState.READY
    assert _histogram("boot_seconds", machine.group_id) == (1.0, 80.0)

    machine.command(PowerOnRequested())  # refused (already Ready): nothing observed
    machine.heard()
    assert _histogram("boot_seconds", machine.group_id) == (1.0, 80.0)


def test_a_failed_exercise_counts_as_a_boot_failure_and_an_exercise_outcome(machine: OneMachine) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, {"group": machine.group_id, **labels}) or 0.0

    failures_before = sample("homelab_autoscaler_boot_failures_total")
    exercises_before = sample("homelab_autoscaler_exercises_total", outcome="Failed")
    machine.configure(make_node("m1"))
    machine.command(PowerOnRequested(exercise=True))
    machine.heard()
    machine.clock.advance(timedelta(minutes=10, seconds=1).total_seconds())
    machine.runtime.tell(machine.runtime.ticker, Tick(time.monotonic() + 10_000))  # the boot times out

    report = machine.last()
    assert report.view.state is NodeState.SHUTDOWN  # released at once: CA never saw the instance
    assert report.view.cooldown_until is not None
    assert sample("homelab_autoscaler_boot_failures_total") == failures_before + 1
    assert sample("homelab_autoscaler_exercises_total", outcome="Failed") == exercises_before + 1
