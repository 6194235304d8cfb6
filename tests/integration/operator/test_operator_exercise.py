"""Exercise boots on a running operator: one that succeeds, one that fails, one CA takes over.

The operator's wall clock starts a week and a day after the machines were recorded off (their statuses are seeded
so), and runs at real speed from there: the exercise is due at the operator's first look. What the tests check is
what a user and CA would notice: the Node resource's `lastExercise` and Events, the Jobs, and CA's view of the group.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from protos import externalgrpc_pb2 as externalgrpc
from schemas import GROUP_VERSION
from schemas.labels import EXERCISE_TAINT
from tests.support.operator_homelab import GROUP, GROUP_ID, NAMESPACE, Homelab, RunningOperator, simulated
from tests.support.polling import wait_for

START = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)


class RunningClock:
    """Wall-clock time that starts at `start` and runs at real speed."""

    def __init__(self, start: datetime) -> None:
        self._start, self._began = start, time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._began)


def _off_since(homelab: Homelab, name: str, days: float) -> None:
    since = (START - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"state": "Shutdown", "since": since}
    homelab.fake.store.patch(GROUP_VERSION, "nodes", name, {"status": status}, NAMESPACE, subresource="status")


def _exercise(homelab: Homelab, name: str) -> dict[str, Any]:
    record: dict[str, Any] = (homelab.machine(name).get("status") or {}).get("lastExercise") or {}
    return record


def _outcome(homelab: Homelab, name: str) -> str | None:
    outcome = _exercise(homelab, name).get("outcome")
    return str(outcome) if outcome is not None else None


def _claimed_by(ca: RunningOperator, name: str) -> str:
    node = externalgrpc.ExternalGrpcNode(name=name, providerID=f"homelab://{NAMESPACE}/{name}")
    return str(ca.stub.NodeGroupForNode(externalgrpc.NodeGroupForNodeRequest(node=node)).nodeGroup.id)


def _lab(homelab: Homelab, **m1: Any) -> RunningOperator:
    homelab.add_group(max_size=2, exercise={"every": "168h"})
    homelab.add_machine("m1")
    homelab.add_machine("m2", priority=10)
    _off_since(homelab, "m1", 8)
    _off_since(homelab, "m2", 1)
    homelab.simulate(simulated("m1", **m1), simulated("m2"))
    return homelab.start_operator(clock=RunningClock(START))


def test_an_exercise_boots_checks_and_powers_off_the_machine_while_ca_sees_nothing(homelab: Homelab) -> None:
    ca = _lab(homelab, boot_seconds=1.0)

    wait_for(lambda: _outcome(homelab, "m1") == "Running", what="m1's exercise to start")
    # While it boots (a second), CA is told nothing of it: no target, no instance, in no group.
    assert (ca.target_size(), ca.nodes(), _claimed_by(ca, "m1")) == (0, [], "")
    wait_for(lambda: _outcome(homelab, "m1") == "Succeeded", what="m1's exercise to succeed")

    assert homelab.state("m1") == "Shutdown"
    assert _exercise(homelab, "m1")["message"].endswith("powered off again")
    assert {"ExerciseStarted", "ExerciseChecked", "ExerciseSucceeded"} <= homelab.event_reasons("m1")
    assert "ExerciseStarted" in homelab.event_reasons(GROUP)
    assert homelab.job_names("m2") == []  # one machine, the one off for more than a week
    assert (ca.target_size(), ca.nodes()) == (0, [])
    tainted = [
        body for _method, _target, body in homelab.requests.matching("PATCH", "/api/v1/nodes/")
        if EXERCISE_TAINT in json.dumps(json.loads(body))
    ]
    assert tainted, "the exercised Node was tainted"


def test_a_failed_exercise_is_a_failed_boot_found_before_ca_needs_the_machine(homelab: Homelab) -> None:
    ca = _lab(homelab, fail_boot=True)

    wait_for(lambda: _outcome(homelab, "m1") == "Failed", what="m1's exercise to fail")

    status = homelab.machine("m1")["status"]
    assert status["state"] == "Shutdown"
    assert status["consecutiveFailures"] == 1
    assert status["cooldownUntil"]
    assert {"BootJobFailed", "ExerciseFailed"} <= homelab.event_reasons("m1")
    assert (ca.target_size(), ca.nodes()) == (0, [])  # CA never saw a failed creation either


def test_a_scale_up_during_an_exercise_takes_the_exercised_machine(homelab: Homelab) -> None:
    ca = _lab(homelab, boot_seconds=3.0)
    wait_for(lambda: _outcome(homelab, "m1") == "Running", what="m1's exercise to start")

    ca.increase_size(1)

    assert ca.target_size() == 1
    homelab.wait_state("m1", "Ready")
    assert _outcome(homelab, "m1") == "TakenOver"
    assert homelab.job_names("m2") == []  # m2 has the higher priority, but m1 was on its way already
    assert _claimed_by(ca, "m1") == GROUP_ID
    assert [instance.id for instance in ca.nodes()] == [f"homelab://{NAMESPACE}/m1"]
    kube_node = homelab.kube_node("m1")
    assert kube_node is not None
    assert EXERCISE_TAINT not in json.dumps(kube_node["spec"].get("taints") or [])
    assert homelab.job_names("m1", "shutdown") == []
