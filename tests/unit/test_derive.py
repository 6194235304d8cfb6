"""Restarts: the operator dies at each point of each operation and rebuilds the machine from the cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from actors.fsm import effects as fx
from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation, derive
from actors.fsm.events import TimerKind
from actors.fsm.node import MachineConfig, job_name
from schemas.node import NodeSnapshot, NodeState, NodeStatus, Operation, OperationKind, PowerPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = MachineConfig(namespace="homelab", name="m1", group="workers", kubernetes_node_name="m1")
SNAPSHOT = NodeSnapshot(labels={"kubernetes.io/hostname": "m1"}, seen_at=NOW - timedelta(hours=1))
START, STOP = OperationKind.STARTUP, OperationKind.SHUTDOWN
ACTIVE, SUCCEEDED, FAILED = JobPhase.ACTIVE, JobPhase.SUCCEEDED, JobPhase.FAILED
READY_NODE = KubeNodeObservation(ready=True, provider_id="homelab://homelab/m1", snapshot=SNAPSHOT)
NOT_READY_NODE = KubeNodeObservation(ready=False, provider_id="homelab://homelab/m1", snapshot=SNAPSHOT)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def job(kind: OperationKind, attempt: int, phase: JobPhase, created_ago: float = 60) -> JobObservation:
    return JobObservation(
        name=job_name("m1", kind, attempt), kind=kind, attempt=attempt, phase=phase, created=ago(created_ago)
    )


def status(
    state: NodeState, attempts: int = 0, operation: tuple[OperationKind, int, float] | None = None, **fields: object
) -> NodeStatus:
    """A status as we would have written it; `operation` is (kind, attempt, started seconds ago)."""
    values: dict[str, object] = {
        "state": state,
        "since": ago(600),
        "attempts": attempts,
        "provider_id": "homelab://homelab/m1",
    }
    if operation is not None:
        kind, attempt, started_ago = operation
        values["operation"] = Operation(
            kind=kind, attempt=attempt, job_name=job_name("m1", kind, attempt), started=ago(started_ago)
        )
        values["operation_tries"] = 1
    return NodeStatus.model_validate(values | fields)


def timer(kind: TimerKind, owner: str, after: float) -> fx.StartTimer:
    return fx.StartTimer(kind, f"{owner}:{kind.value}", after)


ON = replace(CONFIG, power_policy=PowerPolicy.ON)
OFF = replace(CONFIG, power_policy=PowerPolicy.OFF)
MAINTENANCE = replace(CONFIG, power_policy=PowerPolicy.MAINTENANCE)

CASES = [
    # Never written before.
    pytest.param(None, CONFIG, [], None, NodeState.SHUTDOWN, [], [fx.CreateJob], id="new-machine-off"),
    pytest.param(
        None,
        CONFIG,
        [],
        KubeNodeObservation(ready=True, provider_id=None, snapshot=SNAPSHOT),
        NodeState.READY,
        [fx.SetProviderID("homelab://homelab/m1"), fx.Uncordon()],
        [],
        id="new-machine-already-running",
    ),
    # Booting.
    pytest.param(
        status(NodeState.SHUTDOWN, attempts=3),
        CONFIG,
        [job(START, 4, ACTIVE, created_ago=120)],
        None,
        NodeState.STARTING_UP,
        [timer(TimerKind.BOOT_TIMEOUT, "m1-startup-4", 480)],
        [fx.CreateJob, fx.DeleteJob],
        id="crash-after-creating-startup-job",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=4, operation=(START, 4, 60)),
        CONFIG,
        [],
        None,
        NodeState.STARTING_UP,
        [fx.CreateJob(START, 4, "m1-startup-4"), timer(TimerKind.BOOT_TIMEOUT, "m1-startup-4", 540)],
        [],
        id="crash-before-creating-startup-job",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=4, operation=(START, 4, 60)),
        CONFIG,
        [job(START, 4, ACTIVE)],
        None,
        NodeState.STARTING_UP,
        [timer(TimerKind.BOOT_TIMEOUT, "m1-startup-4", 540)],
        [fx.CreateJob, fx.PatchStatus],
        id="startup-job-running",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=4, operation=(START, 4, 60)),
        CONFIG,
        [job(START, 4, SUCCEEDED)],
        None,
        NodeState.STARTING_UP,
        [timer(TimerKind.BOOT_TIMEOUT, "m1-startup-4", 540)],
        [fx.CreateJob, fx.DeleteJob],
        id="startup-job-succeeded-machine-booting",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=4, operation=(START, 4, 60)),
        CONFIG,
        [job(START, 4, SUCCEEDED)],
        READY_NODE,
        NodeState.READY,
        [fx.Uncordon(), fx.ApplyManagedLabelsAndTaints()],
        [fx.CreateJob, fx.DeleteJob, fx.StartTimer],
        id="booted-while-down",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=4, operation=(START, 4, 60)),
        CONFIG,
        [job(START, 4, FAILED)],
        None,
        NodeState.BOOT_FAILED,
        [],
        [fx.CreateJob, fx.DeleteJob, fx.StartTimer],
        id="startup-job-failed-while-down",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=4, operation=(START, 4, 700)),
        CONFIG,
        [job(START, 4, ACTIVE, created_ago=700)],
        None,
        NodeState.BOOT_FAILED,
        [fx.DeleteJob("m1-startup-4")],
        [fx.CreateJob, fx.StartTimer],
        id="boot-timed-out-while-down",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=1),
        CONFIG,
        [job(START, 1, FAILED, created_ago=9000)],
        None,
        NodeState.STARTING_UP,
        [],
        [fx.CreateJob, fx.DeleteJob, fx.StartTimer, fx.PatchStatus],
        id="queued-for-a-boot-slot",
    ),
    pytest.param(
        status(NodeState.STARTING_UP, attempts=1),
        CONFIG,
        [job(START, 2, ACTIVE, created_ago=5)],
        None,
        NodeState.STARTING_UP,
        [timer(TimerKind.BOOT_TIMEOUT, "m1-startup-2", 595)],
        [fx.CreateJob],
        id="crash-after-boot-slot-granted",
    ),
    # Ready.
    pytest.param(
        status(NodeState.READY, attempts=4, last_ready=SNAPSHOT),
        CONFIG,
        [],
        READY_NODE,
        NodeState.READY,
        [],
        [fx.PatchStatus, fx.Uncordon],
        id="ready",
    ),
    pytest.param(
        status(NodeState.READY, attempts=4),
        CONFIG,
        [],
        NOT_READY_NODE,
        NodeState.READY,
        [timer(TimerKind.UNREADY_GRACE, f"m1:{NOW.isoformat()}", 120)],
        [],
        id="ready-node-unready",
    ),
    pytest.param(
        status(NodeState.READY, attempts=4),
        CONFIG,
        [],
        None,
        NodeState.SHUTDOWN,
        [fx.RecordEvent(fx.EventType.WARNING, "StoppedOutsideAutoscaler", "")],
        [fx.CreateJob],
        id="stopped-while-down",
    ),
    # A boot CA let go of: the machine came up while the operator was down.
    pytest.param(
        status(NodeState.SHUTDOWN, attempts=4, since=ago(60), reason="BootCancelled"),
        CONFIG,
        [],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [fx.Cordon(), fx.Drain(), fx.RecordEvent(fx.EventType.NORMAL, "ReleasedBootCameUp", "")],
        [fx.CreateJob, fx.Uncordon],
        id="cancelled-boot-came-up-while-down",
    ),
    pytest.param(
        status(NodeState.SHUTDOWN, attempts=4, since=ago(900), reason="BootCancelled"),
        CONFIG,
        [],
        READY_NODE,
        NodeState.READY,
        [fx.Uncordon(), fx.RecordEvent(fx.EventType.NORMAL, "StartedOutsideAutoscaler", "")],
        [fx.CreateJob, fx.Drain],
        id="cancelled-long-ago-then-powered-on-by-hand",
    ),
    # Shutting down.
    pytest.param(
        status(NodeState.READY, attempts=5),
        CONFIG,
        [job(STOP, 6, ACTIVE, created_ago=30)],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [fx.Cordon(), timer(TimerKind.SHUTDOWN_TIMEOUT, "m1-shutdown-6", 270)],
        [fx.CreateJob, fx.Drain],
        id="crash-after-creating-shutdown-job",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=5, reason="Draining"),
        CONFIG,
        [],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [fx.Cordon(), fx.Drain()],
        [fx.CreateJob],
        id="crash-during-drain",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 60)),
        CONFIG,
        [job(STOP, 6, SUCCEEDED)],
        None,
        NodeState.SHUTDOWN,
        [],
        [fx.DeleteKubeNode, fx.CreateJob],
        id="powered-off-while-down",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 60)),
        CONFIG,
        [job(STOP, 6, SUCCEEDED)],
        NOT_READY_NODE,
        NodeState.SHUTDOWN,
        [fx.DeleteKubeNode()],
        [fx.CreateJob],
        id="powered-off-node-left-notready",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 60)),
        CONFIG,
        [job(STOP, 6, SUCCEEDED)],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [timer(TimerKind.SHUTDOWN_TIMEOUT, "m1-shutdown-6", 240)],
        [fx.CreateJob, fx.DeleteJob],
        id="shutdown-job-done-node-still-ready",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 400)),
        CONFIG,
        [job(STOP, 6, ACTIVE, created_ago=400)],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [fx.DeleteJob("m1-shutdown-6"), fx.CreateJob(STOP, 7, "m1-shutdown-7")],
        [],
        id="shutdown-timed-out-while-down-retried",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 100)),
        CONFIG,
        [job(STOP, 6, ACTIVE, created_ago=100), job(STOP, 7, ACTIVE, created_ago=10)],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [fx.DeleteJob("m1-shutdown-6"), timer(TimerKind.SHUTDOWN_TIMEOUT, "m1-shutdown-7", 290)],
        [fx.CreateJob],
        id="crash-after-creating-shutdown-retry",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=8, operation=(STOP, 8, 60), operation_tries=3),
        CONFIG,
        [job(STOP, 8, FAILED)],
        READY_NODE,
        NodeState.READY,
        [fx.Uncordon()],
        [fx.CreateJob, fx.DeleteJob],
        id="last-shutdown-try-failed-while-down",
    ),
    pytest.param(
        status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 100)),
        CONFIG,
        [],
        None,
        NodeState.SHUTDOWN,
        [],
        [fx.CreateJob],
        id="shutdown-job-cleaned-up-node-gone",
    ),
    # Failed, quarantined, policies.
    pytest.param(
        status(NodeState.BOOT_FAILED, attempts=2, consecutive_failures=1, cooldown_until=NOW + timedelta(seconds=30)),
        CONFIG,
        [job(START, 2, FAILED)],
        None,
        NodeState.BOOT_FAILED,
        [],
        [fx.CreateJob, fx.DeleteJob, fx.StartTimer, fx.PatchStatus],
        id="boot-failed-waits-for-ca",
    ),
    pytest.param(
        status(NodeState.QUARANTINED, attempts=3, consecutive_failures=3),
        ON,
        [],
        None,
        NodeState.QUARANTINED,
        [],
        [fx.CreateJob, fx.PatchStatus],
        id="quarantine-survives-restart",
    ),
    pytest.param(
        status(NodeState.SHUTDOWN, attempts=2, consecutive_failures=1, cooldown_until=NOW + timedelta(seconds=100)),
        ON,
        [],
        None,
        NodeState.SHUTDOWN,
        [timer(TimerKind.COOLDOWN_EXPIRED, f"m1:{(NOW + timedelta(seconds=100)).isoformat()}", 100)],
        [fx.CreateJob],
        id="policy-on-cooling-down",
    ),
    pytest.param(
        status(NodeState.SHUTDOWN, attempts=2, consecutive_failures=1, cooldown_until=NOW - timedelta(seconds=1)),
        ON,
        [job(START, 2, FAILED)],
        None,
        NodeState.STARTING_UP,
        [fx.CreateJob(START, 3, "m1-startup-3")],
        [],
        id="policy-on-cooldown-over",
    ),
    pytest.param(
        status(NodeState.READY, attempts=2),
        OFF,
        [],
        READY_NODE,
        NodeState.SHUTTING_DOWN,
        [fx.Drain()],
        [],
        id="policy-off-ready",
    ),
    pytest.param(
        status(NodeState.READY, attempts=2),
        MAINTENANCE,
        [],
        READY_NODE,
        NodeState.MAINTENANCE,
        [],
        [fx.Uncordon, fx.Cordon],
        id="maintenance-set-while-down",
    ),
    pytest.param(
        status(NodeState.MAINTENANCE, attempts=2),
        CONFIG,
        [],
        READY_NODE,
        NodeState.READY,
        [fx.Uncordon()],
        [],
        id="maintenance-lifted-while-down",
    ),
    pytest.param(
        status(NodeState.MAINTENANCE, attempts=4, operation=(START, 4, 60)),
        MAINTENANCE,
        [job(START, 4, ACTIVE)],
        READY_NODE,
        NodeState.MAINTENANCE,
        [],
        [fx.DeleteJob, fx.CreateJob, fx.StartTimer],
        id="maintenance-leaves-running-job-alone",
    ),
    pytest.param(
        status(NodeState.SHUTDOWN, attempts=4),
        CONFIG,
        [job(START, 4, ACTIVE)],
        None,
        NodeState.SHUTDOWN,
        [fx.DeleteJob("m1-startup-4")],
        [fx.CreateJob],
        id="cancelled-boot-job-still-running",
    ),
    # Statuses that cannot be trusted.
    pytest.param(
        {"state": "startingup", "attempts": 7},
        CONFIG,
        [job(START, 9, FAILED)],
        READY_NODE,
        NodeState.READY,
        [fx.RecordEvent(fx.EventType.WARNING, "StatusRebuilt", ""), fx.Uncordon()],
        [fx.CreateJob],
        id="garbled-status-node-ready",
    ),
    pytest.param(
        {"state": "Ready", "operation": {"kind": "startup"}},
        CONFIG,
        [],
        None,
        NodeState.SHUTDOWN,
        [fx.RecordEvent(fx.EventType.WARNING, "StatusRebuilt", "")],
        [fx.CreateJob],
        id="garbled-status-node-gone",
    ),
    pytest.param(
        status(NodeState.READY, attempts=4, operation=(START, 4, 60)),
        CONFIG,
        [],
        None,
        NodeState.SHUTDOWN,
        [fx.RecordEvent(fx.EventType.WARNING, "StatusRebuilt", "")],
        [fx.CreateJob],
        id="incoherent-status",
    ),
]


def _matches(expected: fx.Effect, actual: fx.Effect) -> bool:
    """Equality, except that an expected RecordEvent with an empty message matches any message."""
    if isinstance(expected, fx.RecordEvent) and isinstance(actual, fx.RecordEvent) and not expected.message:
        return (expected.type, expected.reason) == (actual.type, actual.reason)
    return expected == actual


@pytest.mark.parametrize(("written", "config", "jobs", "node", "state", "includes", "excludes"), CASES)
def test_restart(
    written: NodeStatus | Mapping[str, object] | None,
    config: MachineConfig,
    jobs: Sequence[JobObservation],
    node: KubeNodeObservation | None,
    state: NodeState,
    includes: list[fx.Effect],
    excludes: list[type[fx.Effect]],
) -> None:
    result = derive(written, config, jobs, node, NOW)
    assert result.machine.status.state is state
    for effect in includes:
        assert any(_matches(effect, actual) for actual in result.effects), f"{effect} missing from {result.effects}"
    for effect_type in excludes:
        assert not any(isinstance(actual, effect_type) for actual in result.effects), (
            f"unexpected {effect_type.__name__}"
        )
    # Never a second Job for an operation whose Job exists, never a reused name.
    existing = {observed.name for observed in jobs}
    assert not [e for e in result.effects if isinstance(e, fx.CreateJob) and e.job_name in existing]
    assert result.machine.status.attempts >= max((observed.attempt for observed in jobs), default=0)
    patches = [e for e in result.effects if isinstance(e, fx.PatchStatus)]
    assert patches in ([], [fx.PatchStatus(result.machine.status)])
    if patches:
        assert result.effects[-1] == patches[0]


def test_the_case_table_names_every_state_at_least_once() -> None:
    assert {case.values[4] for case in CASES} == set(NodeState)


def test_an_adopted_job_keeps_its_creation_time_for_the_timeout() -> None:
    result = derive(status(NodeState.SHUTDOWN, attempts=3), CONFIG, [job(START, 4, ACTIVE, created_ago=200)], None, NOW)
    operation = result.machine.status.operation
    assert operation is not None
    assert (operation.job_name, operation.started, result.machine.status.attempts) == ("m1-startup-4", ago(200), 4)


def test_a_rebuilt_status_never_reuses_a_job_name() -> None:
    garbled = {"state": 42, "attempts": 11}
    result = derive(garbled, ON, [job(START, 9, FAILED)], None, NOW)
    assert result.machine.status.state is NodeState.STARTING_UP  # policy On powers it on
    assert fx.CreateJob(START, 12, "m1-startup-12") in result.effects


def test_a_retry_adopted_after_a_crash_counts_as_the_second_try() -> None:
    written = status(NodeState.SHUTTING_DOWN, attempts=6, operation=(STOP, 6, 100))
    jobs = [job(STOP, 6, FAILED, created_ago=100), job(STOP, 7, ACTIVE, created_ago=10)]
    result = derive(written, CONFIG, jobs, READY_NODE, NOW)
    assert result.machine.status.operation_tries == 2
    assert fx.DeleteJob("m1-shutdown-6") not in result.effects  # finished: kept for its logs
