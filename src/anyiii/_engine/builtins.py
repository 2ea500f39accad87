"""The engine's built-in `engine::*` functions (spec §8), run synchronously by the router.

Each takes the engine (an `EngineHost`), the calling connection (None for engine-originated
calls) and the raw payload, and returns the result as `Raw`, an `ErrorBody`, or `AwaitAck`
when the answer must wait for a worker provider (`engine::register_trigger`). Inputs are
msgspec Structs, so unknown keys (such as the injected `_caller_worker_id`) are ignored and
a wrong shape is a `deserialization_error`, never an exception.

`EngineHost` names all a built-in may see and do: read the tables, and ask for the three
changes the built-ins make. The router implements it; this module never imports the router,
so the two stay one-way (the router runs the built-ins, not the reverse).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec
from msgspec import Raw

from .._protocol.codes import (
    CHANNELS_CREATE,
    DEFAULT_NAMESPACE,
    DESERIALIZATION_ERROR,
    FORBIDDEN,
    INVALID_ARGUMENTS,
    INVALID_NAMESPACE,
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
from .tables import Binding, Connection, TableView

__all__ = [
    "BUILTINS",
    "AwaitAck",
    "Builtin",
    "EngineHost",
]

"""The per-id error in an `engine::functions::info` batch answer (`function_ids`)."""


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


@dataclass(frozen=True, slots=True)
class Builtin:
    description: str
    run: Runner


# --- inputs ---------------------------------------------------------------------------------


class _FunctionsList(msgspec.Struct):
    search: str | None = None
    prefix: str | None = None
    worker: str | None = None
    workers: list[str] | None = None
    include_internal: bool = False


class _FunctionsInfo(msgspec.Struct):
    function_id: str | None = None
    function_ids: list[str] | None = None
    namespace: str | None = None


class _WorkersList(msgspec.Struct):
    search: str | None = None
    runtime: str | None = None
    status: str | None = None


class _WorkersInfo(msgspec.Struct):
    name: str
    namespace: str | None = None


class _TriggersList(msgspec.Struct):
    search: str | None = None
    prefix: str | None = None
    worker: str | None = None
    include_internal: bool = False


class _TriggersInfo(msgspec.Struct):
    id: str
    namespace: str | None = None


class _BindingsList(msgspec.Struct):
    search: str | None = None
    trigger_type: str | None = None
    function_id: str | None = None
    worker: str | None = None
    include_internal: bool = False


class _BindingsInfo(msgspec.Struct):
    id: str


class _RegisterTrigger(msgspec.Struct):
    trigger_type: str
    function_id: str
    config: Raw = Raw(b"null")
    metadata: Raw | None = None
    trigger_namespace: str | None = None


class _UnregisterTrigger(msgspec.Struct):
    id: str
    trigger_type: str | None = None


class _CreateChannel(msgspec.Struct):
    buffer_size: int | None = None


def _decode(data: Raw, kind: type[Any]) -> Any:
    """Decode a built-in's input; an absent payload reads as an empty object."""
    source = bytes(data) if present(data) is not None else b"{}"
    return msgspec.json.decode(source, type=kind)


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
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _FunctionsList = _decode(data, _FunctionsList)
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
    return bounded_answer("functions", listed, host.limits.max_listing_bytes)


def _functions_info(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _FunctionsInfo = _decode(data, _FunctionsInfo)
    if (query.function_id is None) == (query.function_ids is None):
        return ErrorBody(INVALID_ARGUMENTS, "give exactly one of function_id or function_ids")
    tables = host.tables
    namespace = query.namespace or DEFAULT_NAMESPACE
    if query.function_id is not None:
        function = tables.function(namespace, query.function_id)
        if function is None:
            return ErrorBody(NOT_FOUND, f"function {query.function_id} not found")
        return to_raw(function_detail(tables, function))
    ids = query.function_ids or []
    if len(ids) > 32:
        return ErrorBody(INVALID_ARGUMENTS, "at most 32 function_ids per call")
    details: list[dict[str, object]] = []
    for function_id in ids:
        function = tables.function(namespace, function_id)
        if function is None:
            details.append({"function_id": function_id, "error": ITEM_NOT_FOUND})
        else:
            details.append(function_detail(tables, function))
    return to_raw({"functions": details})


def _workers_list(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _WorkersList = _decode(data, _WorkersList)
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
    query: _WorkersInfo = _decode(data, _WorkersInfo)
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
    query: _TriggersList = _decode(data, _TriggersList)
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
    query: _TriggersInfo = _decode(data, _TriggersInfo)
    tables = host.tables
    trigger_type = tables.trigger_type((query.namespace or DEFAULT_NAMESPACE, query.id))
    if trigger_type is None:
        return ErrorBody(NOT_FOUND, f"trigger type {query.id} not found")
    return to_raw(trigger_type_detail(tables, trigger_type))


def _bindings_list(
    host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _BindingsList = _decode(data, _BindingsList)
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
    query: _BindingsInfo = _decode(data, _BindingsInfo)
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
    query: _RegisterTrigger = _decode(data, _RegisterTrigger)
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
    query: _UnregisterTrigger = _decode(data, _UnregisterTrigger)
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
    request = _decode(data, _CreateChannel)
    made = host.create_channel(None if conn is None else conn.id, request.buffer_size)
    if made is None:
        return ErrorBody(INVALID_ARGUMENTS, "this engine serves no data channels")
    writer, reader = made
    return to_raw({"writer": writer, "reader": reader})


def _guarded(run: Runner) -> Runner:
    """Turn a malformed input into the `deserialization_error` the engine answers with."""

    def guarded(host: EngineHost, conn: Connection | None, data: Raw, out: list[Action]) -> Outcome:
        try:
            return run(host, conn, data, out)
        except msgspec.DecodeError as exc:
            return ErrorBody(DESERIALIZATION_ERROR, str(exc))

    return guarded


BUILTINS: Final[dict[str, Builtin]] = {
    function_id: Builtin(description, _guarded(run))
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
