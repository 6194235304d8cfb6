"""What a failed effect becomes for the machine: the node actor's answer to the writer's `EffectFailed`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.fsm import effects as fx
from actors.fsm import events as ev
from actors.fsm.effect_failures import failure_event
from schemas.node import NodeState, NodeStatus, OperationKind

REFUSED = "refused by the API server"
STATUS = NodeStatus(state=NodeState.READY, since=datetime(2026, 1, 1, tzinfo=UTC))
STARTUP_JOB = fx.CreateJob(OperationKind.STARTUP, 3, "m1-startup-3")
SHUTDOWN_JOB = fx.CreateJob(OperationKind.SHUTDOWN, 1, "m1-shutdown-1")


@pytest.mark.parametrize(
    ("effect", "permanent", "expected"),
    [
        (STARTUP_JOB, True, ev.JobFailed(OperationKind.STARTUP, "m1-startup-3", REFUSED)),
        (SHUTDOWN_JOB, True, ev.JobFailed(OperationKind.SHUTDOWN, "m1-shutdown-1", REFUSED)),
        (STARTUP_JOB, False, ev.WriteFailed("CreateJob", REFUSED, False)),
        (fx.Drain(), True, ev.DrainFinished(succeeded=False, message=REFUSED)),
        (fx.Drain(), False, ev.DrainFinished(succeeded=False, message=REFUSED)),
        (fx.Cordon(), True, ev.WriteFailed("Cordon", REFUSED, True)),
        (fx.Uncordon(), False, ev.WriteFailed("Uncordon", REFUSED, False)),
        (fx.RemoveAutoscalerTaints(), True, ev.WriteFailed("RemoveAutoscalerTaints", REFUSED, True)),
        (fx.ApplyManagedLabelsAndTaints(), True, ev.WriteFailed("ApplyManagedLabelsAndTaints", REFUSED, True)),
        (fx.SetProviderID("homelab://m1"), True, ev.WriteFailed("SetProviderID", REFUSED, True)),
        (fx.DeleteJob("m1-startup-3"), False, ev.WriteFailed("DeleteJob", REFUSED, False)),
        (fx.DeleteKubeNode(), True, ev.WriteFailed("DeleteKubeNode", REFUSED, True)),
        (fx.PatchStatus(STATUS), True, None),
        (fx.PatchStatus(STATUS), False, None),
        (fx.RecordEvent(fx.EventType.WARNING, "BootFailed", "late"), True, None),
    ],
    ids=[
        "startup Job refused: the boot failed",
        "shutdown Job refused: the shutdown failed",
        "Job still failing after retries: a write failure, the boot timer decides",
        "drain refused: the drain ended unsuccessfully",
        "drain still failing: the drain ended unsuccessfully",
        "cordon",
        "uncordon",
        "CA taints",
        "labels and taints",
        "providerID",
        "Job deletion",
        "Node deletion",
        "status write refused: only logged",
        "status write still failing: only logged",
        "Event write: only logged",
    ],
)
def test_failure_event(effect: fx.Effect, permanent: bool, expected: object) -> None:
    assert failure_event(effect, REFUSED, permanent) == expected
