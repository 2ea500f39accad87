"""Render `state.TRANSITIONS` as the Mermaid diagrams and tables of `docs/protocol.md`.

Rendering only: pure text from the table. Putting it into the document is
`anyiii._docgen`'s job (after changing the table: `python -m anyiii._docgen
docs/protocol.md`); a test regenerates the document and compares, so it cannot drift.
"""

from __future__ import annotations

from .state import ROLE_INPUTS, TRANSITIONS, Input, Role, State

__all__ = ["marker", "render"]


def marker(role: Role, end: bool) -> str:
    """The comment that opens (or ends) the generated block of `role` in the document."""
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
