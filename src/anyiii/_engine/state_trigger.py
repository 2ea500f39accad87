"""The `state` trigger type (spec §10.3): functions called when state changes.

A binding's config is `{scope?, key?, condition_function_id?}` (absent means any). Each
change calls every matching binding's function (fire and forget) with
`{"type": "state", "event_type": "state:created" | "state:updated" | "state:deleted",
"scope", "key", "old_value", "new_value"}` and the binding's metadata, after its condition
function (if any) did not answer `false`; a delete of a key that held nothing calls nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from .._protocol.frames import to_raw
from .deliveries import ConfiguredBindings, delivery
from .service import Invoke
from .state import StateChange

__all__ = ["STATE_TRIGGER", "StateTrigger"]

STATE_TRIGGER = "state"


class _Config(msgspec.Struct):
    scope: str | None = None
    key: str | None = None
    condition_function_id: str | None = None


class StateTrigger(ConfiguredBindings[_Config]):
    """The in-engine provider of the `state` trigger type."""

    description = "Fires when a state value is created, updated or deleted"

    def __init__(self) -> None:
        super().__init__(_Config, STATE_TRIGGER)

    def fires(self, changes: Iterable[StateChange]) -> list[Invoke]:
        """The calls that announce `changes` to the bindings they match."""
        out: list[Invoke] = []
        for change in changes:
            if change.deleted and not change.existed:
                continue
            payload: Any = None
            for binding, config in self.bound():
                if config.scope not in (None, change.scope) or config.key not in (
                    None,
                    change.key,
                ):
                    continue
                if payload is None:
                    payload = to_raw(_event(change))
                out.append(delivery(binding, payload, config.condition_function_id))
        return out


def _event(change: StateChange) -> dict[str, Any]:
    if change.deleted:
        kind = "state:deleted"
    elif change.existed:
        kind = "state:updated"
    else:
        kind = "state:created"
    return {
        "type": STATE_TRIGGER,
        "event_type": kind,
        "scope": change.scope,
        "key": change.key,
        "old_value": change.old,
        "new_value": None if change.deleted else change.new,
    }
