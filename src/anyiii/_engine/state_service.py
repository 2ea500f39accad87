"""The `state` service as the engine runs it: the `state::*` functions, the `state` trigger
type and the `state` table, bound together (spec §10.3; the rules are in `state.py` and
`state_trigger.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
from msgspec import Raw

from .._protocol.frames import ErrorBody
from .service import BaseService, Reply, ServiceContext, ServiceFunction, ServiceRunner
from .state import STATE_FUNCTIONS, Durable, StateOutcome, StateStore
from .state_trigger import STATE_TRIGGER, StateTrigger

__all__ = ["StateService"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (scope, key)
)
"""


class StateService(BaseService):
    """Key-value state: values in memory, every write committed before it is answered."""

    name = "iii-state"
    schema = (_SCHEMA,)
    restore_queries = ("SELECT scope, key, value FROM state",)

    def __init__(
        self, context: ServiceContext | None = None, config: Mapping[str, Any] | None = None
    ) -> None:
        # `config` is the `iii-state` block of a config file; its adapter choice is read by
        # `config.py` (the data directory), and nothing else in it changes this service yet.
        super().__init__()
        self.store = StateStore()
        self.trigger = StateTrigger()
        self.trigger_types[STATE_TRIGGER] = self.trigger
        for function_id, (description, run) in STATE_FUNCTIONS.items():
            self.functions[function_id] = ServiceFunction(description, self._runner(run))

    def restore(self, rows: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        (state_rows,) = rows
        self.store = StateStore(
            (scope, key, msgspec.json.decode(value)) for scope, key, value in state_rows
        )

    def _runner(self, run: Callable[[StateStore, Raw], StateOutcome]) -> ServiceRunner:
        def run_state_function(data: Raw) -> Reply:
            outcome: StateOutcome = run(self.store, data)
            if isinstance(outcome, Durable):
                fires = self.trigger.fires(outcome.changes)
                return Reply(outcome.result, changes=outcome.changes, effects=tuple(fires))
            if isinstance(outcome, ErrorBody):
                return Reply(error=outcome)
            return Reply(outcome)

        return run_state_function
