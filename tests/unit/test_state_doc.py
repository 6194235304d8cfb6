"""docs/architecture/state.md shows the transition table the code actually has."""

from __future__ import annotations

from pathlib import Path

from homelab_autoscaler.state_doc import BEGIN_MARKER, END_MARKER, render_transition_table, rewrite_document

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "architecture" / "state.md"


def test_the_documented_transition_table_is_the_generated_one() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    assert text.count(BEGIN_MARKER) == 1
    assert text.count(END_MARKER) == 1
    assert rewrite_document(text) == text, (
        "docs/architecture/state.md is out of date with actors/fsm/node.py; run "
        "`.venv/bin/homelab-autoscaler docs --write docs/`"
    )


def test_the_generated_section_names_every_state_in_the_diagram() -> None:
    section = render_transition_table()
    assert "```mermaid\nstateDiagram-v2" in section
    for state in ("Shutdown", "StartingUp", "Ready", "ShuttingDown", "BootFailed", "Quarantined", "Maintenance"):
        assert f"    {state} --> " in section or f" --> {state}:" in section
