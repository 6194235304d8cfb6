"""The generated section of docs/architecture/state.md: the power state machine's tables as Markdown and a diagram.

The machine's behaviour is its tables (`TRANSITIONS`, `POLICY_RULES` in `actors.fsm.node`); this renders them so the
documentation cannot drift from the code. It lives beside the command that writes it (`homelab-autoscaler docs`)
rather than in the pure core, which only decides.
"""

from __future__ import annotations

from typing import Final

from actors.fsm.events import EVENT_TYPES
from actors.fsm.node import POLICY_RULES, TRANSITIONS, Rule
from schemas.node import NodeState

ALL_BUT_MAINTENANCE: Final = tuple(state for state in NodeState if state is not NodeState.MAINTENANCE)
"""How a policy rule for every state but Maintenance is written in the table."""

BEGIN_MARKER: Final = "<!-- BEGIN GENERATED TRANSITIONS -->"
END_MARKER: Final = "<!-- END GENERATED TRANSITIONS -->"


def _cell_text(state: NodeState, cell: object) -> str:
    if cell is None:
        return "✗"
    if not isinstance(cell, Rule):  # IGNORE
        return "·"
    moves = [target.value for target in cell.targets if target is not state]
    return "→ " + " / ".join(moves) if moves else "↺"


def render_transition_table() -> str:
    """The generated part of docs/architecture/state.md: matrix, rules, policy rules, diagram. Pure."""
    lines = [
        "Legend: `→ X` moves to X (several: depends on the situation), `↺` stays but acts,",
        "`·` ignored (legal, changes nothing), `✗` illegal (raises `InvalidTransition`, machine unchanged).",
        "",
        "| state \\ event | " + " | ".join(f"`{e.__name__}`" for e in EVENT_TYPES) + " |",
        "|---|" + "---|" * len(EVENT_TYPES),
    ]
    for state in NodeState:
        cells = [_cell_text(state, TRANSITIONS.get((state, event))) for event in EVENT_TYPES]
        lines.append(f"| **{state.value}** | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### What each legal cell does",
        "",
        "| state | event | may lead to | what happens |",
        "|---|---|---|---|",
    ]
    for state in NodeState:
        for event in EVENT_TYPES:
            cell = TRANSITIONS.get((state, event))
            if isinstance(cell, Rule):
                targets = ", ".join(t.value for t in cell.targets)
                lines.append(f"| {state.value} | `{event.__name__}` | {targets} | {cell.summary} |")
    lines += [
        "",
        "### Power-policy rules (applied after every accepted event, first match first, until none applies)",
        "",
        "| powerPolicy | state | may lead to | what happens |",
        "|---|---|---|---|",
    ]
    for rule in POLICY_RULES:
        policies = ", ".join(p.value for p in rule.policies)
        states = (
            "any but Maintenance" if rule.states == ALL_BUT_MAINTENANCE else ", ".join(s.value for s in rule.states)
        )
        targets = ", ".join(t.value for t in rule.targets)
        lines.append(f"| {policies} | {states} | {targets} | {rule.summary} |")
    lines += ["", "```mermaid", "stateDiagram-v2", f"    [*] --> {NodeState.SHUTDOWN.value}"]
    edges: dict[tuple[NodeState, NodeState], list[str]] = {}
    for (state, event), cell in TRANSITIONS.items():
        if isinstance(cell, Rule):
            for target in cell.targets:
                if target is not state:
                    edges.setdefault((state, target), []).append(event.__name__)
    for rule in POLICY_RULES:
        for state in rule.states:
            for target in rule.targets:
                if target is not state:
                    label = "policy " + "/".join(p.value for p in rule.policies)
                    edges.setdefault((state, target), []).append(label)
    for (source, target), names in sorted(
        edges.items(), key=lambda item: (list(NodeState).index(item[0][0]), list(NodeState).index(item[0][1]))
    ):
        unique = ", ".join(dict.fromkeys(names))
        lines.append(f"    {source.value} --> {target.value}: {unique}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def rewrite_document(text: str) -> str:
    """`text` with the part between the markers replaced by `render_transition_table()`. Pure."""
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    return text[:start] + "\n" + render_transition_table() + text[end:]
