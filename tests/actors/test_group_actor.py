"""The GroupActor: CA's three mutations change the target synchronously, all or nothing, never double-booking.

Mutations are asked through the Supervisor as the gateway does; what the tests check is what CA would see (the
read model) and what the Kubernetes writer would be told to do (the fake port). The pure decisions the actor
delegates to (`plan_*`, `template_source`) are tables in tests/unit/test_group_planning.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from actors import metrics, wiring
from actors.base import ShellActor
from actors.fsm import effects as fx
from actors.fsm.group import InstanceState
from actors.messages import (
    DecreaseTargetSize,
    DeleteNodes,
    ErrorKind,
    GroupObserved,
    GroupRemoved,
    IncreaseSize,
    MutationRefusal,
    MutationReply,
    NodeIdentity,
)
from actors.runtime import ActorRuntime
from actors.ticker_actor import Tick
from schemas.group import Exercise, GroupStatus, NodeTemplate, Schedule, Weekday
from schemas.node import NodeState, NodeStatus, OperationKind, PowerPolicy
from tests.support.actor_fakes import (
    NAMESPACE,
    START,
    WAIT,
    Lab,
    identity,
    job,
    kube_node,
    make_group,
    make_node,
    stand_in,
    start_lab,
)

STARTUP, SHUTDOWN = OperationKind.STARTUP, OperationKind.SHUTDOWN


@pytest.fixture
def lab(runtime: ActorRuntime) -> Iterator[Lab]:
    with start_lab(runtime) as running:
        yield running


def booted(lab: Lab, *names: str) -> None:
    """The machines' startup Jobs succeeded and their Kubernetes Nodes are Ready."""
    for name in names:
        lab.tell(job(name, succeeded=True), kube_node(name))
    lab.sync()


# --- IncreaseSize ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeIncrease:
    """Ask `supervisor` for an IncreaseSize and report what the read model held when the reply arrived."""

    request_id: str
    supervisor: Any
    wiring_key: str
    increase: IncreaseSize


@dataclass(frozen=True)
class ProbeResult:
    request_id: str
    error: MutationRefusal | None
    target_at_reply: int
    creating_at_reply: int


class ReplyProbe(ShellActor):
    """Stands where the gateway stands, but reads the read model *inside* the reply's delivery.

    On simpleSystemBase the group's commands to its machines are queued before its reply, and the machines'
    reports after it, so what this probe sees is exactly what the group published before replying.
    """

    actor_kind = "test-probe"

    def __init__(self) -> None:
        super().__init__()
        self.pending: tuple[Any, ProbeIncrease] | None = None

    def receiveMsg_ProbeIncrease(self, message: ProbeIncrease, sender: Any) -> None:
        self.pending = (sender, message)
        self.send(message.supervisor, message.increase)

    def receiveMsg_MutationReply(self, message: MutationReply, sender: Any) -> None:
        assert self.pending is not None
        asker, probe = self.pending
        snapshot = wiring.lookup(probe.wiring_key).read_model.group(probe.increase.group_id)
        assert snapshot is not None
        creating = sum(1 for instance in snapshot.instances if instance.state is InstanceState.CREATING)
        self.send(asker, ProbeResult(probe.request_id, message.error, snapshot.target_size, creating))


def test_increase_powers_on_the_best_machines_and_publishes_before_replying(lab: Lab) -> None:
    machines = (
        make_node("cheap", price="0.10"),
        make_node("pricey", price="0.90"),
        make_node("preferred", priority=5, price="2.00"),
        make_node("frugal", price="0.10", watts=40),
        make_node("unknown-price"),
    )
    lab.list_inventory((make_group(),), machines)
    probe = lab.runtime.create_actor(ReplyProbe).result(WAIT)
    increase = IncreaseSize(lab.runtime.new_request_id(), lab.group_id("workers"), 3)
    message = ProbeIncrease(lab.runtime.new_request_id(), lab.supervisor, lab.wiring_key, increase)

    result = lab.runtime.ask(probe, message, WAIT, ProbeResult).result(WAIT)

    assert (result.error, result.target_at_reply, result.creating_at_reply) == (None, 3, 3)
    assert lab.port.machines_with_jobs(STARTUP) == ["cheap", "frugal", "preferred"]
    instances = {instance.id: instance.state for instance in lab.group().instances}
    assert instances == {f"homelab://lab/{name}": InstanceState.CREATING for name in ("cheap", "frugal", "preferred")}


def test_an_increase_beyond_the_eligible_machines_changes_nothing(lab: Lab) -> None:
    lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(3)))
    assert lab.increase("workers", 2).error is None
    before, effects_before = lab.group(), lab.port.effects()

    reply = lab.increase("workers", 2)

    assert reply.error is not None
    assert reply.error.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert "1 eligible" in reply.error.message
    assert lab.group() is before
    assert lab.port.effects() == effects_before


@pytest.mark.parametrize(
    ("operation", "delta", "kind", "words"),
    [
        pytest.param("increase", 0, ErrorKind.INVALID_ARGUMENT, "positive delta", id="increase-zero"),
        pytest.param("increase", -1, ErrorKind.INVALID_ARGUMENT, "positive delta", id="increase-negative"),
        pytest.param("increase", 4, ErrorKind.INVALID_ARGUMENT, "exceed maxSize 3", id="increase-beyond-max"),
        pytest.param("decrease", 1, ErrorKind.INVALID_ARGUMENT, "negative delta", id="decrease-positive"),
        pytest.param("decrease", -1, ErrorKind.FAILED_PRECONDITION, "cannot cancel 1", id="decrease-nothing-booting"),
    ],
)
def test_bad_size_changes_are_refused_with_a_reason(
    lab: Lab, operation: str, delta: int, kind: ErrorKind, words: str
) -> None:
    lab.list_inventory((make_group(max_size=3),), tuple(make_node(f"m{index}") for index in range(5)))
    lab.port.clear()
    reply = lab.increase("workers", delta) if operation == "increase" else lab.decrease("workers", delta)
    assert reply.error is not None
    assert reply.error.kind is kind
    assert words in reply.error.message
    assert "lab/workers" in reply.error.message
    assert lab.port.effects() == []


def test_max_concurrent_boots_queues_the_rest_until_a_slot_frees(lab: Lab) -> None:
    lab.list_inventory((make_group(max_concurrent_boots=1),), tuple(make_node(f"m{index}") for index in range(3)))
    assert lab.increase("workers", 3).error is None
    assert lab.group().target_size == 3
    assert lab.port.machines_with_jobs(STARTUP) == ["m0"]

    booted(lab, "m0")
    assert lab.port.machines_with_jobs(STARTUP) == ["m0", "m1"]
    booted(lab, "m1")
    assert lab.port.machines_with_jobs(STARTUP) == ["m0", "m1", "m2"]


# --- DeleteNodes and DecreaseTargetSize ------------------------------------------------------------------------


def test_a_timed_out_boot_is_a_failed_creation_until_ca_deletes_its_stand_in(lab: Lab) -> None:
    lab.list_inventory((make_group(boot_timeout="10m"),), (make_node("m1"),))
    assert lab.increase("workers", 1).error is None

    lab.clock.advance(timedelta(minutes=10, seconds=1).total_seconds())
    lab.runtime.tell(lab.runtime.ticker, Tick(time.monotonic() + 10_000))  # the ticker's clock jumps past it
    lab.sync()

    failed = lab.machine("m1")
    assert failed.state is NodeState.BOOT_FAILED
    assert failed.instance is not None
    assert failed.instance.state is InstanceState.CREATING
    assert failed.instance.error is not None
    assert failed.instance.error.code == "BootTimedOut"
    assert lab.group().target_size == 1

    assert lab.delete("workers", stand_in(failed)).error is None
    assert lab.machine("m1").state is NodeState.SHUTDOWN
    assert (lab.group().target_size, lab.group().instances) == (0, ())


def test_delete_refuses_a_node_of_another_group_and_changes_nothing(lab: Lab) -> None:
    lab.list_inventory((make_group(), make_group("gpu")), (make_node("m1"), make_node("g1", group="gpu")))
    assert lab.increase("workers", 1).error is None
    assert lab.increase("gpu", 1).error is None
    booted(lab, "m1", "g1")
    effects_before = lab.port.effects()

    reply = lab.delete("workers", identity(lab.machine("m1")), identity(lab.machine("g1", "gpu")))

    assert reply.error is not None
    assert reply.error.kind is ErrorKind.INVALID_ARGUMENT
    assert "'g1'" in reply.error.message
    assert "lab/gpu" in reply.error.message
    assert lab.machine("m1").state is NodeState.READY
    assert lab.port.effects() == effects_before


def test_delete_of_a_node_in_no_group_is_invalid(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"),))
    reply = lab.delete("workers", NodeIdentity("control-plane", "k3s://control-plane"))
    assert reply.error is not None
    assert reply.error.kind is ErrorKind.INVALID_ARGUMENT
    assert "not a member" in reply.error.message


def test_delete_of_machines_already_off_succeeds_and_does_nothing(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"),))
    lab.port.clear()
    reply = lab.delete("workers", NodeIdentity("m1", "homelab://lab/m1"), NodeIdentity("m1", "homelab://lab/m1"))
    assert reply.error is None
    assert lab.port.effects() == []


def test_a_machine_in_maintenance_is_in_no_group_for_ca_and_cannot_be_deleted(lab: Lab) -> None:
    lab.list_inventory(
        (make_group(),),
        (make_node("m1"), make_node("kept", power_policy=PowerPolicy.MAINTENANCE)),
        kube_nodes=(kube_node("kept"),),
    )
    assert lab.read_model.machine_for(provider_id="homelab://lab/kept", node_name="kept") is None
    assert lab.group().instances == ()
    reply = lab.delete("workers", NodeIdentity("kept", "homelab://lab/kept"))
    assert reply.error is not None
    assert reply.error.kind is ErrorKind.FAILED_PRECONDITION
    assert "maintenance" in reply.error.message


def test_decrease_cancels_the_newest_unregistered_boots_only(lab: Lab) -> None:
    lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(4)))
    assert lab.increase("workers", 1).error is None  # m0
    lab.clock.advance(5)
    assert lab.increase("workers", 2).error is None  # m1, m2 (newer)
    lab.tell(kube_node("m0", ready=False))  # m0 registered: only DeleteNodes may remove it now
    lab.sync()

    assert lab.decrease("workers", -2).error is None
    assert lab.states() == {"m0": "StartingUp", "m1": "Shutdown", "m2": "Shutdown", "m3": "Shutdown"}
    refused = lab.decrease("workers", -1)
    assert refused.error is not None
    assert refused.error.kind is ErrorKind.FAILED_PRECONDITION
    assert lab.group().target_size == 1


# --- answers wait until the commands are stored ----------------------------------------------------------------


def _increase_two(lab: Lab) -> IncreaseSize:
    return IncreaseSize(lab.runtime.new_request_id(), lab.group_id("workers"), 2)


def _delete_a_ready_one(lab: Lab) -> DeleteNodes:
    assert lab.increase("workers", 1).error is None
    booted(lab, "m0")
    return DeleteNodes(lab.runtime.new_request_id(), lab.group_id("workers"), (identity(lab.machine("m0")),))


def _decrease_two_boots(lab: Lab) -> DecreaseTargetSize:
    assert lab.increase("workers", 2).error is None
    return DecreaseTargetSize(lab.runtime.new_request_id(), lab.group_id("workers"), -2)


@pytest.mark.parametrize(
    ("prepare", "machines_commanded"),
    [
        pytest.param(_increase_two, 2, id="increase"),
        pytest.param(_delete_a_ready_one, 1, id="delete-nodes"),
        pytest.param(_decrease_two_boots, 2, id="decrease-target-size"),
    ],
)
def test_a_mutation_is_answered_only_once_its_commands_are_stored(
    runtime: ActorRuntime, prepare: Callable[[Lab], IncreaseSize | DeleteNodes | DecreaseTargetSize],
    machines_commanded: int,
) -> None:
    # If CA heard "done" before the new statuses were in the API, an operator killed right then would come back
    # deriving the old states: the scale-up (or down) CA was promised would be forgotten.
    with start_lab(runtime, stored_wait_seconds=WAIT * 10) as lab:
        lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(3)))
        request = prepare(lab)
        target_before = lab.group().target_size
        lab.port.hold_stored_notices()

        answer = lab.runtime.ask(lab.supervisor, request, WAIT, MutationReply)
        lab.sync()  # handled: the group commanded its machines, they submitted their writes

        assert not answer.done()
        assert lab.group().target_size != target_before  # CA's next read already shows the change
        assert lab.port.release_stored_notices() == machines_commanded
        assert answer.result(WAIT).error is None


def test_a_change_the_api_does_not_store_in_time_is_answered_not_stored_and_counted(runtime: ActorRuntime) -> None:
    with start_lab(runtime, stored_wait_seconds=0.05) as lab:
        lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(3)))
        counted = ("homelab_autoscaler_mutations_not_stored_total", {"group": lab.group_id("workers")})
        before = metrics.REGISTRY.get_sample_value(*counted) or 0.0
        lab.port.hold_stored_notices()

        reply = lab.increase("workers", 2)

        # CA hears "may or may not have happened" (DEADLINE_EXCEEDED), never an OK that a restart could undo...
        assert reply.error is not None
        assert reply.error.kind is ErrorKind.NOT_STORED
        assert "m0, m1" in reply.error.message
        # ...while the change is under way and counted in the target CA reads next.
        assert lab.group().target_size == 2
        assert metrics.REGISTRY.get_sample_value(*counted) == before + 1


def test_a_group_that_stops_while_holding_an_answer_never_answers_ok(runtime: ActorRuntime) -> None:
    with start_lab(runtime, stored_wait_seconds=WAIT * 10) as lab:
        lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(3)))
        lab.port.hold_stored_notices()
        answer = lab.runtime.ask(lab.supervisor, _increase_two(lab), WAIT, MutationReply)
        lab.sync()

        lab.tell(GroupRemoved(NAMESPACE, "workers"))  # its actor stops, as on an operator shutdown

        error = answer.result(WAIT).error
        assert error is not None
        assert error.kind is ErrorKind.NOT_STORED
        assert "actor stopped" in error.message


def test_a_refused_mutation_is_answered_at_once(runtime: ActorRuntime) -> None:
    with start_lab(runtime, stored_wait_seconds=WAIT * 10) as lab:
        lab.list_inventory((make_group(max_size=2),), tuple(make_node(f"m{index}") for index in range(3)))
        lab.port.hold_stored_notices()

        reply = lab.increase("workers", 3)

        assert reply.error is not None
        assert reply.error.kind is ErrorKind.INVALID_ARGUMENT


# --- Events on the Group ---------------------------------------------------------------------------------------


def test_each_size_change_and_refusal_is_an_event_on_the_group(lab: Lab) -> None:
    machines = tuple(make_node(f"m{index}", price=f"0.{index + 1}") for index in range(4))
    lab.list_inventory((make_group(max_size=3),), machines)
    lab.port.clear()

    assert lab.increase("workers", 2).error is None
    booted(lab, "m0")
    assert lab.delete("workers", identity(lab.machine("m0"))).error is None
    assert lab.decrease("workers", -1).error is None
    assert lab.increase("workers", 4).error is not None

    events = [(event.type, event.reason, event.message) for event in lab.port.group_events("workers")]
    normal, warning = fx.EventType.NORMAL, fx.EventType.WARNING
    assert events == [
        (normal, "ScaleUp", "Cluster Autoscaler asked for 2 more: powering on m0, m1 (target 0 → 2)"),
        (normal, "ScaleDown", "Cluster Autoscaler deleted 1: powering off or cancelling m0 (target 2 → 1)"),
        (normal, "TargetDecreased", "Cluster Autoscaler lowered the target by 1: cancelling m1 (target 1 → 0)"),
        (warning, "IncreaseSizeRefused", f"node group {lab.group_id('workers')}: target 0 + 4 would exceed maxSize 3"),
    ]


def test_a_change_not_stored_in_time_is_a_warning_on_the_group(runtime: ActorRuntime) -> None:
    with start_lab(runtime, stored_wait_seconds=0.05) as lab:
        lab.list_inventory((make_group(),), (make_node("m0"),))
        lab.port.hold_stored_notices()

        assert lab.increase("workers", 1).error is not None

        warning = lab.port.group_events("workers")[-1]
        assert (warning.type, warning.reason) == (fx.EventType.WARNING, "NotStoredInTime")
        assert "m0" in warning.message


# --- concurrency -----------------------------------------------------------------------------------------------


def test_sixteen_threads_never_over_allocate_or_double_book(lab: Lab) -> None:
    max_size = 12
    lab.list_inventory((make_group(max_size=max_size),), tuple(make_node(f"m{index:02d}") for index in range(20)))
    violations: list[str] = []
    unexpected: list[str] = []
    done: Counter[str] = Counter()
    start_together = threading.Barrier(16)

    def gateway_thread(seed: int) -> None:
        chooser = random.Random(seed)
        start_together.wait()
        for _ in range(25):
            if chooser.random() < 0.55:
                reply = lab.increase("workers", chooser.randint(1, 3))
            else:
                listed = lab.group().machines
                pick = [stand_in(m) for m in listed if m.instance is not None]
                reply = lab.delete("workers", *chooser.sample(pick, min(len(pick), chooser.randint(1, 2))))
            if reply.error is None:
                done["ok"] += 1
            elif reply.error.kind in (ErrorKind.RESOURCE_EXHAUSTED, ErrorKind.INVALID_ARGUMENT):
                done["refused"] += 1
            else:
                unexpected.append(reply.error.message)
            snapshot = lab.group()
            if snapshot.target_size > max_size or len(snapshot.instances) > max_size:
                violations.append(f"target {snapshot.target_size}, {len(snapshot.instances)} instances")

    workers = [threading.Thread(target=gateway_thread, args=(seed,)) for seed in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert [worker.name for worker in workers if worker.is_alive()] == [], "a gateway thread never finished"
    assert (violations, unexpected) == ([], [])
    assert done["ok"] > 50  # the run really scaled up and down, and hit the limits too
    assert done["refused"] > 0
    cancelled = [effect for _, effect in lab.port.effect_log() if isinstance(effect, fx.DeleteJob)]
    assert len(cancelled) > 10
    open_boots: dict[str, str | None] = defaultdict(lambda: None)
    for machine, effect in lab.port.effect_log():
        if isinstance(effect, fx.CreateJob) and effect.kind is STARTUP:
            assert open_boots[machine] is None, f"{machine} got {effect.job_name} while {open_boots[machine]} ran"
            open_boots[machine] = effect.job_name
        elif isinstance(effect, fx.DeleteJob) and effect.job_name == open_boots[machine]:
            open_boots[machine] = None
    booting = sorted(name for name, job_name in open_boots.items() if job_name is not None)
    assert booting == sorted(m.name for m in lab.group().machines if m.state is NodeState.STARTING_UP)
    assert lab.group().target_size == len(booting) <= max_size


# --- what the group publishes ----------------------------------------------------------------------------------


def test_the_read_model_never_lists_machines_that_are_off(lab: Lab) -> None:
    lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(3)))
    assert lab.increase("workers", 1).error is None
    listed = [instance.id for instance in lab.group().instances]
    assert listed == ["homelab://lab/m0"]
    assert {m.name: m.instance is None for m in lab.group().machines} == {"m0": False, "m1": True, "m2": True}


def test_group_status_is_submitted_only_when_it_changes(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"), make_node("m2")))
    assert [(b.status.target_size, b.status.ready_count) for b in lab.port.group_statuses] == [(0, 0)]
    lab.tell(GroupObserved(make_group()), kube_node("m1", ready=False))  # no change CA or the status would see
    lab.sync()
    assert len(lab.port.group_statuses) == 1
    assert lab.increase("workers", 1).error is None
    booted(lab, "m1")
    statuses = [(b.status.target_size, b.status.ready_count) for b in lab.port.group_statuses]
    assert statuses == [(0, 0), (1, 0), (1, 1)]
    assert lab.port.group_statuses[-1].status.machines["Ready"] == 1


def test_a_group_spec_change_is_published(lab: Lab) -> None:
    lab.list_inventory((make_group(max_size=2),), (make_node("m1"),))
    lab.tell(GroupObserved(make_group(max_size=7, min_size=1)))
    lab.sync()
    assert (lab.group().min_size, lab.group().max_size) == (1, 7)


# --- schedules (the lab clock starts Sunday 2026-03-01 12:00 UTC) --------------------------------------------

LUNCH = Schedule(name="lunch", days=tuple(Weekday), start="13:00", end="14:00", min_size=2)
QUIET = Schedule(name="quiet", days=tuple(Weekday), start="13:00", end="14:00", max_size=1)


def window_passes(lab: Lab, hours: int, ticks: list[float]) -> None:
    """The wall clock moves on `hours`, and the ticker's clock far enough for the timer armed for it to fire."""
    lab.clock.advance(hours * 3600)
    ticks.append((ticks[-1] if ticks else time.monotonic()) + hours * 3600 + 10_000)
    lab.runtime.tell(lab.runtime.ticker, Tick(ticks[-1]))
    lab.sync()
    lab.sync()  # the group's publish after the timer, then the members' reports


def test_a_window_raising_min_powers_on_up_to_it_and_reports_it_until_it_ends(lab: Lab) -> None:
    machines = tuple(make_node(f"m{index}", price=f"0.{index + 1}") for index in range(3))
    lab.list_inventory((make_group(max_size=3, schedules=(LUNCH,)),), machines)
    assert (lab.group().min_size, lab.group().target_size) == (0, 0)
    ticks: list[float] = []

    window_passes(lab, 1, ticks)  # 13:00: lunch opens

    # CA is told min 2 and a target of 2, the two cheapest machines booting: it keeps them rather than
    # seeing a group below its minimum.
    assert (lab.group().min_size, lab.group().max_size, lab.group().target_size) == (2, 3, 2)
    assert lab.port.machines_with_jobs(STARTUP) == ["m0", "m1"]
    status = lab.port.group_statuses[-1].status
    assert (status.active_schedule, status.next_schedule_change) == ("lunch", START + timedelta(hours=2))
    assert (status.min_size, status.max_size) == (2, 3)  # the window's, as CA is told them

    window_passes(lab, 1, ticks)  # 14:00: lunch is over

    # min falls back; the machines stay on for CA to remove in its own time.
    assert (lab.group().min_size, lab.group().target_size) == (0, 2)
    assert lab.port.machines_with_jobs(SHUTDOWN) == []
    status = lab.port.group_statuses[-1].status
    assert (status.active_schedule, status.next_schedule_change) == (None, START + timedelta(hours=25))
    reasons = [(event.reason, event.message) for event in lab.port.group_events("workers")]
    assert reasons == [
        ("ScheduleStarted", "schedule 'lunch' is active: minSize 2, maxSize 3 until 2026-03-01T14:00:00+00:00"),
        ("ScheduleScaleUp", "schedule 'lunch' raises minSize to 2: powering on m0, m1 (target 0 → 2)"),
        ("ScheduleEnded", "schedule 'lunch' ended: minSize 0, maxSize 3 (the spec's) until 2026-03-02T13:00:00+00:00"),
    ]


def test_a_machine_ca_deletes_below_a_windows_min_is_replaced_as_a_step_of_its_own(lab: Lab) -> None:
    machines = tuple(make_node(f"m{index}", price=f"0.{index + 1}") for index in range(3))
    lab.list_inventory((make_group(max_size=3, schedules=(LUNCH,)),), machines)
    window_passes(lab, 1, [])
    booted(lab, "m0", "m1")
    lab.port.clear()

    assert lab.delete("workers", identity(lab.machine("m0"))).error is None
    lab.sync()

    assert lab.group().target_size == 2
    events = [(event.reason, event.message) for event in lab.port.group_events("workers")]
    assert events == [
        ("ScaleDown", "Cluster Autoscaler deleted 1: powering off or cancelling m0 (target 2 → 1)"),
        ("ScheduleScaleUp", "schedule 'lunch' raises minSize to 2: powering on m2 (target 1 → 2)"),
    ]


def test_a_window_lowering_max_refuses_increases_naming_it_and_powers_nothing_off(lab: Lab) -> None:
    machines = tuple(make_node(f"m{index}") for index in range(3))
    lab.list_inventory((make_group(max_size=3, schedules=(QUIET,)),), machines)
    assert lab.increase("workers", 2).error is None
    ticks: list[float] = []

    window_passes(lab, 1, ticks)  # 13:00: quiet starts

    assert (lab.group().max_size, lab.group().target_size) == (1, 2)
    assert lab.port.machines_with_jobs(SHUTDOWN) == []
    reply = lab.increase("workers", 1)
    assert reply.error is not None
    assert reply.error.kind is ErrorKind.INVALID_ARGUMENT
    assert reply.error.message == (
        f"node group {lab.group_id('workers')}: target 2 + 1 would exceed maxSize 1 of schedule 'quiet' (active now)"
    )

    window_passes(lab, 1, ticks)  # 14:00: quiet is over

    assert lab.group().max_size == 3
    assert lab.increase("workers", 1).error is None


def test_the_template_comes_from_the_newest_ready_member(lab: Lab) -> None:
    declared = NodeTemplate(capacity={"cpu": "4", "pods": "110"})
    lab.list_inventory((make_group(template=declared),), (make_node("m1"),))
    template = lab.group().template
    assert template is not None
    assert template.origin == "declared"
    booted(lab, "m1")
    template = lab.group().template
    assert template is not None
    assert (template.origin, template.capacity["cpu"]) == ("observed", "8")


def test_auto_provision_time_is_learned_once_the_group_has_seen_five_boots(lab: Lab) -> None:
    past = NodeStatus(state=NodeState.SHUTDOWN, attempts=2, recent_boot_seconds=(100.0, 200.0))
    machines = (make_node("m1", status=past), make_node("m2", status=past))
    lab.list_inventory((make_group(autoscaling_options={"max_node_provision_time": "auto"}),), machines)
    assert lab.group().learned_provision_seconds is None  # four boots: CA keeps its default

    assert lab.increase("workers", 1).error is None
    lab.clock.advance(150)
    booted(lab, "m1")

    # Five boots (100, 200, 100, 200, 150 s): the slowest, 200 s, with half again as head room.
    assert lab.group().learned_provision_seconds == 300.0
    exported = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_group_learned_provision_seconds", {"group": lab.group_id("workers")}
    )
    assert exported == 300.0


# --- exercise boots (spec.exercise) ----------------------------------------------------------------------------


def _off_since(days: int) -> NodeStatus:
    return NodeStatus(state=NodeState.SHUTDOWN, since=START - timedelta(days=days))


def test_a_machine_off_for_a_week_is_exercised_hidden_from_ca(lab: Lab) -> None:
    machines = (make_node("m0", status=_off_since(9)), make_node("m1", status=_off_since(8)))
    lab.list_inventory((make_group(max_size=2, exercise=Exercise()),), machines)
    lab.sync()

    assert lab.port.machines_with_jobs(STARTUP) == ["m0"]  # one at a time, the one off the longest
    assert lab.group().target_size == 0
    assert lab.group().instances == ()
    assert lab.machine("m0").exercising
    assert lab.port.group_statuses[-1].status.exercising == "m0"
    assert [event.reason for event in lab.port.group_events("workers")] == ["ExerciseStarted"]


def test_a_scale_up_takes_over_the_exercised_machine(lab: Lab) -> None:
    machines = (make_node("m0", status=_off_since(9)), make_node("m1", status=_off_since(1), priority=10))
    lab.list_inventory((make_group(max_size=2, exercise=Exercise()),), machines)
    lab.sync()

    assert lab.increase("workers", 1).error is None
    lab.sync()

    assert lab.port.machines_with_jobs(STARTUP) == ["m0"]  # no second boot: the exercised one stays on
    assert lab.group().target_size == 1
    assert not lab.machine("m0").exercising
    assert "ExerciseTakenOver" in [event.reason for event in lab.port.events("m0")]
    booted(lab, "m0")
    assert [instance.id for instance in lab.group().instances] == ["homelab://lab/m0"]
    assert lab.port.machines_with_jobs(SHUTDOWN) == []


def _recorded(group: Any, active_schedule: str) -> Any:
    return group.model_copy(update={"status": GroupStatus(active_schedule=active_schedule)})


@pytest.mark.parametrize(
    ("start", "end", "events"),
    [
        pytest.param("11:00", "14:00", [], id="still-active-not-announced-again"),
        pytest.param("08:00", "10:00", ["ScheduleEnded"], id="ended-meanwhile-announced-as-ended"),
    ],
)
def test_a_restart_remembers_the_window_a_previous_operator_recorded(
    lab: Lab, start: str, end: str, events: list[str]
) -> None:
    morning = Schedule(name="morning", days=tuple(Weekday), start=start, end=end, max_size=1)
    group = _recorded(make_group(max_size=3, schedules=(morning,)), "morning")
    lab.list_inventory((group,), (make_node("m1"),))
    lab.sync()
    assert [event.reason for event in lab.port.group_events("workers")] == events


def test_an_exercise_starts_when_its_timer_says_the_machine_is_due(lab: Lab) -> None:
    almost = NodeStatus(state=NodeState.SHUTDOWN, since=START - timedelta(days=7) + timedelta(minutes=30))
    lab.list_inventory((make_group(max_size=2, exercise=Exercise()),), (make_node("m0", status=almost),))
    lab.sync()
    assert lab.port.machines_with_jobs(STARTUP) == []

    window_passes(lab, 1, [])  # the wall clock passes the due time and the ticker fires the group's timer

    assert lab.port.machines_with_jobs(STARTUP) == ["m0"]
    assert lab.machine("m0").exercising
