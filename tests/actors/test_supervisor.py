"""The Supervisor: routes observations and mutations, creates machines from the inventory, replaces dead actors.

Everything runs for real on simpleSystemBase through `ActorRuntime`; the tests play the watchers (observations)
and the gateway (mutation asks), and look at what a user would see: the read model CA is answered from, and the
effects handed to the Kubernetes writer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from thespian.actors import ActorExitRequest

from actors.fsm import effects as fx
from actors.fsm.group import InstanceState
from actors.messages import (
    ErrorKind,
    GroupObserved,
    GroupRemoved,
    JobRemoved,
    KubeNodeRemoved,
    MachineObserved,
    MachineRemoved,
)
from actors.runtime import ActorRuntime
from schemas.node import NodeState, NodeStatus, Operation, OperationKind
from tests.support.actor_fakes import FakeClock, Lab, identity, job, kube_node, make_group, make_node, start_lab

STARTUP, SHUTDOWN = OperationKind.STARTUP, OperationKind.SHUTDOWN


@pytest.fixture
def lab(runtime: ActorRuntime) -> Iterator[Lab]:
    with start_lab(runtime) as running:
        yield running


def instance_state(lab: Lab, name: str) -> InstanceState | None:
    instance = lab.machine(name).instance
    return instance.state if instance is not None else None


def test_full_power_cycle_from_scale_up_to_powered_off(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"), make_node("m2", priority=-1)))
    assert (lab.group().target_size, lab.group().instances) == (0, ())

    assert lab.increase("workers", 1).error is None
    assert lab.port.created_jobs("m1") == [fx.CreateJob(STARTUP, 1, "m1-startup-1")]
    assert instance_state(lab, "m1") is InstanceState.CREATING

    lab.tell(job("m1"), job("m1", succeeded=True), kube_node("m1", provider_id="k3s://m1"))
    lab.sync()
    ready = lab.machine("m1")
    assert ready.state is NodeState.READY
    assert ready.instance is not None
    assert (ready.instance.id, ready.instance.state) == ("k3s://m1", InstanceState.RUNNING)

    lab.port.clear()
    assert lab.delete("workers", identity(ready)).error is None
    assert lab.port.effects("m1")[1:3] == [fx.Cordon(), fx.CreateJob(SHUTDOWN, 2, "m1-shutdown-2")]  # after its status
    assert instance_state(lab, "m1") is InstanceState.DELETING

    lab.tell(job("m1", SHUTDOWN, 2, succeeded=True), kube_node("m1", ready=False, provider_id="k3s://m1"))
    lab.sync()
    assert lab.machine("m1").state is NodeState.SHUTDOWN
    assert fx.DeleteKubeNode() in lab.port.effects("m1")
    assert (lab.group().target_size, lab.group().instances) == (0, ())


def test_an_unknown_group_is_not_found(lab: Lab) -> None:
    lab.list_inventory((make_group(),), ())
    reply = lab.increase("no-such-group", 1)
    assert reply.error is not None
    assert reply.error.kind is ErrorKind.NOT_FOUND
    assert "lab/no-such-group" in reply.error.message


def test_same_named_groups_in_two_namespaces_stay_apart(lab: Lab) -> None:
    garage = make_group(namespace="garage")
    lab.list_inventory((make_group(), garage), (make_node("m1"), make_node("g1", namespace="garage")))
    assert lab.increase("workers", 1).error is None
    garage_snapshot = lab.read_model.group("garage/workers")
    assert garage_snapshot is not None
    assert [machine.name for machine in garage_snapshot.machines] == ["g1"]
    assert (lab.group().target_size, garage_snapshot.target_size) == (1, 0)


def test_a_killed_node_actor_is_recreated_from_observations_without_a_second_job(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"),))
    assert lab.increase("workers", 1).error is None
    lab.tell(job("m1"))  # the watcher saw the startup Job the writer created
    lab.sync()
    before = lab.lookup("m1").address

    lab.runtime.tell(before, ActorExitRequest())
    lab.sync()

    after = lab.lookup("m1").address
    assert after is not None
    assert after != before
    assert lab.port.created_jobs("m1") == [fx.CreateJob(STARTUP, 1, "m1-startup-1")]
    assert lab.machine("m1").state is NodeState.STARTING_UP
    # The replacement drives the adopted Job to its end.
    lab.tell(job("m1", succeeded=True), kube_node("m1"))
    lab.sync()
    assert lab.machine("m1").state is NodeState.READY


def test_a_killed_group_actor_is_recreated_and_keeps_its_target(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"), make_node("m2"), make_node("m3")))
    assert lab.increase("workers", 2).error is None
    group_before = lab.lookup("m1").group_address

    lab.runtime.tell(group_before, ActorExitRequest())
    lab.sync()

    assert lab.lookup("m1").group_address != group_before
    assert lab.group().target_size == 2
    assert lab.increase("workers", 1).error is None
    assert lab.group().target_size == 3
    assert len(lab.port.created_jobs(kind=STARTUP)) == 3


def test_restart_recovery_adopts_jobs_in_flight_and_trusts_the_written_status(lab: Lab) -> None:
    booting = NodeStatus(
        state=NodeState.STARTING_UP,
        since=lab.clock(),
        attempts=1,
        operation_tries=1,
        operation=Operation(kind=STARTUP, attempt=1, job_name="m1-startup-1", started=lab.clock()),
    )
    just_created = job("m2", created=lab.clock())  # created a moment before the crash, status not yet written
    lab.list_inventory(
        (make_group(),),
        (make_node("m1", status=booting), make_node("m2"), make_node("m3")),
        kube_nodes=(kube_node("m3", provider_id="k3s://m3"),),
        jobs=(job("m1"), just_created),
    )
    assert lab.states() == {"m1": "StartingUp", "m2": "StartingUp", "m3": "Ready"}
    assert lab.port.created_jobs() == []
    assert lab.group().target_size == 3
    assert lab.sync().inventory_listed


def test_a_machine_waits_for_its_group_and_says_so_once(lab: Lab) -> None:
    lab.list_inventory((), (make_node("m1", group="later"),))
    lab.tell(MachineObserved(make_node("m1", group="later", priority=3)))
    lab.sync()
    assert [event.reason for event in lab.port.events("m1")] == ["GroupNotFound"]
    assert lab.lookup("m1").address is None

    lab.tell(GroupObserved(make_group("later")))
    lab.sync()
    assert lab.lookup("m1").address is not None
    assert [machine.name for machine in lab.group("later").machines] == ["m1"]


def test_a_removed_machine_leaves_its_group(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"), make_node("m2")))
    lab.tell(MachineRemoved("lab", "m2"))
    lab.sync()
    assert [machine.name for machine in lab.group().machines] == ["m1"]
    assert lab.lookup("m2").address is None


def test_a_removed_group_is_no_longer_listed_until_it_returns(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"),))
    assert lab.increase("workers", 1).error is None
    lab.tell(GroupRemoved("lab", "workers"))
    lab.sync()
    assert lab.read_model.group("lab/workers") is None
    assert lab.read_model.machine_for(node_name="m1") is None
    refused = lab.increase("workers", 1)
    assert refused.error is not None
    assert refused.error.kind is ErrorKind.NOT_FOUND
    assert lab.lookup("m1").address is not None  # the machine keeps running its last configuration

    lab.tell(GroupObserved(make_group()))
    lab.sync()
    assert lab.states() == {"m1": "StartingUp"}
    assert lab.group().target_size == 1


def test_a_machine_moved_to_another_group_is_listed_there_only(lab: Lab) -> None:
    lab.list_inventory((make_group(), make_group("gpu")), (make_node("m1"), make_node("m2")))
    lab.tell(MachineObserved(make_node("m2", group="gpu")))
    lab.sync()
    assert [machine.name for machine in lab.group().machines] == ["m1"]
    assert [machine.name for machine in lab.group("gpu").machines] == ["m2"]


@pytest.mark.parametrize(
    ("change", "effect"),
    [
        pytest.param({"power_policy": "Off"}, fx.Drain(), id="policy-off-drains-and-powers-off"),
        pytest.param({"annotations": {"infra.homecluster.dev/reset": "r1"}}, None, id="reset-is-passed-on"),
    ],
)
def test_a_node_spec_change_reaches_the_running_actor(lab: Lab, change: dict[str, object], effect: object) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"),), kube_nodes=(kube_node("m1"),))
    assert lab.machine("m1").state is NodeState.READY
    lab.port.clear()
    lab.tell(MachineObserved(make_node("m1", **change)))  # type: ignore[arg-type]
    lab.sync()
    if effect is not None:
        assert effect in lab.port.effects("m1")
        assert lab.machine("m1").state is NodeState.SHUTTING_DOWN
    else:
        assert [event.reason for event in lab.port.events("m1")] == ["Reset"]


def test_heartbeats_and_running_jobs_are_not_passed_on(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"),), kube_nodes=(kube_node("m1"),))
    lab.port.clear()
    lab.tell(kube_node("m1"), kube_node("m1"), job("m1", SHUTDOWN, 1), JobRemoved("lab", "m1-shutdown-1", "m1"))
    lab.sync()
    assert lab.port.effects() == []


def test_a_kubernetes_node_that_vanishes_is_routed_by_its_name(lab: Lab) -> None:
    node = make_node("m1", kubernetes_node_name="host-a")
    lab.list_inventory((make_group(),), (node,), kube_nodes=(kube_node("host-a"),))
    assert lab.machine("m1").state is NodeState.READY
    lab.tell(KubeNodeRemoved("host-a"))
    lab.sync()
    assert lab.machine("m1").state is NodeState.SHUTDOWN
    assert lab.machine("m1").instance is None


def test_a_second_inventory_reconciles_what_already_runs(lab: Lab) -> None:
    lab.list_inventory((make_group(),), (make_node("m1"), make_node("m2")), kube_nodes=(kube_node("m1"),))
    lab.list_inventory((make_group(),), (make_node("m1"),))  # m2 deleted, m1's Node gone while we were away
    assert lab.states() == {"m1": "Shutdown"}
    assert lab.port.created_jobs() == []


def test_stopping_the_runtime_leaves_no_thread_behind() -> None:
    threads_before = set(threading.enumerate())
    runtime = ActorRuntime(tick_interval=0.01, name="supervisor-stop")
    runtime.start()
    with start_lab(runtime, FakeClock()) as lab:
        lab.list_inventory((make_group(),), tuple(make_node(f"m{index}") for index in range(20)))
        assert lab.increase("workers", 5).error is None
    runtime.stop(timeout=10.0)
    assert set(threading.enumerate()) - threads_before == set()
