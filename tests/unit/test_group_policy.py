"""Group policy: which machines are powered on, which boots are cancelled, and what CA is told."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from actors.fsm.errors import CannotDecrease, DeleteRefused, NotEnoughMachines
from actors.fsm.group import (
    InstanceError,
    InstanceErrorClass,
    InstanceState,
    InstanceView,
    MachineView,
    boot_slots,
    check_delete,
    choose_boots_to_cancel,
    choose_for_scale_up,
    instance_status,
    machine_view,
    queued_in_order,
    state_counts,
    target_size,
)
from actors.fsm.node import KubeNodePresence, Machine, MachineConfig
from schemas.group import GroupSpec
from schemas.node import NodeState, NodeStatus, Operation, OperationKind, PowerPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = GroupSpec(max_size=10)


def view(name: str, state: NodeState = NodeState.SHUTDOWN, **fields: Any) -> MachineView:
    plain = MachineView(name=name, state=state, provider_id=f"homelab://homelab/{name}", since=NOW - timedelta(hours=1))
    return replace(plain, **fields)


def ago(minutes: int) -> datetime:
    return NOW - timedelta(minutes=minutes)


# --------------------------------------------------------------------------------------------------
# Choosing machines to power on


@pytest.mark.parametrize(
    ("machines", "delta", "chosen"),
    [
        pytest.param([view("a", priority=1), view("b", priority=5)], 1, ("b",), id="higher-priority-first"),
        pytest.param(
            [view("a", hourly_price=Decimal("0.30")), view("b", hourly_price=Decimal("0.12"))],
            1,
            ("b",),
            id="cheaper-first",
        ),
        pytest.param([view("a"), view("b", hourly_price=Decimal("0.50"))], 1, ("b",), id="unknown-price-last"),
        pytest.param([view("a", power_watts=120), view("b", power_watts=45)], 1, ("b",), id="lower-power-first"),
        pytest.param([view("a"), view("b", power_watts=300)], 1, ("b",), id="unknown-power-last"),
        pytest.param([view("a", since=ago(5)), view("b", since=ago(500))], 1, ("b",), id="off-longest-first"),
        pytest.param([view("b"), view("a")], 2, ("a", "b"), id="then-by-name"),
        pytest.param(
            [
                view("cheap-low", priority=0, hourly_price=Decimal("0.01")),
                view("dear-high", priority=2, hourly_price=Decimal("0.90")),
            ],
            1,
            ("dear-high",),
            id="priority-beats-price",
        ),
        pytest.param(
            [
                view("on", NodeState.READY),
                view("cool", cooldown_until=NOW + timedelta(seconds=1)),
                view("warm", cooldown_until=NOW - timedelta(seconds=1)),
            ],
            1,
            ("warm",),
            id="cooldown-passed-is-eligible",
        ),
    ],
)
def test_scale_up_order(machines: list[MachineView], delta: int, chosen: tuple[str, ...]) -> None:
    assert choose_for_scale_up(machines, delta, SPEC, NOW) == chosen


@pytest.mark.parametrize(
    ("machine", "why"),
    [
        pytest.param(view("x", cooldown_until=NOW + timedelta(minutes=5)), "1 cooling down", id="cooling-down"),
        pytest.param(view("x", NodeState.QUARANTINED), "1 quarantined", id="quarantined"),
        pytest.param(view("x", power_policy=PowerPolicy.OFF), "1 powerPolicy Off", id="policy-off"),
        pytest.param(view("x", power_policy=PowerPolicy.ON), "1 powerPolicy On", id="policy-on"),
        pytest.param(view("x", NodeState.MAINTENANCE), "1 in maintenance", id="maintenance"),
        pytest.param(view("x", NodeState.READY), "1 already on", id="already-on"),
        pytest.param(view("x", NodeState.BOOT_FAILED), "1 already on", id="boot-failed"),
        pytest.param(view("x", NodeState.SHUTTING_DOWN), "1 shutting down", id="shutting-down"),
    ],
)
def test_never_chosen_and_the_refusal_says_why(machine: MachineView, why: str) -> None:
    with pytest.raises(NotEnoughMachines, match=why) as raised:
        choose_for_scale_up([machine, view("ok")], 2, SPEC, NOW)
    assert (raised.value.requested, raised.value.eligible) == (2, 1)


def test_scale_up_is_all_or_nothing() -> None:
    machines = [view("a"), view("b"), view("c", NodeState.QUARANTINED)]
    with pytest.raises(NotEnoughMachines, match="cannot power on 3 machine"):
        choose_for_scale_up(machines, 3, SPEC, NOW)


@pytest.mark.parametrize(
    ("running", "delta", "allowed"),
    [
        pytest.param(2, 1, True, id="to-max"),
        pytest.param(2, 2, False, id="beyond-max"),
        pytest.param(3, 1, False, id="at-max"),
    ],
)
def test_scale_up_never_goes_beyond_max_size(running: int, delta: int, allowed: bool) -> None:
    machines = [view(f"on-{i}", NodeState.READY) for i in range(running)] + [view(f"off-{i}") for i in range(5)]
    spec = GroupSpec(max_size=3)
    if allowed:
        assert len(choose_for_scale_up(machines, delta, spec, NOW)) == delta
    else:
        with pytest.raises(NotEnoughMachines, match="exceed maxSize 3"):
            choose_for_scale_up(machines, delta, spec, NOW)


@pytest.mark.parametrize("delta", [0, -1])
def test_scale_up_needs_a_positive_delta(delta: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        choose_for_scale_up([view("a")], delta, SPEC, NOW)


# --------------------------------------------------------------------------------------------------
# Target size, boot slots, cancelling


@pytest.mark.parametrize(
    ("states", "target"),
    [
        pytest.param([NodeState.SHUTDOWN, NodeState.QUARANTINED, NodeState.MAINTENANCE], 0, id="none-on"),
        pytest.param([NodeState.STARTING_UP, NodeState.READY, NodeState.BOOT_FAILED], 3, id="all-counted"),
        pytest.param([NodeState.SHUTTING_DOWN, NodeState.READY], 1, id="shutting-down-not-counted"),
    ],
)
def test_target_size_is_derived_from_states(states: list[NodeState], target: int) -> None:
    assert target_size([view(f"m{i}", state) for i, state in enumerate(states)]) == target


def _booting(name: str, minutes_ago: int) -> MachineView:
    return view(name, NodeState.STARTING_UP, operation_started=ago(minutes_ago), since=ago(minutes_ago))


def _queued(name: str, minutes_ago: int) -> MachineView:
    return view(name, NodeState.STARTING_UP, since=ago(minutes_ago))


@pytest.mark.parametrize(
    ("limit", "machines", "slots"),
    [
        pytest.param(None, [_booting("a", 1)], None, id="unlimited"),
        pytest.param(2, [_booting("a", 1), _queued("b", 1)], 1, id="one-free"),
        pytest.param(2, [_booting("a", 1), _booting("b", 1), _queued("c", 1)], 0, id="full"),
        pytest.param(1, [_booting("a", 1), _booting("b", 1)], 0, id="never-negative"),
        pytest.param(2, [view("a", NodeState.READY)], 2, id="ready-does-not-count"),
    ],
)
def test_boot_slots(limit: int | None, machines: list[MachineView], slots: int | None) -> None:
    assert boot_slots(machines, GroupSpec(max_size=10, max_concurrent_boots=limit)) == slots


def test_queued_machines_are_granted_oldest_first() -> None:
    machines = [_queued("young", 1), _booting("busy", 9), _queued("old", 7), _queued("middle", 3)]
    spec = GroupSpec(max_size=10, max_concurrent_boots=3)
    assert queued_in_order(machines) == ("old", "middle", "young")
    assert queued_in_order(machines)[: boot_slots(machines, spec)] == ("old", "middle")


@pytest.mark.parametrize(
    ("machines", "count", "cancelled"),
    [
        pytest.param([_booting("old", 9), _booting("new", 1)], 1, ("new",), id="newest-first"),
        pytest.param(
            [replace(_booting("registered", 1), registered=True), _booting("unregistered", 5)],
            1,
            ("unregistered",),
            id="registered-never",
        ),
        pytest.param(
            [view("failed", NodeState.BOOT_FAILED, since=ago(2)), _queued("queued", 4)],
            2,
            ("failed", "queued"),
            id="failed-and-queued",
        ),
    ],
)
def test_cancel_only_unregistered_boots_newest_first(
    machines: list[MachineView], count: int, cancelled: tuple[str, ...]
) -> None:
    assert choose_boots_to_cancel(machines, count) == cancelled


def test_cannot_decrease_into_registered_nodes() -> None:
    machines = [_booting("a", 3), replace(_booting("b", 1), registered=True), view("c", NodeState.READY)]
    with pytest.raises(CannotDecrease, match="cannot cancel 2 boot") as raised:
        choose_boots_to_cancel(machines, 2)
    assert raised.value.available == 1


# --------------------------------------------------------------------------------------------------
# What CA sees


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        pytest.param(view("a", NodeState.STARTING_UP), InstanceState.CREATING, id="booting"),
        pytest.param(view("a", NodeState.READY), InstanceState.RUNNING, id="ready"),
        pytest.param(view("a", NodeState.SHUTTING_DOWN), InstanceState.DELETING, id="shutting-down"),
        pytest.param(view("a", NodeState.SHUTDOWN), None, id="off-not-listed"),
        pytest.param(view("a", NodeState.QUARANTINED), None, id="quarantined-not-listed"),
        pytest.param(view("a", NodeState.MAINTENANCE), None, id="maintenance-not-listed"),
    ],
)
def test_instance_states(machine: MachineView, expected: InstanceState | None) -> None:
    instance = instance_status(machine)
    if expected is None:
        assert instance is None
    else:
        assert instance == InstanceView(id="homelab://homelab/a", state=expected)


@pytest.mark.parametrize(
    ("reason", "code"),
    [("BootTimedOut", "BootTimedOut"), ("BootJobFailed", "BootFailed")],
)
def test_a_failed_boot_is_creating_with_error_info(reason: str, code: str) -> None:
    machine = view("a", NodeState.BOOT_FAILED, reason=reason, message="no reply from BMC")
    assert instance_status(machine) == InstanceView(
        id="homelab://homelab/a",
        state=InstanceState.CREATING,
        error=InstanceError(code=code, message="no reply from BMC", error_class=InstanceErrorClass.OTHER),
    )


@pytest.mark.parametrize(
    ("learned", "spec", "instance_id"),
    [
        pytest.param("pxe://m1", "ipmi://m1", "pxe://m1", id="learned-wins"),
        pytest.param(None, "ipmi://m1", "ipmi://m1", id="spec-override"),
        pytest.param(None, None, "homelab://homelab/m1", id="default"),
    ],
)
def test_instance_id_is_the_provider_id_the_node_carries(
    learned: str | None, spec: str | None, instance_id: str
) -> None:
    config = MachineConfig(namespace="homelab", name="m1", group="g", kubernetes_node_name="m1", provider_id=spec)
    machine = Machine(
        config=config, status=NodeStatus.model_validate({"state": NodeState.READY, "provider_id": learned})
    )
    instance = instance_status(machine_view(machine))
    assert instance is not None
    assert instance.id == instance_id


def test_machine_view_summarises_a_machine() -> None:
    operation = Operation(kind=OperationKind.STARTUP, attempt=2, job_name="m1-startup-2", started=ago(1))
    config = MachineConfig(namespace="homelab", name="m1", group="g", kubernetes_node_name="m1")
    machine = Machine(
        config=config,
        status=NodeStatus(state=NodeState.STARTING_UP, since=ago(1), operation=operation, attempts=2),
        kube_node=KubeNodePresence.NOT_READY,
    )
    summary = machine_view(machine, priority=3, hourly_price=Decimal("0.2"), power_watts=90)
    assert (summary.registered, summary.operation_started, summary.priority) == (True, ago(1), 3)


@pytest.mark.parametrize(
    ("machine", "why"),
    [
        pytest.param(view("a", NodeState.MAINTENANCE), "in maintenance", id="maintenance"),
        pytest.param(view("a", NodeState.READY, power_policy=PowerPolicy.ON), "kept on", id="policy-on"),
        pytest.param(
            view("a", NodeState.STARTING_UP, power_policy=PowerPolicy.ON), "kept on", id="policy-on-while-booting"
        ),
        pytest.param(view("a", NodeState.READY), None, id="ready-auto"),
        pytest.param(view("a", NodeState.SHUTDOWN), None, id="already-off-idempotent"),
        pytest.param(view("a", NodeState.BOOT_FAILED, power_policy=PowerPolicy.ON), None, id="failed-boot"),
    ],
)
def test_check_delete(machine: MachineView, why: str | None) -> None:
    if why is None:
        check_delete(machine)
    else:
        with pytest.raises(DeleteRefused, match=why):
            check_delete(machine)


def test_state_counts_list_every_state() -> None:
    counts = state_counts([view("a", NodeState.READY), view("b", NodeState.READY), view("c")])
    assert counts == {
        "Shutdown": 1,
        "StartingUp": 0,
        "Ready": 2,
        "ShuttingDown": 0,
        "BootFailed": 0,
        "Quarantined": 0,
        "Maintenance": 0,
    }
