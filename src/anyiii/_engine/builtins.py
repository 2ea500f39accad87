"""The engine's built-in `engine::*` functions (spec §8), run synchronously by the router.

Each takes the engine (an `EngineHost`), the calling connection (None for engine-originated
calls) and the raw payload, and returns the result as `Raw`, an `ErrorBody`, or `AwaitAck`
when the answer must wait for a worker provider (`engine::register_trigger`). Inputs are
msgspec Structs (`builtin_inputs.py`), so unknown keys (such as the injected
`_caller_worker_id`) are ignored and a wrong shape is a `deserialization_error`, never an
exception.

`EngineHost` names all a built-in may see and do: read the tables, and ask for the three
changes the built-ins make. The router implements it; this module never imports the router,
so the two stay one-way (the router runs the built-ins, not the reverse).

Two built-ins describe functions, `engine::functions::list` and `engine::functions::info`:
their answer also depends on which functions the caller may see (`Visible`). The router
runs them for callers who see everything; whoever narrows a caller's view (the RBAC
listener's checks, `rbac_admission.py`) runs their `Builtin.narrowed` with its own `Visible`, so
neither the router nor this module knows why a function is hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, ParamSpec, Protocol

import msgspec
from msgspec import Raw

from .._protocol.codes import (
    CHANNELS_CREATE,
    DEFAULT_NAMESPACE,
    DESERIALIZATION_ERROR,
    FORBIDDEN,
    INVALID_ARGUMENTS,
    INVALID_NAMESPACE,
    ITEM_FORBIDDEN,
    ITEM_NOT_FOUND,
    NOT_FOUND,
    REGISTER_TRIGGER,
    REGISTER_WORKER,
)
from .._protocol.frames import (
    ErrorBody,
    RegisterTrigger,
    StreamChannelRef,
    decode_value,
    present,
    to_raw,
)
from .._protocol.ids import random_uuid
from .actions import Action
from .builtin_inputs import (
    BindingsInfoInput,
    BindingsListInput,
    CreateChannelInput,
    FunctionsInfoInput,
    FunctionsListInput,
    RegisterTriggerInput,
    TriggersInfoInput,
    TriggersListInput,
    UnregisterTriggerInput,
    WorkersInfoInput,
    WorkersListInput,
    decode_input,
)
from .listings import bounded_answer, bounded_lists
from .registration_limits import RegistrationLimits
from .shapes import (
    binding_summary,
    engine_worker,
    function_detail,
    function_summaries,
    function_summary,
    matches,
    owner_name,
    trigger_type_detail,
    trigger_type_summary,
    worker_summary,
)
from .tables import Binding, Connection, Function, TableView

__all__ = [
    "BUILTINS",
    "AwaitAck",
    "Builtin",
    "EngineHost",
    "Visible",
]


class EngineHost(Protocol):
    """What the built-ins may see of the engine and ask of it (the router implements it)."""

    @property
    def tables(self) -> TableView:
        """The engine's tables, read-only."""
        ...

    def register_worker(self, conn: Connection, info: dict[str, object], out: list[Action]) -> None:
        """Record what a worker says about itself and fix its namespace if not yet fixed."""
        ...

    @property
    def limits(self) -> RegistrationLimits:
        """What one worker may register, and how many bytes a listing's answer may take."""
        ...

    def add_durable_binding(
        self, frame: RegisterTrigger, caller: Connection | None, out: list[Action]
    ) -> Binding | ErrorBody:
        """Bind a trigger nobody owns, for `caller` (None: the engine); the binding, or why
        it was refused (a limit, an in-engine provider)."""
        ...

    def remove_binding(self, binding: Binding, out: list[Action]) -> None:
        """Remove a binding and tell its provider."""
        ...

    def create_channel(
        self, owner: int | None, buffer_size: int | None
    ) -> tuple[StreamChannelRef, StreamChannelRef] | None:
        """A new data channel's (writer, reader) refs, or None if this engine has none."""
        ...


@dataclass(frozen=True, slots=True)
class AwaitAck:
    """The answer waits for the provider of a binding to accept or refuse it."""

    trigger_id: str


Outcome = Raw | ErrorBody | AwaitAck
Runner = Callable[[EngineHost, Connection | None, Raw, list[Action]], Outcome]
Visible = Callable[[str, str, Raw | None], bool]
"""Whether the caller may see a function, given its id, its namespace and its registered
metadata (None: it has none)."""
NarrowedRunner = Callable[[EngineHost, Connection | None, Raw, list[Action], Visible], Outcome]


@dataclass(frozen=True, slots=True)
class Builtin:
    """A built-in: its description, how it runs, and, for those whose answer depends on
    which functions the caller may see, how it runs for a caller who sees only some."""

    description: str
    run: Runner
    narrowed: NarrowedRunner | None = None


# --- the functions --------------------------------------------------------------------------


def _register_worker(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    if conn is None:
        return ErrorBody(INVALID_ARGUMENTS, f"{REGISTER_WORKER} is for workers only")
    # What a worker says about itself is listed by `engine::workers::list`: bounded like
    # a function's metadata, checked before it is decoded.
    limit = host.limits.max_metadata_bytes
    if len(data) > limit:
        return ErrorBody(INVALID_ARGUMENTS, f"the worker's description is over {limit} bytes")
    info = decode_value(data) if present(data) is not None else {}
    if not isinstance(info, dict):
        return ErrorBody(DESERIALIZATION_ERROR, "expected an object describing the worker")
    namespace = info.get("namespace")
    if isinstance(namespace, str) and not namespace.strip():
        return ErrorBody(INVALID_NAMESPACE, "namespace must not be blank")
    host.register_worker(conn, info, out)
    return to_raw({"success": True})


def _functions_list(
    host: EngineHost,
    conn: Connection | None,
    data: Raw,
    out: list[Action],
    visible: Visible | None = None,
) -> Outcome:
    query: FunctionsListInput = decode_input(data, FunctionsListInput)
    names = set(query.workers or ()) | ({query.worker} if query.worker else set())
    listed = [
        summary
        for summary in function_summaries(host.tables, everything=query.include_internal)
        if matches(str(summary["function_id"]), query.search)
        or matches(str(summary.get("description", "")), query.search)
    ]
    if query.prefix is not None:
        listed = [s for s in listed if str(s["function_id"]).startswith(query.prefix)]
    if names:
        listed = [s for s in listed if s["worker_name"] in names]
    if visible is not None:  # before the answer is cut, so hidden entries take no room
        listed = [s for s in listed if _shown(s, visible)]
    return bounded_answer("functions", listed, host.limits.max_listing_bytes)


def _shown(summary: dict[str, object], visible: Visible) -> bool:
    """Whether a function's summary (`shapes.function_summary`) is for the caller's eyes."""
    metadata = summary.get("metadata")
    return visible(
        str(summary["function_id"]),
        str(summary["namespace"]),
        metadata if isinstance(metadata, Raw) else None,
    )


def _functions_info(
    host: EngineHost,
    conn: Connection | None,
    data: Raw,
    out: list[Action],
    visible: Visible | None = None,
) -> Outcome:
    # As the real engine: a function that does not exist is "not found" even to a caller
    # who could not see it; one that exists and is hidden is "forbidden".
    query: FunctionsInfoInput = decode_input(data, FunctionsInfoInput)
    if (query.function_id is None) == (query.function_ids is None):
        return ErrorBody(INVALID_ARGUMENTS, "give exactly one of function_id or function_ids")
    tables = host.tables
    namespace = query.namespace or DEFAULT_NAMESPACE

    def hidden(function: Function) -> bool:
        frame = function.frame
        return visible is not None and not visible(
            frame.id, function.namespace, present(frame.metadata)
        )

    if query.function_id is not None:
        function = tables.function(namespace, query.function_id)
        if function is None:
            return ErrorBody(NOT_FOUND, f"function {query.function_id} not found")
        if hidden(function):
            message = f"Function '{query.function_id}' is not visible to this session."
            return ErrorBody(FORBIDDEN, message)
        return to_raw(function_detail(tables, function))
    ids = query.function_ids or []
    if len(ids) > 32:
        return ErrorBody(INVALID_ARGUMENTS, "at most 32 function_ids per call")
    details: list[dict[str, object]] = []
    for function_id in ids:
        function = tables.function(namespace, function_id)
        if function is None:
            details.append({"function_id": function_id, "error": ITEM_NOT_FOUND})
        elif hidden(function):
            details.append({"function_id": function_id, "error": ITEM_FORBIDDEN})
        else:
            details.append(function_detail(tables, function))
    return to_raw({"functions": details})


def _workers_list(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: WorkersListInput = decode_input(data, WorkersListInput)
    tables = host.tables
    workers = [engine_worker(tables)] + [
        worker_summary(tables, c) for c in tables.live_connections() if "pid" in c.info
    ]
    workers = [
        w
        for w in workers
        if matches(w["name"] if isinstance(w["name"], str) else None, query.search)
        and (query.runtime is None or w["runtime"] == query.runtime)
        and (query.status is None or w["status"] == query.status)
    ]
    return bounded_answer("workers", workers, host.limits.max_listing_bytes)


def _workers_info(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: WorkersInfoInput = decode_input(data, WorkersInfoInput)
    tables = host.tables
    namespace = query.namespace or DEFAULT_NAMESPACE
    found = tables.worker_named(query.name, namespace)
    if found is None:
        return ErrorBody(NOT_FOUND, f"worker {query.name} not found in namespace {namespace}")
    worker = {**worker_summary(tables, found), "internal": False}
    if "pid" in found.info:
        worker["pid"] = found.info["pid"]
    return bounded_lists(
        {"worker": worker},
        {
            "functions": (function_summary(tables, f) for f in tables.functions_of(found.id)),
            "trigger_types": (
                trigger_type_summary(tables, t) for t in tables.trigger_types_of(found.id)
            ),
            "registered_triggers": (
                binding_summary(tables, b) for b in tables.bindings_of_owner(found.id)
            ),
        },
        host.limits.max_listing_bytes,
    )


def _triggers_list(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: TriggersListInput = decode_input(data, TriggersListInput)
    tables = host.tables
    listed = [
        trigger_type_summary(tables, t)
        for t in sorted(tables.all_trigger_types(), key=lambda t: (t.id, t.namespace))
        if (query.include_internal or not t.id.startswith("engine::"))
        and (matches(t.id, query.search) or matches(t.description, query.search))
        and (query.prefix is None or t.id.startswith(query.prefix))
        and (query.worker is None or owner_name(tables, t.owner) == query.worker)
    ]
    return bounded_answer("triggers", listed, host.limits.max_listing_bytes)


def _triggers_info(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: TriggersInfoInput = decode_input(data, TriggersInfoInput)
    tables = host.tables
    trigger_type = tables.trigger_type((query.namespace or DEFAULT_NAMESPACE, query.id))
    if trigger_type is None:
        return ErrorBody(NOT_FOUND, f"trigger type {query.id} not found")
    return to_raw(trigger_type_detail(tables, trigger_type))


def _bindings_list(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: BindingsListInput = decode_input(data, BindingsListInput)
    tables = host.tables
    listed = [
        binding_summary(tables, b)
        for b in tables.all_bindings()
        if (query.include_internal or not b.frame.trigger_type.startswith("engine::"))
        and (query.trigger_type is None or b.frame.trigger_type == query.trigger_type)
        and (query.function_id is None or b.frame.function_id == query.function_id)
        and (query.worker is None or owner_name(tables, b.owner) == query.worker)
        and (matches(b.frame.id, query.search) or matches(b.frame.function_id, query.search))
    ]
    return bounded_answer("registered_triggers", listed, host.limits.max_listing_bytes)


def _bindings_info(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: BindingsInfoInput = decode_input(data, BindingsInfoInput)
    tables = host.tables
    binding = tables.binding(query.id)
    if binding is None:
        return ErrorBody(NOT_FOUND, f"registered trigger {query.id} not found")
    detail = binding_summary(tables, binding)
    del detail["config_summary"]
    metadata = present(binding.frame.metadata)
    if metadata is not None:
        detail["metadata"] = metadata
    trigger_type = tables.trigger_type(binding.provider)
    function = tables.function(binding.target_namespace, binding.frame.function_id)
    detail["trigger"] = (
        trigger_type_detail(tables, trigger_type) if trigger_type is not None else None
    )
    detail["function"] = function_detail(tables, function) if function is not None else None
    return to_raw(detail)


def _register_trigger(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: RegisterTriggerInput = decode_input(data, RegisterTriggerInput)
    frame = RegisterTrigger(
        id=random_uuid(),
        trigger_type=query.trigger_type,
        function_id=query.function_id,
        config=query.config,
        metadata=query.metadata if query.metadata is not None else msgspec.UNSET,
        trigger_namespace=query.trigger_namespace,
    )
    binding = host.add_durable_binding(frame, conn, out)
    if isinstance(binding, ErrorBody):  # over a limit, or an in-engine provider refused it
        return ErrorBody(binding.code, f"{binding.code}: {binding.message}")
    trigger_type = host.tables.trigger_type(binding.provider)
    if trigger_type is not None and trigger_type.owner is not None:
        return AwaitAck(frame.id)
    return to_raw({"id": frame.id})


def _unregister_trigger(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: UnregisterTriggerInput = decode_input(data, UnregisterTriggerInput)
    binding = host.tables.binding(query.id)
    if binding is None or (
        query.trigger_type is not None and binding.frame.trigger_type != query.trigger_type
    ):
        return to_raw({"removed": False})
    # As the `unregistertrigger` frame: a worker removes its own bindings, not another
    # live worker's (an HTTP route, a cron job). Durable ones (`owner` None) are anyone's
    # to remove, as in the real engine: they outlive their caller, so nobody else could.
    if conn is not None and binding.owner is not None and binding.owner != conn.id:
        return ErrorBody(FORBIDDEN, f"trigger {query.id} belongs to another worker")
    host.remove_binding(binding, out)
    return to_raw({"removed": True})


def _create_channel(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    request = decode_input(data, CreateChannelInput)
    made = host.create_channel(None if conn is None else conn.id, request.buffer_size)
    if made is None:
        return ErrorBody(INVALID_ARGUMENTS, "this engine serves no data channels")
    writer, reader = made
    return to_raw({"writer": writer, "reader": reader})


_P = ParamSpec("_P")


def _guarded(run: Callable[_P, Outcome]) -> Callable[_P, Outcome]:
    """Turn a malformed input into the `deserialization_error` the engine answers with."""

    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> Outcome:
        try:
            return run(*args, **kwargs)
        except msgspec.DecodeError as exc:
            return ErrorBody(DESERIALIZATION_ERROR, str(exc))

    return guarded


_NARROWED: Final[dict[str, NarrowedRunner]] = {
    "engine::functions::list": _functions_list,
    "engine::functions::info": _functions_info,
}
"""The built-ins whose answer depends on which functions the caller may see: those the
real engine filters by the caller's RBAC session (`workers/engine_fn/mod.rs`). Its other
listings (`engine::workers::*`, `engine::triggers::*`, `engine::registered-triggers::*`)
and the `engine::functions-available` announcement show everything to everyone."""


BUILTINS: Final[dict[str, Builtin]] = {
    function_id: Builtin(
        description,
        _guarded(run),
        None if function_id not in _NARROWED else _guarded(_NARROWED[function_id]),
    )
    for function_id, description, run in (
        (REGISTER_WORKER, "Describe the calling worker", _register_worker),
        ("engine::functions::list", "List registered functions", _functions_list),
        ("engine::functions::info", "Describe functions", _functions_info),
        ("engine::workers::list", "List connected workers", _workers_list),
        ("engine::workers::info", "Describe a worker", _workers_info),
        ("engine::triggers::list", "List trigger types", _triggers_list),
        ("engine::triggers::info", "Describe a trigger type", _triggers_info),
        ("engine::registered-triggers::list", "List trigger bindings", _bindings_list),
        ("engine::registered-triggers::info", "Describe a trigger binding", _bindings_info),
        (REGISTER_TRIGGER, "Bind a trigger that outlives its caller", _register_trigger),
        ("engine::unregister_trigger", "Remove a trigger binding", _unregister_trigger),
        (CHANNELS_CREATE, "Create a streaming channel pair", _create_channel),
    )
}
"""Every built-in function by id."""
