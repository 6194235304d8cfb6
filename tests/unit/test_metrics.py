"""actors.metrics on its own: one series per machine for its current state, group counts that zero missing
states, and the two table-backed metric kinds printing exactly what prometheus_client's own would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)

from actors import metrics


def test_a_scrape_shows_each_series_with_its_labels_and_value() -> None:
    metrics.ACTOR_MESSAGES_HANDLED.increment(("node", "scrape/m1"), 2.0)
    metrics.set_node_state("scrape-group", "scrape-m1", "StartingUp")
    metrics.set_node_state("scrape-group", "scrape-m1", "Ready")
    metrics.set_group_machines("scrape-group", {"Ready": 1})
    try:
        lines = metrics.render().decode().splitlines()

        assert 'homelab_autoscaler_actor_messages_handled_total{actor="scrape/m1",actor_kind="node"} 2.0' in lines
        assert 'homelab_autoscaler_node_state{group="scrape-group",node="scrape-m1",state="Ready"} 1.0' in lines
        assert not any('node="scrape-m1",state="StartingUp"' in line for line in lines)
        assert 'homelab_autoscaler_group_machines{group="scrape-group",state="Ready"} 1.0' in lines
        assert "# TYPE homelab_autoscaler_actor_messages_handled_total counter" in lines
        assert "# TYPE homelab_autoscaler_node_state gauge" in lines
    finally:
        metrics.ACTOR_MESSAGES_HANDLED.remove("node", "scrape/m1")
        metrics.forget_node("scrape-group", "scrape-m1")
        metrics.forget_group("scrape-group")


def _node_state_samples(group: str, node: str) -> dict[str, float]:
    return {
        sample.labels["state"]: sample.value
        for family in metrics.REGISTRY.collect()
        if family.name == "homelab_autoscaler_node_state"
        for sample in family.samples
        if sample.labels["group"] == group and sample.labels["node"] == node
    }


@pytest.mark.parametrize(
    "states_set",
    [
        pytest.param(["Shutdown"], id="first-state"),
        pytest.param(["Shutdown", "StartingUp", "Ready"], id="earlier-states-removed"),
        pytest.param(["Ready", "Ready"], id="same-state-twice"),
        pytest.param(["Ready", "ShuttingDown", "Ready"], id="back-to-an-earlier-state"),
    ],
)
def test_set_node_state_keeps_one_series_for_the_current_state(states_set: list[str]) -> None:
    node = "node-" + "-".join(states_set)
    for state in states_set:
        metrics.set_node_state("table-group", node, state)

    # One series per machine: its current state, reading 1; earlier states leave no series behind.
    assert _node_state_samples("table-group", node) == {states_set[-1]: 1.0}
    metrics.forget_node("table-group", node)
    assert _node_state_samples("table-group", node) == {}


def test_declared_states_do_not_add_node_series() -> None:
    metrics.declare_node_states(["Shutdown", "StartingUp", "Ready", "ShuttingDown"])
    metrics.set_node_state("declared-group", "declared-node", "StartingUp")

    assert _node_state_samples("declared-group", "declared-node") == {"StartingUp": 1.0}
    metrics.forget_node("declared-group", "declared-node")


def test_record_transition_counts_and_moves_the_state_series() -> None:
    labels = {"group": "moving-group", "from_state": "Shutdown", "to_state": "StartingUp"}
    before = metrics.REGISTRY.get_sample_value("homelab_autoscaler_node_transitions_total", labels) or 0.0
    metrics.set_node_state("moving-group", "moving-node", "Shutdown")

    metrics.record_transition("moving-group", "moving-node", "Shutdown", "StartingUp")

    assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_node_transitions_total", labels) == before + 1
    assert _node_state_samples("moving-group", "moving-node") == {"StartingUp": 1.0}
    metrics.forget_node("moving-group", "moving-node")


def test_group_machines_zero_states_missing_from_the_counts() -> None:
    metrics.set_group_machines("count-group", {"Ready": 3, "Shutdown": 2})
    metrics.set_group_machines("count-group", {"Ready": 4})

    ready = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_group_machines", {"group": "count-group", "state": "Ready"}
    )
    shutdown = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_group_machines", {"group": "count-group", "state": "Shutdown"}
    )
    assert (ready, shutdown) == (4.0, 0.0)
    metrics.forget_group("count-group")
    assert metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_group_machines", {"group": "count-group", "state": "Ready"}
    ) is None


# The two per-actor/per-machine metrics keep their series as plain data; what a scrape shows must be exactly what
# prometheus_client's own Counter/Gauge with children would print after the same operations.

def _exposition(metric: object) -> str:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metric)  # type: ignore[arg-type]  # both kinds are Collectors
    return generate_latest(registry).decode()


def switch_created_series(on: bool) -> None:
    (enable_created_metrics if on else disable_created_metrics)()


@pytest.fixture
def created_series_restored() -> Iterator[None]:
    before = metrics.created_series_enabled()
    yield
    switch_created_series(before)


@pytest.mark.usefixtures("created_series_restored")
@pytest.mark.parametrize(
    "increments",
    [
        pytest.param([], id="no-series"),
        pytest.param([("node", "homelab/m1")], id="one-message"),
        pytest.param(
            [("node", "homelab/m1"), ("group", "homelab/g1"), ("node", "homelab/m1"), ("node", "homelab/m2")],
            id="several-actors-first-seen-order",
        ),
    ],
)
@pytest.mark.parametrize("created_series", [pytest.param(True, id="created"), pytest.param(False, id="no-created")])
def test_table_counter_exposition_is_that_of_a_plain_counter(
    increments: list[tuple[str, str]], created_series: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    switch_created_series(created_series)
    arguments = ("homelab_autoscaler_actor_messages_handled", "Messages handled.", ["actor_kind", "actor"])
    table = metrics.TableCounter(*arguments, registry=CollectorRegistry())
    plain = Counter(*arguments, registry=None)

    for key in increments:
        table.increment(key)
        plain.labels(*key).inc()

    assert _exposition(table) == _exposition(plain)


def test_table_counter_remove_drops_the_series() -> None:
    table = metrics.TableCounter("table_counter_removal", "Removal.", ["actor"], registry=CollectorRegistry())
    table.increment(("a",))
    table.increment(("b",))

    table.remove("a")

    text = _exposition(table)
    assert 'actor="a"' not in text
    assert 'actor="b"' in text


@pytest.mark.parametrize(
    "operations",
    [
        pytest.param([("set", "g1", "m1", "Shutdown")], id="one-machine"),
        pytest.param(
            [("set", "g1", "m1", "Shutdown"), ("set", "g1", "m2", "Shutdown"), ("set", "g1", "m1", "StartingUp")],
            id="changed-state-moves-last",
        ),
        pytest.param(
            [("set", "g1", "m1", "Ready"), ("set", "g1", "m2", "Shutdown"), ("set", "g1", "m1", "Ready")],
            id="same-state-keeps-its-place",
        ),
        pytest.param(
            [("set", "g1", "m1", "Ready"), ("set", "g1", "m2", "Ready"), ("forget", "g1", "m1", "Ready")],
            id="forgotten-machine",
        ),
    ],
)
def test_node_state_gauge_exposition_is_that_of_a_plain_gauge(operations: list[tuple[str, str, str, str]]) -> None:
    documentation = "Power state of each machine."
    table = metrics.NodeStateGauge("homelab_autoscaler_node_state", documentation, registry=CollectorRegistry())
    plain = Gauge("homelab_autoscaler_node_state", documentation, ["group", "node", "state"], registry=None)
    current: dict[tuple[str, str], str] = {}

    for operation, group, node, state in operations:
        # What actors.metrics did with a plain Gauge: remove the previous state's series, set the new one to 1.
        previous = current.pop((group, node), None)
        if previous is not None and (operation == "forget" or previous != state):
            plain.remove(group, node, previous)
        if operation == "set":
            table.set_state(group, node, state)
            plain.labels(group, node, state).set(1)
            current[(group, node)] = state
        else:
            table.forget(group, node)

    assert _exposition(table) == _exposition(plain)
