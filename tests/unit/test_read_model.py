"""The read model answers the gateway's lookups from the latest published snapshots, in O(1)."""

from __future__ import annotations

import pytest

from actors.fsm.group import InstanceState, InstanceView
from actors.read_model import GroupSnapshot, MachineSnapshot, ReadModel, describe_inventory, group_id
from schemas.node import NodeState, PowerPolicy


def machine(name: str, state: NodeState = NodeState.READY, provider_id: str | None = None) -> MachineSnapshot:
    pid = provider_id if provider_id is not None else f"homelab://lab/{name}"
    instance = InstanceView(pid, InstanceState.RUNNING) if state is NodeState.READY else None
    return MachineSnapshot(name, "lab", f"{name}-node", pid, state, PowerPolicy.AUTO, instance)


def group(name: str, *machines: MachineSnapshot, version: int = 1) -> GroupSnapshot:
    return GroupSnapshot(group_id("lab", name), "lab", name, 0, 5, len(machines), machines, version=version)


def test_group_ids_are_namespaced_so_same_named_groups_never_merge() -> None:
    assert group_id("lab", "workers") != group_id("garage", "workers")


def test_lookup_by_provider_id_first_then_by_node_name() -> None:
    model = ReadModel()
    model.publish(group("a", machine("m1"), machine("m2", provider_id="k3s://m2-node")))
    found = model.machine_for(provider_id="k3s://m2-node")
    assert found is not None
    assert found[1].name == "m2"
    by_name = model.machine_for(provider_id="k3s://unexpected", node_name="m1-node")
    assert by_name is not None
    assert by_name[1].name == "m1"
    assert model.machine_for(provider_id="k3s://nobody", node_name="control-plane") is None


def test_a_ca_stand_in_node_resolves_by_its_provider_id() -> None:
    model = ReadModel()
    model.publish(group("a", machine("m1", NodeState.BOOT_FAILED)))
    # CA builds stand-ins with name == provider id == instance id.
    found = model.machine_for(provider_id="homelab://lab/m1", node_name="homelab://lab/m1")
    assert found is not None
    assert found[0].id == "lab/a"


def test_republishing_moves_and_drops_index_entries() -> None:
    model = ReadModel()
    model.publish(group("a", machine("m1"), machine("m2")))
    model.publish(group("a", machine("m1"), version=2))
    assert model.group_for_provider_id("homelab://lab/m2") is None
    assert model.group_for_node_name("m2-node") is None
    model.publish(group("b", machine("m2")))
    assert (model.group_for_node_name("m2-node") or group("x")).id == "lab/b"


def test_a_machine_moving_between_groups_is_never_dropped_by_the_old_groups_update() -> None:
    model = ReadModel()
    model.publish(group("a", machine("m1")))
    model.publish(group("b", machine("m1")))  # relabelled into b before a republished
    model.publish(group("a", version=2))
    assert (model.group_for_provider_id("homelab://lab/m1") or group("x")).id == "lab/b"


def test_removed_group_disappears_from_every_lookup() -> None:
    model = ReadModel()
    model.publish(group("a", machine("m1")))
    model.remove("lab/a")
    assert (model.group("lab/a"), model.groups(), model.group_for_node_name("m1-node")) == (None, (), None)


@pytest.mark.parametrize(
    ("state", "listed", "indexed"),
    [
        pytest.param(NodeState.READY, True, True, id="ready"),
        pytest.param(NodeState.SHUTDOWN, False, True, id="off-spare-not-listed"),
        pytest.param(NodeState.MAINTENANCE, False, False, id="maintenance-in-no-group"),
    ],
)
def test_what_ca_sees_of_each_machine(state: NodeState, listed: bool, indexed: bool) -> None:
    model = ReadModel()
    model.publish(group("a", machine("m1", state)))
    snapshot = model.group("lab/a")
    assert snapshot is not None
    assert (len(snapshot.instances) == 1) is listed
    assert (model.group_for_node_name("m1-node") is not None) is indexed


def test_a_machine_being_exercised_is_in_no_group_for_ca() -> None:
    exercised = MachineSnapshot(
        "m1", "lab", "m1-node", "homelab://lab/m1", NodeState.STARTING_UP, PowerPolicy.AUTO, None, exercising=True
    )
    model = ReadModel()
    model.publish(group("a", exercised))
    assert model.machine_for(provider_id="homelab://lab/m1", node_name="m1-node") is None


def test_groups_are_listed_in_id_order() -> None:
    model = ReadModel()
    for name in ("c", "a", "b"):
        model.publish(group(name))
    assert [snapshot.name for snapshot in model.groups()] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        pytest.param((), "0 groups, 0 machines", id="empty"),
        pytest.param((group("a", machine("m1")),), "1 group, 1 machine: Ready 1", id="one-of-each"),
        pytest.param(
            (
                group("a", machine("m1"), machine("m2", NodeState.SHUTDOWN), machine("m3", NodeState.SHUTDOWN)),
                group("b", machine("m4", NodeState.QUARANTINED), machine("m5", NodeState.STARTING_UP)),
            ),
            "2 groups, 5 machines: Shutdown 2, StartingUp 1, Ready 1, Quarantined 1",
            id="by-state-in-state-order",
        ),
    ],
)
def test_an_inventory_is_described_in_one_line_by_state(groups: tuple[GroupSnapshot, ...], expected: str) -> None:
    assert describe_inventory(groups) == expected
