"""Render `state.TRANSITIONS` as the Mermaid diagrams and tables of `docs/protocol.md`.

The docs are generated from the table, never written by hand, so they cannot drift: a test
regenerates them and compares. After changing the table, refresh the docs with

    python -m anyiii._protocol.diagram docs/protocol.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from .state import ROLE_INPUTS, TRANSITIONS, Input, Role, State

__all__ = ["render", "replace_block", "update_document"]


def _marker(role: Role, end: bool) -> str:
    return f"<!-- generated: {role.value} states {'end' if end else 'start'} -->"


def render(role: Role) -> str:
    """The Mermaid state diagram (moves between states) and the table of what each state
    accepts without moving, for one role."""
    table = TRANSITIONS[role]
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {State.CONNECTING.name}"]
    for state in State:
        moves: dict[State, list[str]] = {}
        for what in Input:
            target = table[state].get(what)
            if target is not None and target is not state:
                moves.setdefault(target, []).append(what.value)
        for target, inputs in moves.items():
            lines.append(f"    {state.name} --> {target.name}: {', '.join(inputs)}")
    lines += ["```", "", "| state | accepted without moving | refused (LocalProtocolError) |"]
    lines.append("|---|---|---|")
    for state in State:
        stays = [i.value for i in Input if table[state].get(i) is state]
        refused = [i.value for i in Input if i in ROLE_INPUTS[role] and i not in table[state]]
        lines.append(
            f"| `{state.name}` | {', '.join(stays) or '—'} | {', '.join(refused) or '—'} |"
        )
    return "\n".join(lines)


def replace_block(text: str, start: str, end: str, body: str) -> str:
    """`text` with what stands between the markers `start` and `end` replaced by `body`
    (on lines of its own). Raises ValueError when a marker is missing."""
    head, found, rest = text.partition(start)
    if not found:
        raise ValueError(f"the document has no {start!r} marker")
    _, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"the document has no {end!r} marker")
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_document(text: str) -> str:
    """`text` with every generated block replaced by a fresh rendering."""
    for role in Role:
        text = replace_block(text, _marker(role, end=False), _marker(role, end=True), render(role))
    return text


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(update_document(path.read_text()))
