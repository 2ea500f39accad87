"""docs/protocol.md must show the transition table as it is, not as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from anyiii._docgen import update_protocol_document as update_document
from anyiii._protocol import diagram
from anyiii._protocol.diagram import render
from anyiii._protocol.state import TRANSITIONS, Input, Role, State

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_state_diagrams_match_the_transition_table() -> None:
    text = DOC.read_text()
    assert update_document(text) == text, (
        "docs/protocol.md is stale: run `python -m anyiii._docgen docs/protocol.md`"
    )


def test_every_state_change_is_drawn() -> None:
    for role in Role:
        drawn = render(role)
        for state, moves in TRANSITIONS[role].items():
            for what, target in moves.items():
                if target is not state:
                    edge = f"{state.name} --> {target.name}:"
                    line = next(line for line in drawn.splitlines() if edge in line)
                    assert what.value in line


def test_a_changed_table_changes_the_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync test can fail: rendering a different table gives a different document."""
    original = render(Role.WORKER)
    worker_table = {**TRANSITIONS[Role.WORKER], State.OPEN: {Input.CLOSE: State.CLOSED}}
    monkeypatch.setattr(diagram, "TRANSITIONS", {**TRANSITIONS, Role.WORKER: worker_table})
    assert render(Role.WORKER) != original
