"""`homelab-autoscaler docs`: write or check every documentation page that is generated from the code.

The original project's documentation drifted from its code (fields that did not exist, metrics that were never
exported). Wherever a page states a fact the code owns, the page is generated here from that code:

- `api-reference/crds/group.md`, `api-reference/crds/node.md`: whole pages, from the pydantic models
  (`schemas.reference`);
- `operations/metrics.md`: the section between its markers, from the operator's metric registry
  (`render_metrics_table`, which lives here because only the composition root may import prometheus_client
  alongside the schemas);
- `architecture/state.md`: the section between its markers, from the power state machine's transition table
  (`homelab_autoscaler.state_doc`);
- `architecture/kubernetes.md`: the section between its markers, from the table of every Kubernetes API call
  (`kubeapi.api_calls`), which the RBAC manifest is also checked against.

`--write DIR` regenerates them; `--check DIR` exits 1 with a diff when one is stale, for CI. Prose outside the
markers is written by hand and left alone.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

# The generators (models, state machine, metric registry) are imported only when the command runs, so that
# building the top-level parser, which loads every command module, stays cheap.

METRICS_BEGIN_MARKER: Final = "<!-- BEGIN GENERATED METRICS -->"
METRICS_END_MARKER: Final = "<!-- END GENERATED METRICS -->"

# The series a metric of each type is queried by (what a dashboard or alert must name).
SERIES_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


class StaleMarkersError(ValueError):
    """A document lost the markers around its generated section; the message names the file and markers."""


@dataclass(frozen=True)
class MetricDoc:
    """One exported metric as the documentation and the dashboard test see it."""

    name: str
    """The family name: for counters without `_total`, as prometheus_client names it."""
    kind: str
    """counter, gauge, histogram or summary."""
    labels: tuple[str, ...]
    help: str

    @property
    def series(self) -> tuple[str, ...]:
        """The names the metric's samples are exposed (and queried) under."""
        return tuple(self.name + suffix for suffix in SERIES_SUFFIXES.get(self.kind, ("",)))


@dataclass(frozen=True)
class GeneratedDocument:
    """A page (or part of one) generated from the code."""

    relative_path: str
    """Where it lives, relative to the docs directory."""
    expected: Callable[[str | None], str]
    """Current text (None when the file is missing) → the text the file should have."""


def registered_metrics(
    registry: CollectorRegistry | None = None, label_names: Mapping[str, tuple[str, ...]] | None = None
) -> list[MetricDoc]:
    """Every metric family in `registry`, in registration order, with its label names from `label_names`.

    Default: the operator's registry and the label names `actors.metrics` declared (a family without series
    shows none, and prometheus_client keeps a metric's label names to itself). Only the public `collect()` is used.
    """
    from actors import metrics, power_metrics
    from homelab_autoscaler import native_power

    # Imported for the collectors they register on import: the readback ages and the drivers' metrics.
    assert power_metrics.READBACK_AGES is not None
    assert native_power.POWER_METRICS is not None

    if registry is None:
        registry, label_names = metrics.REGISTRY, metrics.LABEL_NAMES
    declared = label_names or {}
    return [
        MetricDoc(family.name, family.type, tuple(declared.get(family.name, ())), family.documentation)
        for family in registry.collect()
    ]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_metrics_table(
    registry: CollectorRegistry | None = None, label_names: Mapping[str, tuple[str, ...]] | None = None
) -> str:
    """The generated section of docs/operations/metrics.md: one row per exported metric."""
    lines = [
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for metric in registered_metrics(registry, label_names):
        if metric.kind == "histogram":
            name = f"`{metric.name}` (`_bucket`, `_sum`, `_count`)"
        else:
            name = " ".join(f"`{series}`" for series in metric.series)
        labels = ", ".join(f"`{label}`" for label in metric.labels) or "—"
        lines.append(f"| {name} | {metric.kind} | {labels} | {_cell(metric.help)} |")
    return "\n".join(lines) + "\n"


def replace_between(text: str, begin: str, end: str, body: str, where: str) -> str:
    """`text` with everything between the `begin` and `end` marker lines replaced by `body`. Pure."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise StaleMarkersError(f"{where}: expected one {begin} followed by one {end}")
    start = text.index(begin) + len(begin)
    return text[:start] + "\n" + body + text[text.index(end) :]


def _whole_page(text: str) -> Callable[[str | None], str]:
    def expected(_current: str | None) -> str:
        return text

    return expected


def _between_markers(
    title: str, begin: str, end: str, render: Callable[[], str], where: str
) -> Callable[[str | None], str]:
    def expected(current: str | None) -> str:
        if current is None:  # a fresh checkout without the page: a minimal one that the prose can grow around
            current = f"# {title}\n\n{begin}\n{end}\n"
        return replace_between(current, begin, end, render(), where)

    return expected


def generated_documents() -> tuple[GeneratedDocument, ...]:
    """Every generated document, reference pages first."""
    from homelab_autoscaler import state_doc
    from kubeapi import api_calls
    from schemas.reference import render_reference_pages

    whole_pages = [GeneratedDocument(path, _whole_page(text)) for path, text in render_reference_pages().items()]
    return (
        *whole_pages,
        GeneratedDocument(
            "operations/metrics.md",
            _between_markers(
                "Metrics", METRICS_BEGIN_MARKER, METRICS_END_MARKER, render_metrics_table, "operations/metrics.md"
            ),
        ),
        GeneratedDocument(
            "architecture/state.md",
            _between_markers(
                "Machine power states",
                state_doc.BEGIN_MARKER,
                state_doc.END_MARKER,
                state_doc.render_transition_table,
                "architecture/state.md",
            ),
        ),
        GeneratedDocument(
            "architecture/kubernetes.md",
            _between_markers(
                "Talking to Kubernetes",
                api_calls.BEGIN_MARKER,
                api_calls.END_MARKER,
                api_calls.render_api_calls_table,
                "architecture/kubernetes.md",
            ),
        ),
    )


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def write(docs_directory: Path) -> int:
    """Regenerate every generated document under `docs_directory`; returns the exit status."""
    # Everything is rendered before anything is written, so a page that cannot be regenerated (lost markers)
    # leaves the directory as it was.
    for path, _current, expected in stale_documents(docs_directory):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected, encoding="utf-8")
        print(f"wrote {path}")
    return 0


def stale_documents(docs_directory: Path) -> list[tuple[Path, str, str]]:
    """(path, current text, expected text) of every generated document that is out of date."""
    stale = []
    for document in generated_documents():
        path = docs_directory / document.relative_path
        current = _read(path)
        expected = document.expected(current)
        if current != expected:
            stale.append((path, current or "", expected))
    return stale


def check(docs_directory: Path) -> int:
    """0 when every generated document is current, else 1 after printing a diff and the command to run."""
    from schemas.reference import REGENERATE_COMMAND

    stale = stale_documents(docs_directory)
    for path, current, expected in stale:
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True), expected.splitlines(keepends=True), str(path), "generated"
            )
        )
    if stale:
        print(f"{len(stale)} generated document(s) out of date; run `{REGENERATE_COMMAND}`", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "docs",
        help="write or check the documentation pages generated from the code",
        description="Write or check the API reference, the metrics, state and API call tables under a docs "
        "directory.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--write", metavar="DIR", type=Path, help="regenerate the pages in DIR (e.g. docs/)")
    target.add_argument(
        "--check", metavar="DIR", type=Path, help="exit 1 and show a diff if a page in DIR is out of date"
    )


def run(args: argparse.Namespace) -> int:
    try:
        return write(args.write) if args.write is not None else check(args.check)
    except StaleMarkersError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

