"""Messages: every class survives a pickle round trip (any system base may carry it), and observations translate
into the power-machine events and derive inputs they stand for."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from actors import messages
from actors.fsm import effects as fx
from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation
from actors.fsm.events import JobFailed, JobSucceeded, NodeNotReady, NodeReady, PowerOnRequested
from actors.fsm.group import InstanceState, InstanceView, MachineView
from actors.read_model import MachineSnapshot
from schemas.common import Metadata, Taint, TaintEffect
from schemas.group import Group, GroupSpec
from schemas.node import JobTemplate, Node, NodeSnapshot, NodeSpec, NodeState, NodeStatus, OperationKind, PowerPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GROUP = Group(metadata=Metadata(name="workers", namespace="lab"), spec=GroupSpec(max_size=3))
TEMPLATE = JobTemplate(image="busybox:1.36")
NODE = Node(
    metadata=Metadata(name="m1", namespace="lab", labels={"infra.homecluster.dev/group": "workers"}),
    spec=NodeSpec(startup_job=TEMPLATE, shutdown_job=TEMPLATE),
    status=NodeStatus.model_validate({"state": "Ready", "since": NOW, "providerID": "k3s://m1"}),
)
SNAPSHOT = NodeSnapshot(labels={"a": "b"}, capacity={"cpu": "8"}, seen_at=NOW)
KUBE_NODE = messages.KubeNodeObserved(
    "m1", True, "k3s://m1", SNAPSHOT, unschedulable=True, taints=(Taint(key="k", effect=TaintEffect.NO_SCHEDULE),)
)
JOB = messages.JobObserved("lab", "m1-startup-1", "m1", "workers", OperationKind.STARTUP, 1, active=True, created=NOW)
VIEW = MachineView(name="m1", state=NodeState.READY, provider_id="k3s://m1", since=NOW)
MACHINE = MachineSnapshot(
    "m1", "lab", "m1", "k3s://m1", NodeState.READY, PowerPolicy.AUTO, InstanceView("k3s://m1", InstanceState.RUNNING)
)
IDENTITY = messages.NodeIdentity("m1", "k3s://m1")
INCREASE = messages.IncreaseSize("r1", "lab/workers", 2)
# Actor addresses are Thespian objects; any picklable stand-in shows the message itself pickles.
ADDRESS = "an-actor-address"

EXAMPLES: dict[type, object] = {
    messages.MutationRefusal: messages.MutationRefusal(messages.ErrorKind.RESOURCE_EXHAUSTED, "no machines"),
    messages.NodeIdentity: IDENTITY,
    messages.IncreaseSize: INCREASE,
    messages.DeleteNodes: messages.DeleteNodes("r2", "lab/workers", (IDENTITY,)),
    messages.DecreaseTargetSize: messages.DecreaseTargetSize("r3", "lab/workers", -1),
    messages.MutationReply: messages.MutationReply("r1", messages.MutationRefusal(messages.ErrorKind.NOT_FOUND, "x")),
    messages.Forwarded: messages.Forwarded(ADDRESS, INCREASE),
    messages.Ping: messages.Ping("r4"),
    messages.Pong: messages.Pong("r4", True, 1, 2),
    messages.LookupMachine: messages.LookupMachine("r5", "lab", "m1"),
    messages.MachineFound: messages.MachineFound("r5", ADDRESS, "lab/workers", ADDRESS),
    messages.GroupObserved: messages.GroupObserved(GROUP),
    messages.GroupRemoved: messages.GroupRemoved("lab", "workers"),
    messages.GroupInvalid: messages.GroupInvalid("lab", "workers", "uid-1", 3, "spec.maxSize: maxSize is required"),
    messages.MachineObserved: messages.MachineObserved(NODE),
    messages.MachineRemoved: messages.MachineRemoved("lab", "m1"),
    messages.KubeNodeObserved: KUBE_NODE,
    messages.KubeNodeRemoved: messages.KubeNodeRemoved("m1"),
    messages.JobObserved: JOB,
    messages.JobRemoved: messages.JobRemoved("lab", "m1-startup-1", "m1"),
    messages.InventoryListed: messages.InventoryListed((GROUP,), (NODE,), (KUBE_NODE,), (JOB,)),
    messages.ConfigureSupervisor: messages.ConfigureSupervisor("wiring-1"),
    messages.ConfigureGroup: messages.ConfigureGroup("wiring-1", GROUP),
    messages.GroupChanged: messages.GroupChanged(GROUP),
    messages.MemberAssigned: messages.MemberAssigned("m1"),
    messages.MemberReleased: messages.MemberReleased("m1"),
    messages.ConfigureMachine: messages.ConfigureMachine(
        "wiring-1", NODE, "lab/workers", GROUP.spec, ADDRESS, (JOB.observation(),), KUBE_NODE.observation()
    ),
    messages.MachineReconfigured: messages.MachineReconfigured(NODE, "lab/workers", GROUP.spec, ADDRESS),
    messages.MachineEvent: messages.MachineEvent(PowerOnRequested(start_now=False), 3, confirm_stored=True),
    messages.IntentStored: messages.IntentStored("m1", 3),
    messages.MachineStateChanged: messages.MachineStateChanged(VIEW, MACHINE, SNAPSHOT, 3),
    messages.MachineStatusWritten: messages.MachineStatusWritten("lab", "m1", NODE.status),
    messages.EffectFailed: messages.EffectFailed(fx.CreateJob(OperationKind.STARTUP, 1, "m1-startup-1"), "no", True),
    messages.DrainCompleted: messages.DrainCompleted(False, "PDB"),
}


def message_classes() -> list[type]:
    return [
        cls for _, cls in inspect.getmembers(messages, inspect.isclass)
        if dataclasses.is_dataclass(cls)
        # MutationRefusal is defined beside the group planning that returns it and travels in MutationReply.
        and (cls.__module__ == messages.__name__ or cls is messages.MutationRefusal)
    ]


@pytest.mark.parametrize("message", [pytest.param(m, id=type(m).__name__) for m in EXAMPLES.values()])
def test_every_message_survives_a_pickle_round_trip(message: object) -> None:
    assert pickle.loads(pickle.dumps(message)) == message


def test_the_table_covers_every_message_class() -> None:
    assert sorted(cls.__name__ for cls in message_classes()) == sorted(cls.__name__ for cls in EXAMPLES)


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__) for c in message_classes()])
def test_messages_are_frozen(cls: type) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(EXAMPLES[cls], dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize(
    ("flags", "phase", "event"),
    [
        pytest.param({"active": True}, JobPhase.ACTIVE, None, id="running"),
        pytest.param({"succeeded": True}, JobPhase.SUCCEEDED, JobSucceeded(OperationKind.STARTUP, "j"), id="ok"),
        pytest.param(
            {"failed": True, "message": "BMC down"},
            JobPhase.FAILED,
            JobFailed(OperationKind.STARTUP, "j", "BMC down"),
            id="failed",
        ),
    ],
)
def test_a_job_observation_means(flags: dict[str, Any], phase: JobPhase, event: object) -> None:
    observed = messages.JobObserved("lab", "j", "m1", "workers", OperationKind.STARTUP, 2, created=NOW, **flags)
    assert observed.phase is phase
    assert observed.event() == event
    assert observed.observation() == JobObservation(
        "j", OperationKind.STARTUP, 2, phase, created=NOW, message=str(flags.get("message", ""))
    )


@pytest.mark.parametrize(
    ("ready", "provider_id", "event", "observation"),
    [
        pytest.param(True, "k3s://m1", NodeReady("k3s://m1", SNAPSHOT), KubeNodeObservation(True, "k3s://m1", SNAPSHOT),
                     id="ready"),
        pytest.param(True, "", NodeReady(None, SNAPSHOT), KubeNodeObservation(True, None, SNAPSHOT),
                     id="ready-without-provider-id"),
        pytest.param(False, "k3s://m1", NodeNotReady(), KubeNodeObservation(False, "k3s://m1", SNAPSHOT),
                     id="not-ready"),
    ],
)
def test_a_kubernetes_node_observation_means(
    ready: bool, provider_id: str, event: object, observation: KubeNodeObservation
) -> None:
    observed = messages.KubeNodeObserved("m1", ready, provider_id, SNAPSHOT)
    assert (observed.event(), observed.observation()) == (event, observation)


def test_a_heartbeat_tells_the_machine_nothing_new() -> None:
    heartbeat = messages.KubeNodeObserved("m1", True, "k3s://m1", SNAPSHOT, unschedulable=False)
    assert KUBE_NODE.same_for_machine(heartbeat)
    assert not KUBE_NODE.same_for_machine(None)
    assert not KUBE_NODE.same_for_machine(messages.KubeNodeObserved("m1", False, "k3s://m1", SNAPSHOT))
