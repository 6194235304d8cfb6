"""Energy accounting: what a machine used and avoided compared with always on, from the state machine's own
bookkeeping, over the last day and since accounting began, and unchanged by an operator restart in the middle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors.fsm import events as ev
from actors.fsm.derive import JobObservation, JobPhase, KubeNodeObservation, derive
from actors.fsm.energy import Energy, add_stretch, group_energy, machine_energy, powered_on_last_day
from actors.fsm.node import KubeNodePresence, Machine, MachineConfig, step
from schemas.node import NodeSnapshot, NodeState, NodeStatus, OperationKind

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
CONFIG = MachineConfig(namespace="lab", name="m1", group="rack", kubernetes_node_name="m1", boot_timeout_seconds=1e6)
SNAPSHOT = NodeSnapshot(labels={"kubernetes.io/hostname": "m1"})
ON_WATTS, STANDBY_WATTS = 100, 10


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _event(machine: Machine, name: str) -> ev.Event:
    operation = machine.status.operation
    return {
        "boot": lambda: ev.PowerOnRequested(),
        "queue": lambda: ev.PowerOnRequested(start_now=False),
        "slot": lambda: ev.BootSlotGranted(),
        "ready": lambda: ev.NodeReady(provider_id="homelab://lab/m1", snapshot=SNAPSHOT),
        "off": lambda: ev.PowerOffRequested(),
        "gone": lambda: ev.NodeGone(),
        "shutdown-done": lambda: ev.JobSucceeded(OperationKind.SHUTDOWN, operation.job_name if operation else ""),
    }[name]()


def run(steps: list[tuple[float, str]], machine: Machine | None = None) -> Machine:
    machine = machine or Machine(config=CONFIG, status=NodeStatus(state=NodeState.SHUTDOWN, since=T0))
    for hours, name in steps:
        machine = step(machine, _event(machine, name), _at(hours)).machine
    return machine


def figures(machine: Machine, hours: float) -> tuple[Energy, Energy]:
    found = machine_energy(machine.status, ON_WATTS, STANDBY_WATTS, _at(hours))
    assert found is not None
    spans = (found.since_start, found.last_day)
    rounded = [Energy(round(span.used_wh, 6), round(span.avoided_wh, 6)) for span in spans]
    return rounded[0], rounded[1]


OFF_AT_6H = [(6, "off"), (6, "gone"), (6, "shutdown-done")]


@pytest.mark.parametrize(
    ("steps", "end_hours", "since_start", "last_day"),
    [
        pytest.param([], 24, Energy(240, 2160), Energy(240, 2160), id="off-all-day: standby only"),
        pytest.param(
            [(0, "boot"), (0, "ready"), *OFF_AT_6H], 24, Energy(780, 1620), Energy(780, 1620), id="on-six-hours"
        ),
        pytest.param(
            [(0, "boot"), (0.5, "ready"), (1, "off"), (1, "gone"), (1, "shutdown-done")],
            24,
            Energy(330, 2070),
            Energy(330, 2070),
            id="booting-and-shutting-down-count-as-on",
        ),
        pytest.param(
            [(0, "queue"), (2, "slot"), (2.5, "ready"), (3, "off"), (3.5, "gone"), (3.5, "shutdown-done")],
            24,
            Energy(375, 2025),
            Energy(375, 2025),
            id="waiting-for-a-boot-slot-counts-as-off",
        ),
        pytest.param(
            [(0, "boot"), (0, "ready")], 10, Energy(1000, 0), Energy(1000, 0), id="still-on: the current stretch counts"
        ),
        pytest.param(
            [(0, "boot"), (0, "ready"), *OFF_AT_6H],
            48,
            Energy(780 + 240, 1620 + 2160),
            Energy(240, 2160),
            id="the-last-day-forgets-yesterday",
        ),
    ],
)
def test_energy_of_a_state_sequence(
    steps: list[tuple[float, str]], end_hours: float, since_start: Energy, last_day: Energy
) -> None:
    assert figures(run(steps), end_hours) == (since_start, last_day)


def test_a_restart_in_the_middle_changes_nothing() -> None:
    steps = [(0, "boot"), (0.5, "ready"), *OFF_AT_6H, (20, "boot"), (20.25, "ready")]
    straight = run([*steps, (23, "off"), (23.5, "gone"), (23.5, "shutdown-done")])

    # The operator dies at 21 h while the machine is Ready; a new one reads the status back from the API (JSON),
    # derives the machine from it and the Ready Kubernetes Node, and carries on.
    before = run(steps)
    stored = before.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    restarted = derive(stored, CONFIG, (), KubeNodeObservation(True, "homelab://lab/m1", SNAPSHOT), _at(21)).machine
    assert restarted.kube_node is KubeNodePresence.READY
    resumed = run([(23, "off"), (23.5, "gone"), (23.5, "shutdown-done")], restarted)

    assert figures(resumed, 30) == figures(straight, 30)
    assert figures(resumed, 30)[0] == Energy(round(100 * 9.5 + 10 * 20.5, 6), round(90 * 20.5, 6))


def test_a_restart_that_finds_the_boot_finished_counts_the_boot() -> None:
    booting = run([(0, "boot")])
    operation = booting.status.operation
    assert operation is not None
    job = JobObservation(operation.job_name, OperationKind.STARTUP, operation.attempt, JobPhase.SUCCEEDED, _at(0))
    ready = KubeNodeObservation(True, "homelab://lab/m1", SNAPSHOT)
    restarted = derive(booting.status, CONFIG, (job,), ready, _at(1)).machine
    assert restarted.status.state is NodeState.READY
    assert figures(restarted, 2)[0] == Energy(200, 0)


@pytest.mark.parametrize("watts", [None, 0])
def test_unknown_draw_has_no_figures_and_groups_count_it_apart(watts: int | None) -> None:
    machine = run([(0, "boot"), (0, "ready")])
    assert machine_energy(machine.status, watts, STANDBY_WATTS, _at(5)) is None
    group = group_energy([machine_energy(machine.status, watts, None, _at(5)), None])
    assert (group.known, group.unknown, group.since_start) == (0, 2, Energy())


def test_hours_are_filled_across_hour_boundaries_and_roll_off_after_a_day() -> None:
    by_hour, end = add_stretch((), None, _at(0.5), _at(2.25))
    assert end == _at(2)
    assert by_hour[-3:] == (1800.0, 3600.0, 900.0)
    status = NodeStatus(
        state=NodeState.SHUTDOWN, since=_at(2.25), accounting_since=T0, powered_on_by_hour=by_hour,
        powered_on_hours_end=end,
    )
    assert powered_on_last_day(status, _at(3)) == (6300.0, 3 * 3600.0)
    # 25.5 h: the window starts at 1.5 h; hour 0 is gone, half of hour 1 is inside it (its 3600 s count as 1800).
    assert powered_on_last_day(status, _at(25.5)) == (1800.0 + 900.0, 24 * 3600.0)
