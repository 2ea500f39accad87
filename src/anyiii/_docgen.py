"""Generated blocks in the Markdown docs: putting fresh renderings between their markers.

Some docs pages hold blocks generated from the code (the protocol's state diagrams from the
transition table, the API reference from `__all__` and docstrings). Each block sits between
two marker comments; this module replaces what stands between them, so the rest of the page
stays hand-written. Refresh the protocol page with

    python -m anyiii._docgen docs/protocol.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._protocol.diagram import marker, render
from ._protocol.state import Role

__all__ = ["replace_block", "update_protocol_document"]


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


def update_protocol_document(text: str) -> str:
    """`text` with every state-diagram block replaced by a fresh rendering."""
    for role in Role:
        text = replace_block(text, marker(role, end=False), marker(role, end=True), render(role))
    return text


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(update_protocol_document(path.read_text()))
