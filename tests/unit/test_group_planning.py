"""The GroupActor's pure decisions, as tables: which machines an increase, a schedule window, a delete or a
decrease picks, and where a group's template comes from. No actor runs here; tests/actors/test_group_actor.py
checks the actor that acts on them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from actors.fsm.events import CancelBoot, PowerOffRequested
from actors.fsm.group import MachineView
from actors.fsm.group_planning import (
    intended,
    plan_decrease,
    plan_delete_actions,
    plan_increase,
    plan_schedule_boots,
)
from actors.group_actor import template_source
from actors.messages import ErrorKind, MutationRefusal
from schemas import labels
from schemas.common import Taint, TaintEffect
from schemas.group import GroupSpec, NodeTemplate
from schemas.node import NodeSnapshot, NodeState, PowerPolicy
from tests.support.actor_fakes import START


def view(name: str, state: NodeState = NodeState.SHUTDOWN, **fields: object) -> MachineView:
    return replace(MachineView(name=name, state=state, provider_id=f"homelab://lab/{name}"), **fields)  # type: ignore[arg-type]


SPEC = GroupSpec(max_size=3)


@pytest.mark.parametrize(
    ("views", "delta", "expected"),
    [
        pytest.param([view("a"), view("b")], 1, ("a",), id="one-by-name"),
        pytest.param([view("a"), view("b", priority=1)], 1, ("b",), id="priority-first"),
        pytest.param([view("a", NodeState.READY), view("b")], 2, ErrorKind.RESOURCE_EXHAUSTED, id="too-few"),
        pytest.param([view("a"), view("b"), view("c"), view("d")], 4, ErrorKind.INVALID_ARGUMENT, id="beyond-max"),
        pytest.param([view("a")], 0, ErrorKind.INVALID_ARGUMENT, id="zero"),
    ],
)
def test_plan_increase(views: list[MachineView], delta: int, expected: tuple[str, ...] | ErrorKind) -> None:
    planned = plan_increase(views, SPEC, delta, START, "lab/workers")
    assert (planned.kind if isinstance(planned, MutationRefusal) else planned) == expected


@pytest.mark.parametrize(
    ("views", "min_size", "expected"),
    [
        pytest.param([view("a"), view("b", priority=1), view("c")], 2, ("b", "a"), id="best-first-up-to-min"),
        pytest.param([view("a", NodeState.READY), view("b"), view("c")], 2, ("b",), id="counts-what-is-on"),
        pytest.param([view("a", NodeState.READY), view("b")], 1, (), id="already-at-min"),
        pytest.param(
            [view("a"), view("b", power_policy=PowerPolicy.OFF)], 3, ("a",), id="as-many-as-are-eligible"
        ),
    ],
)
def test_plan_schedule_boots(views: list[MachineView], min_size: int, expected: tuple[str, ...]) -> None:
    assert plan_schedule_boots(views, GroupSpec(min_size=min_size, max_size=3), START) == expected


@pytest.mark.parametrize(
    ("state", "policy", "expected"),
    [
        pytest.param(NodeState.READY, PowerPolicy.AUTO, (PowerOffRequested(drain=False), NodeState.SHUTTING_DOWN),
                     id="ready-powers-off"),
        pytest.param(
            NodeState.STARTING_UP, PowerPolicy.AUTO, (CancelBoot(given_up=True), NodeState.SHUTDOWN), id="boot-given-up"
        ),
        pytest.param(NodeState.BOOT_FAILED, PowerPolicy.AUTO, (CancelBoot(), NodeState.SHUTDOWN), id="failed-released"),
        pytest.param(NodeState.SHUTTING_DOWN, PowerPolicy.AUTO, None, id="already-going"),
        pytest.param(NodeState.SHUTDOWN, PowerPolicy.AUTO, None, id="already-off"),
        pytest.param(NodeState.QUARANTINED, PowerPolicy.AUTO, None, id="quarantined-is-off"),
        pytest.param(NodeState.MAINTENANCE, PowerPolicy.MAINTENANCE, ErrorKind.FAILED_PRECONDITION, id="maintenance"),
        pytest.param(NodeState.READY, PowerPolicy.ON, ErrorKind.FAILED_PRECONDITION, id="kept-on"),
    ],
)
def test_plan_delete_actions(state: NodeState, policy: PowerPolicy, expected: object) -> None:
    planned = plan_delete_actions([view("a", state, power_policy=policy)], "lab/workers")
    if isinstance(planned, MutationRefusal):
        assert planned.kind == expected
    else:
        assert planned == (() if expected is None else (("a", *expected),))  # type: ignore[misc]


def test_plan_decrease_refuses_registered_boots() -> None:
    registered = view("a", NodeState.STARTING_UP, registered=True)
    refused = plan_decrease([registered], -1, "lab/workers")
    assert isinstance(refused, MutationRefusal)
    assert refused.kind is ErrorKind.FAILED_PRECONDITION
    assert plan_decrease([registered, view("b", NodeState.STARTING_UP)], -1, "lab/workers") == ("b",)


def test_an_intended_boot_counts_as_booting_at_once() -> None:
    planned = intended(view("a"), NodeState.STARTING_UP, START, booting=True)
    assert (planned.state, planned.operation_started, planned.since) == (NodeState.STARTING_UP, START, START)


@pytest.mark.parametrize(
    ("snapshots", "origin", "cpu"),
    [
        pytest.param([], "declared", "2", id="none-seen-uses-declared"),
        pytest.param([None, NodeSnapshot(capacity={"cpu": "8"}, seen_at=START)], "observed", "8", id="observed"),
        pytest.param(
            [
                NodeSnapshot(capacity={"cpu": "8"}, seen_at=START),
                NodeSnapshot(capacity={"cpu": "16"}, seen_at=START + timedelta(hours=1)),
                NodeSnapshot(capacity={"cpu": "4"}),
            ],
            "observed",
            "16",
            id="newest-wins",
        ),
    ],
)
def test_template_source(snapshots: list[NodeSnapshot | None], origin: str, cpu: str) -> None:
    taint = Taint(key="gpu", effect=TaintEffect.NO_SCHEDULE)
    spec = GroupSpec(
        max_size=3, template=NodeTemplate(capacity={"cpu": "2"}), node_labels={"tier": "gpu"}, node_taints=(taint,)
    )
    source = template_source(spec, "workers", snapshots)
    assert source is not None
    assert (source.origin, source.capacity["cpu"]) == (origin, cpu)
    # A snapshot taken as the member turned Ready may predate the Group's labels and taints: the template has them.
    assert source.labels == {labels.GROUP_LABEL: "workers", "tier": "gpu"}
    assert source.taints == (taint,)
    if origin == "declared":
        assert source.allocatable == {"cpu": "2"}


def test_an_observed_template_keeps_what_the_member_had_besides_the_managed_labels_and_taints() -> None:
    own_taint = Taint(key="dedicated", value="ci", effect=TaintEffect.NO_EXECUTE)
    managed_taint = Taint(key="gpu", effect=TaintEffect.NO_SCHEDULE)
    spec = GroupSpec(max_size=3, node_labels={"tier": "gpu"}, node_taints=(managed_taint,))
    seen = NodeSnapshot(
        labels={"kubernetes.io/arch": "arm64", "tier": "old"}, taints=(own_taint, managed_taint),
        capacity={"cpu": "8"}, seen_at=START,
    )
    source = template_source(spec, "workers", [seen])
    assert source is not None
    assert source.labels == {"kubernetes.io/arch": "arm64", labels.GROUP_LABEL: "workers", "tier": "gpu"}
    assert source.taints == (own_taint, managed_taint)


def test_no_template_without_a_ready_member_or_a_declared_one() -> None:
    assert template_source(GroupSpec(max_size=1), "workers", [None]) is None
