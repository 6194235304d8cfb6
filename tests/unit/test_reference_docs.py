"""The generated documentation: committed pages are current, complete, and their links lead somewhere.

The original project's API reference described fields its types did not have; these tests are why ours cannot:
the pages are compared with what the models, the metric registry and the state machine generate today.
"""

from __future__ import annotations

import re
import shutil
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel

from actors import metrics
from homelab_autoscaler.cli import main
from homelab_autoscaler.commands.docs import (
    METRICS_BEGIN_MARKER,
    METRICS_END_MARKER,
    GeneratedDocument,
    generated_documents,
    registered_metrics,
    render_metrics_table,
)
from schemas import GROUP_VERSION
from schemas.group import FailurePolicy, PowerOffNodePolicy
from schemas.node import OperationKind
from schemas.reference import (
    PAGES,
    REGENERATE_COMMAND,
    ReferenceGenerationError,
    ResourcePage,
    enum_member_docs,
    field_rows,
    heading_anchor,
    object_sections,
)
from schemas.validation import validate_group, validate_node

DOCS = Path(__file__).resolve().parents[2] / "docs"


def committed(relative_path: str) -> str:
    return (DOCS / relative_path).read_text(encoding="utf-8")


# --- the committed pages are the generated ones --------------------------------------------------------------


@pytest.mark.parametrize(
    "document", [pytest.param(document, id=document.relative_path) for document in generated_documents()]
)
def test_committed_page_is_what_the_code_generates(document: GeneratedDocument) -> None:
    path = DOCS / document.relative_path
    current = path.read_text(encoding="utf-8") if path.exists() else None
    assert current == document.expected(current), (
        f"docs/{document.relative_path} is out of date with the code; run `{REGENERATE_COMMAND}`"
    )


# --- the reference pages are complete ------------------------------------------------------------------------


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def reachable_fields(resource: type[BaseModel]) -> set[tuple[type[BaseModel], str]]:
    """Every (model, field name) a user can write or read under the resource's spec and status."""
    seen: set[type[BaseModel]] = set()
    fields: set[tuple[type[BaseModel], str]] = set()

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            fields.add((model, name))
            for child in _models_in(info.annotation):
                visit(child)

    for part in ("spec", "status"):
        for model in _models_in(resource.model_fields[part].annotation):
            visit(model)
    return fields


@pytest.mark.parametrize("page", [pytest.param(page, id=page.kind) for page in PAGES])
def test_every_model_field_has_a_row_on_its_page(page: ResourcePage) -> None:
    rows = field_rows(page.model)
    documented = {(row.model, row.field_name) for row in rows}
    assert reachable_fields(page.model) - documented == set()
    text = committed(page.relative_path)
    missing = [row.path for row in rows if f"\n| `{row.path}` | " not in text]
    assert missing == []


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param(
            "group.md",
            "| `spec.failurePolicy.cooldownBase` | duration | `30s` | no | Cooldown after the first failed boot",
            id="nested-duration-with-default",
        ),
        pytest.param("group.md", "| `spec.maxSize` | integer | — | yes |", id="required-field"),
        pytest.param(
            "group.md",
            "Consecutive failed boots after which a machine is quarantined. Allowed: at least 1, at most 100. |",
            id="range-limits",
        ),
        pytest.param("group.md", "| `spec.template.capacity` | map of string to quantity |", id="quantity-map"),
        pytest.param(
            "group.md",
            "| `spec.powerOffNodePolicy` | [`PowerOffNodePolicy`](#poweroffnodepolicy-values) | `Delete` | no |",
            id="enum-default",
        ),
        pytest.param(
            "group.md",
            "| `Keep` | Keep the NotReady Node object (it then counts towards CA's unready thresholds). |",
            id="enum-member-docstring",
        ),
        pytest.param("group.md", "- minSize must not be greater than maxSize", id="cel-rule"),
        pytest.param(
            "node.md",
            "| `BootFailed` | The last boot failed or timed out; reported to CA as a failed creation",
            id="state-docstring",
        ),
        pytest.param(
            "node.md",
            "| `spec.shutdownJob` | [object](#specstartupjob) | — | no | Job that powers the machine off (set both "
            "Jobs, or power instead). Same fields as `spec.startupJob`. |",
            id="shared-type-points-at-first",
        ),
        pytest.param(
            "node.md",
            "| `spec.startupJob.env[].valueFrom.secretKeyRef.name` | string | — | yes |",
            id="deep-list-path",
        ),
        pytest.param("node.md", "`<scheme>://<id>`, such as `k3s://node1`", id="provider-id-pattern-from-crd"),
        pytest.param("node.md", "| `STATE` | Power state of the machine. | `.status.state` |", id="printer-column"),
        pytest.param("node.md", "`metadata.annotations[infra.homecluster.dev/reset]`", id="reset-annotation"),
    ],
)
def test_reference_page_states(page: str, expected: str) -> None:
    assert expected in committed(f"api-reference/crds/{page}")


@pytest.mark.parametrize(
    "relative_path",
    [pytest.param(page.relative_path, id=page.kind) for page in PAGES] + [pytest.param("operations/metrics.md")],
)
def test_every_in_page_link_leads_to_a_heading(relative_path: str) -> None:
    text = committed(relative_path)
    anchors = {heading_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    targets = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert targets - anchors == set()


# --- the generator's pieces -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enum_class", "expected"),
    [
        pytest.param(
            PowerOffNodePolicy,
            {
                "DELETE": "Delete the Kubernetes Node after a confirmed power-off, so CA never counts it as unready.",
                "KEEP": "Keep the NotReady Node object (it then counts towards CA's unready thresholds).",
            },
            id="documented-members",
        ),
        pytest.param(OperationKind, {}, id="no-member-docstrings"),
    ],
)
def test_enum_member_docs_are_read_from_the_source(enum_class: type[Enum], expected: dict[str, str]) -> None:
    assert enum_member_docs(enum_class) == expected


def test_a_union_the_reference_cannot_spell_names_the_field() -> None:
    class Ambiguous(BaseModel):
        size: int | str

    with pytest.raises(ReferenceGenerationError, match=r"Ambiguous\.size"):
        object_sections([("spec", Ambiguous)])


def test_a_model_used_twice_is_expanded_once() -> None:
    class Twice(BaseModel):
        first: FailurePolicy
        second: FailurePolicy

    sections = object_sections([("spec", Twice)])
    assert [section.path for section in sections] == ["spec", "spec.first"]


# --- metrics ---------------------------------------------------------------------------------------------------


def test_every_registered_metric_is_on_the_metrics_page_with_its_labels() -> None:
    text = committed("operations/metrics.md")
    section = text[text.index(METRICS_BEGIN_MARKER) : text.index(METRICS_END_MARKER)]
    for metric in registered_metrics():
        shown_as = re.compile(rf"^\| `{metric.name}(_total)?` ")
        row = next((line for line in section.splitlines() if shown_as.match(line)), None)
        assert row is not None, metric.name
        assert all(f"`{label}`" in row for label in metric.labels), row


@pytest.mark.parametrize(
    ("declare", "label_names", "expected_row"),
    [
        pytest.param(
            lambda registry: Counter("jobs", "Jobs made.", ["group"], registry=registry),
            {"jobs": ("group",)},
            "| `jobs_total` | counter | `group` | Jobs made. |",
            id="counter-is-queried-with-total",
        ),
        pytest.param(
            lambda registry: Gauge("depth", "Queue depth.", registry=registry),
            {},
            "| `depth` | gauge | — | Queue depth. |",
            id="gauge-without-labels",
        ),
        pytest.param(
            lambda registry: Histogram("wait_seconds", "Wait | time.", ["kind"], registry=registry),
            {"wait_seconds": ("kind",)},
            "| `wait_seconds` (`_bucket`, `_sum`, `_count`) | histogram | `kind` | Wait \\| time. |",
            id="histogram-series-and-escaped-pipe",
        ),
    ],
)
def test_metrics_table_row(
    declare: typing.Callable[[CollectorRegistry], object], label_names: dict[str, tuple[str, ...]], expected_row: str
) -> None:
    registry = CollectorRegistry()
    declare(registry)
    assert expected_row in render_metrics_table(registry, label_names).splitlines()


def test_the_declared_label_names_are_those_the_operator_exposes() -> None:
    # Every family has declared label names (else the metrics page would show none), and a family's series carry
    # exactly those labels. A scrape after one series of each shows them.
    metrics.set_node_state("docs-group", "docs-node", "Ready")
    metrics.ASKS.labels("ok")
    try:
        families = {family.name: family for family in metrics.REGISTRY.collect()}
        assert list(families) == list(metrics.LABEL_NAMES)
        for name, family in families.items():
            for sample in family.samples:
                assert set(sample.labels) - {"le"} == set(metrics.LABEL_NAMES[name]), sample
    finally:
        metrics.forget_node("docs-group", "docs-node")


# --- the command -------------------------------------------------------------------------------------------------


def test_write_then_check_in_an_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "--write", str(tmp_path)]) == 0
    assert (tmp_path / "api-reference" / "crds" / "node.md").read_text() == committed("api-reference/crds/node.md")
    assert main(["docs", "--check", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


def test_check_fails_on_a_stale_page_and_names_the_regenerate_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(DOCS, tmp_path, dirs_exist_ok=True)
    page = tmp_path / "api-reference" / "crds" / "group.md"
    page.write_text(page.read_text().replace("| `spec.maxSize` |", "| `spec.maximum` |"))
    assert main(["docs", "--check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "-| `spec.maximum` |" in captured.out
    assert "+| `spec.maxSize` |" in captured.out
    assert REGENERATE_COMMAND in captured.err


def test_a_page_that_lost_its_markers_is_an_error_naming_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "operations" / "metrics.md"
    page.parent.mkdir(parents=True)
    page.write_text("# Metrics\n\nno markers here\n")
    assert main(["docs", "--write", str(tmp_path)]) == 2
    assert "operations/metrics.md" in capsys.readouterr().err
    assert page.read_text() == "# Metrics\n\nno markers here\n"


# --- the hand-written pages ------------------------------------------------------------------------------------

HAND_WRITTEN = (
    "getting-started/overview.md",
    "architecture/overview.md",
    "troubleshooting/debugging-guide.md",
    "operations/metrics.md",
    "api-reference/examples.md",
    "operations/status.md",
    "operations/install.md",
)


def _headings(path: Path) -> set[str]:
    return {heading_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize(
    "relative_path", [pytest.param(path, id=path) for path in (*HAND_WRITTEN, *(p.relative_path for p in PAGES))]
)
def test_links_between_pages_lead_somewhere(relative_path: str) -> None:
    page = DOCS / relative_path
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)", page.read_text()):
        file_part, anchor = target
        linked = (page.parent / file_part).resolve()
        if not linked.exists():
            broken.append(file_part)
        elif anchor and anchor not in _headings(linked):
            broken.append(f"{file_part}#{anchor}")
    assert broken == []


def _yaml_blocks(text: str) -> Iterator[dict[str, object]]:
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
        yield from (document for document in yaml.safe_load_all(block) if isinstance(document, dict))


@pytest.mark.parametrize("relative_path", [pytest.param(path, id=path) for path in HAND_WRITTEN])
def test_groups_and_nodes_shown_in_the_docs_are_valid(relative_path: str) -> None:
    problems = []
    for document in _yaml_blocks(committed(relative_path)):
        if document.get("kind") == "Group" and document.get("apiVersion") == GROUP_VERSION:
            problems += [str(error) for error in validate_group(document)]
        elif document.get("kind") == "Node" and document.get("apiVersion") == GROUP_VERSION:
            problems += [str(error) for error in validate_node(document)]
    assert problems == []


def test_the_examples_page_shows_a_minimal_group_and_node() -> None:
    kinds = [document.get("kind") for document in _yaml_blocks(committed("api-reference/examples.md"))]
    assert kinds.count("Group") >= 1
    assert kinds.count("Node") >= 1


def test_every_event_reason_the_debugging_guide_lists_is_one_the_operator_records() -> None:
    guide = committed("troubleshooting/debugging-guide.md")
    section = guide[guide.index("### Events") : guide.index("### The operator's log")]
    rows = re.findall(r"^\| (.+?) \| (?:Normal|Warning) \|", section, flags=re.MULTILINE)
    reasons = {reason for row in rows for reason in re.findall(r"`(\w+)`", row)}
    sources = "".join(
        path.read_text() for package in ("actors", "kubeapi") for path in (DOCS.parent / package).rglob("*.py")
    )
    assert reasons
    assert {reason for reason in reasons if f'"{reason}"' not in sources} == set()
