"""The shipped Grafana dashboard queries metrics the operator exports, and Grafana can lay it out.

A dashboard that names a metric nobody exports shows "No data" forever, and nothing else would notice: the
original project's dashboard was built on metrics it never exported. Every PromQL expression is read here and
each metric name checked against the operator's registry, with the series suffix its type really has. That the
grafana component delivers it to Grafana's sidecar needs kubectl: tests/integration/manifests/test_manifests.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from homelab_autoscaler.commands.docs import registered_metrics

ROOT: Final = Path(__file__).resolve().parents[2]
COMPONENT: Final = ROOT / "manifests" / "components" / "grafana"
DASHBOARD_FILE: Final = COMPONENT / "dashboard.json"
GRID_WIDTH: Final = 24
OUR_PREFIX: Final = "homelab_autoscaler_"

# PromQL words that look like metric names but are not.
_PROMQL_KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf"}
)

Panel = dict[str, Any]


def metric_names(expression: str) -> list[str]:
    """The metric names a PromQL expression selects (not functions, labels, keywords or variables)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expression)  # string literals (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    text = re.sub(r"\$\w+", "", text)  # Grafana variables such as $__rate_interval
    names = []
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and match.group().lower() not in _PROMQL_KEYWORDS:
            names.append(match.group())
    return names


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return dashboard


def all_panels(panels: list[Panel]) -> Iterator[Panel]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def query_panels() -> list[Panel]:
    return [panel for panel in all_panels(load_dashboard()["panels"]) if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in query_panels() for target in panel["targets"]]


def exported_series() -> dict[str, str]:
    """Every series name the operator exports → the metric family it belongs to."""
    return {series: metric.name for metric in registered_metrics() for series in metric.series}


# --- the PromQL reader itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("up", ["up"], id="bare-name"),
        pytest.param(
            'sum by (group, state) (rate(a_total{code!="OK", group=~"$group"}[$__rate_interval]))',
            ["a_total"],
            id="aggregation-labels-matchers-range",
        ),
        pytest.param(
            "histogram_quantile(0.99, sum by (le) (rate(b_bucket[5m]))) / on (job) c",
            ["b_bucket", "c"],
            id="function-and-binary-operator",
        ),
        pytest.param('d{path="x{y}"} > 1e3 and e', ["d", "e"], id="string-with-braces-and-exponent"),
    ],
)
def test_metric_names_are_read_from_promql(expression: str, expected: list[str]) -> None:
    assert metric_names(expression) == expected


# --- every query names an exported series -----------------------------------------------------------------------


def test_every_metric_the_dashboard_queries_is_exported_with_the_right_suffix() -> None:
    exported = exported_series()
    referenced = {name for expression in expressions() for name in metric_names(expression)}
    assert referenced, "the dashboard queries nothing"
    assert {name for name in referenced if not name.startswith(OUR_PREFIX)} == set(), "only our own metrics"
    assert referenced - set(exported) == set(), (
        "not exported (counters are queried with _total, histograms with _bucket/_sum/_count)"
    )


def test_every_query_selects_one_of_our_metrics() -> None:
    empty = [expression for expression in expressions() if not metric_names(expression)]
    assert empty == []


@pytest.mark.parametrize(
    "family",
    [
        "homelab_autoscaler_group_machines",
        "homelab_autoscaler_group_target_size",
        "homelab_autoscaler_node_transitions",
        "homelab_autoscaler_boot_failures",
        "homelab_autoscaler_quarantined_machines",
        "homelab_autoscaler_grpc_requests",
        "homelab_autoscaler_grpc_request_seconds",
        "homelab_autoscaler_pump_queue_depth",
        "homelab_autoscaler_pump_wait_seconds",
        "homelab_autoscaler_kube_writes",
        "homelab_autoscaler_watch_restarts",
        "homelab_autoscaler_api_reachable",
        "homelab_autoscaler_api_outages",
    ],
)
def test_the_dashboard_shows(family: str) -> None:
    exported = exported_series()
    shown = {exported.get(name) for expression in expressions() for name in metric_names(expression)}
    assert family in shown


# --- Grafana can load and lay it out --------------------------------------------------------------------------


def test_dashboard_identity() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int)
    assert isinstance(dashboard["panels"], list)


def test_panel_ids_are_unique_and_every_panel_has_queries() -> None:
    panels = list(all_panels(load_dashboard()["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in query_panels():
        assert panel["title"], panel["id"]
        assert panel["targets"], panel["title"]
        reference_ids = [target["refId"] for target in panel["targets"]]
        assert len(reference_ids) == len(set(reference_ids)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(load_dashboard()["panels"]):
        grid = panel["gridPos"]
        assert min(grid["w"], grid["h"]) >= 1, panel["title"]
        assert min(grid["x"], grid["y"]) >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]


def test_every_variable_used_is_defined() -> None:
    dashboard = load_dashboard()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    text = DASHBOARD_FILE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$(\w+)", text)) - {"__rate_interval", "__interval", "__range"}
    assert used - defined == set()
    data_sources = [panel["datasource"] for panel in query_panels()]
    data_sources += [target["datasource"] for panel in query_panels() for target in panel["targets"]]
    assert all(source == {"type": "prometheus", "uid": "$datasource"} for source in data_sources)
