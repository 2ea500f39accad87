"""The engine's built-in `engine::*` functions (spec §8), run synchronously by the router.

Each takes the calling connection (None for engine-originated calls) and the raw payload,
and returns the result as `Raw`, an `ErrorBody`, or `AwaitAck` when the answer must wait for
a worker provider (`engine::register_trigger`). Inputs are msgspec Structs, so unknown keys
(such as the injected `_caller_worker_id`) are ignored and a wrong shape is a
`deserialization_error`, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec
from msgspec import Raw

from .._protocol.frames import ErrorBody, RegisterTrigger, decode_value, present, to_raw
from .._protocol.ids import random_uuid
from .._version import __version__

if TYPE_CHECKING:
    from .actions import Action
    from .router import Binding, Connection, Function, Router, TriggerType

__all__ = ["BUILTINS", "ENGINE_WORKER_NAME", "AwaitAck", "Builtin", "function_summaries"]

ENGINE_WORKER_NAME: Final = "anyiii-engine"
"""The worker name the engine's own functions and trigger types are listed under."""


@dataclass(frozen=True, slots=True)
class AwaitAck:
    """The answer waits for the provider of a binding to accept or refuse it."""

    trigger_id: str


Outcome = Raw | ErrorBody | AwaitAck
Runner = Callable[["Router", "Connection | None", Raw, "list[Action]"], Outcome]


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


def _decode(data: Raw, kind: type[Any]) -> Any:
    """Decode a built-in's input; an absent payload reads as an empty object."""
    source = bytes(data) if present(data) is not None else b"{}"
    return msgspec.json.decode(source, type=kind)


# --- shapes ---------------------------------------------------------------------------------


def _is_internal(function_id: str, frame_metadata: Raw | None) -> bool:
    if function_id.startswith("engine::") and not function_id.startswith("engine::queue::"):
        return True
    metadata = decode_value(frame_metadata) if frame_metadata is not None else None
    return isinstance(metadata, dict) and metadata.get("internal") is True


def _owner_name(router: Router, owner: int | None) -> str | None:
    if owner is None:
        return ENGINE_WORKER_NAME
    conn = router.connections.get(owner)
    return conn.name if conn is not None else None


def _summary(router: Router, function: Function) -> dict[str, object]:
    frame = function.frame
    summary: dict[str, object] = {
        "function_id": frame.id,
        "namespace": function.namespace,
        "worker_name": _owner_name(router, function.owner),
    }
    if frame.description is not None:
        summary["description"] = frame.description
    metadata = present(frame.metadata)
    if metadata is not None:
        summary["metadata"] = metadata
    return summary


def _detail(router: Router, function: Function) -> dict[str, object]:
    detail = _summary(router, function)
    for key, value in (
        ("request_schema", present(function.frame.request_format)),
        ("response_schema", present(function.frame.response_format)),
    ):
        if value is not None:
            detail[key] = value
    detail["registered_triggers"] = [
        {"id": b.frame.id, "trigger_type": b.frame.trigger_type, "config": b.frame.config}
        for b in router.bindings.values()
        if b.frame.function_id == function.frame.id and b.target_namespace == function.namespace
    ]
    return detail


def function_summaries(router: Router, *, everything: bool = False) -> list[dict[str, object]]:
    """Every function as `FunctionSummary`, sorted by id (the discovery payload's list)."""
    functions = sorted(router.functions.values(), key=lambda f: (f.frame.id, f.namespace))
    return [
        _summary(router, f)
        for f in functions
        if everything or not _is_internal(f.frame.id, present(f.frame.metadata))
    ]


def _matches(text: str | None, search: str | None) -> bool:
    return search is None or (text is not None and search.lower() in text.lower())


def _worker_summary(router: Router, conn: Connection) -> dict[str, object]:
    info = conn.info
    active = sum(1 for i in router.invocations.values() if i.callee == conn.id)
    return {
        "name": info.get("name"),
        "description": info.get("description"),
        "version": info.get("version"),
        "id": conn.worker_id,
        "namespace": conn.namespace or "default",
        "runtime": info.get("runtime"),
        "os": info.get("os"),
        "status": "connected",
        "function_count": len(conn.functions),
        "connected_at_ms": conn.connected_at_ms,
        "active_invocations": active,
        "isolation": info.get("isolation"),
        "ip_address": conn.peer,
    }


def _engine_worker(router: Router) -> dict[str, object]:
    return {
        "name": ENGINE_WORKER_NAME,
        "description": "Functions and trigger types built into the anyiii embedded engine",
        "version": __version__,
        "id": "00000000-0000-4000-8000-000000000000",
        "namespace": "default",
        "runtime": "engine",
        "os": None,
        "status": "available",
        "function_count": sum(1 for f in router.functions.values() if f.owner is None),
        "connected_at_ms": 0,
        "active_invocations": 0,
        "isolation": "in-process",
        "ip_address": None,
    }


def _trigger_type_summary(router: Router, trigger_type: TriggerType) -> dict[str, object]:
    return {
        "id": trigger_type.id,
        "namespace": trigger_type.namespace,
        "worker_name": _owner_name(router, trigger_type.owner),
        "description": trigger_type.description,
    }


def _binding_summary(router: Router, binding: Binding) -> dict[str, object]:
    config_text = bytes(binding.frame.config).decode()
    return {
        "id": binding.frame.id,
        "trigger_type": binding.frame.trigger_type,
        "function_id": binding.frame.function_id,
        "worker_name": _owner_name(router, binding.owner) if binding.owner is not None else None,
        "config": binding.frame.config,
        "config_summary": config_text if len(config_text) <= 80 else config_text[:77] + "...",
    }


# --- the functions --------------------------------------------------------------------------


def _register_worker(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    if conn is None:
        return ErrorBody("INVALID_ARGUMENTS", "engine::workers::register is for workers only")
    info = decode_value(data) if present(data) is not None else {}
    if not isinstance(info, dict):
        return ErrorBody("deserialization_error", "expected an object describing the worker")
    namespace = info.get("namespace")
    if isinstance(namespace, str) and not namespace.strip():
        return ErrorBody("INVALID_NAMESPACE", "namespace must not be blank")
    router.register_worker(conn, info, out)
    return to_raw({"success": True})


def _functions_list(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _FunctionsList = _decode(data, _FunctionsList)
    names = set(query.workers or ()) | ({query.worker} if query.worker else set())
    listed = [
        summary
        for summary in function_summaries(router, everything=query.include_internal)
        if _matches(str(summary["function_id"]), query.search)
        or _matches(str(summary.get("description", "")), query.search)
    ]
    if query.prefix is not None:
        listed = [s for s in listed if str(s["function_id"]).startswith(query.prefix)]
    if names:
        listed = [s for s in listed if s["worker_name"] in names]
    return to_raw({"functions": listed})


def _functions_info(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _FunctionsInfo = _decode(data, _FunctionsInfo)
    if (query.function_id is None) == (query.function_ids is None):
        return ErrorBody("INVALID_ARGUMENTS", "give exactly one of function_id or function_ids")
    namespace = query.namespace or "default"
    if query.function_id is not None:
        function = router.functions.get((namespace, query.function_id))
        if function is None:
            return ErrorBody("NOT_FOUND", f"function {query.function_id} not found")
        return to_raw(_detail(router, function))
    ids = query.function_ids or []
    if len(ids) > 32:
        return ErrorBody("INVALID_ARGUMENTS", "at most 32 function_ids per call")
    details: list[dict[str, object]] = []
    for function_id in ids:
        function = router.functions.get((namespace, function_id))
        if function is None:
            details.append({"function_id": function_id, "error": "not_found"})
        else:
            details.append(_detail(router, function))
    return to_raw({"functions": details})


def _workers_list(router: Router, conn: Connection | None, data: Raw, out: list[Action]) -> Outcome:
    query: _WorkersList = _decode(data, _WorkersList)
    workers = [_engine_worker(router)] + [
        _worker_summary(router, c) for c in router.connections.values() if "pid" in c.info
    ]
    workers = [
        w
        for w in workers
        if _matches(w["name"] if isinstance(w["name"], str) else None, query.search)
        and (query.runtime is None or w["runtime"] == query.runtime)
        and (query.status is None or w["status"] == query.status)
    ]
    return to_raw({"workers": workers})


def _workers_info(router: Router, conn: Connection | None, data: Raw, out: list[Action]) -> Outcome:
    query: _WorkersInfo = _decode(data, _WorkersInfo)
    namespace = query.namespace or "default"
    found = next(
        (
            c
            for c in router.connections.values()
            if c.name == query.name and (c.namespace or "default") == namespace
        ),
        None,
    )
    if found is None:
        return ErrorBody("NOT_FOUND", f"worker {query.name} not found in namespace {namespace}")
    worker = {**_worker_summary(router, found), "internal": False}
    if "pid" in found.info:
        worker["pid"] = found.info["pid"]
    return to_raw(
        {
            "worker": worker,
            "functions": [
                _summary(router, f) for f in router.functions.values() if f.owner == found.id
            ],
            "trigger_types": [
                _trigger_type_summary(router, t)
                for t in router.trigger_types.values()
                if t.owner == found.id
            ],
            "registered_triggers": [
                _binding_summary(router, b) for b in router.bindings.values() if b.owner == found.id
            ],
        }
    )


def _triggers_list(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _TriggersList = _decode(data, _TriggersList)
    listed = [
        _trigger_type_summary(router, t)
        for t in sorted(router.trigger_types.values(), key=lambda t: (t.id, t.namespace))
        if (query.include_internal or not t.id.startswith("engine::"))
        and (_matches(t.id, query.search) or _matches(t.description, query.search))
        and (query.prefix is None or t.id.startswith(query.prefix))
        and (query.worker is None or _owner_name(router, t.owner) == query.worker)
    ]
    return to_raw({"triggers": listed})


def _triggers_info(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _TriggersInfo = _decode(data, _TriggersInfo)
    trigger_type = router.trigger_types.get((query.namespace or "default", query.id))
    if trigger_type is None:
        return ErrorBody("NOT_FOUND", f"trigger type {query.id} not found")
    return to_raw(_trigger_type_detail(router, trigger_type))


def _trigger_type_detail(router: Router, trigger_type: TriggerType) -> dict[str, object]:
    detail = _trigger_type_summary(router, trigger_type)
    if trigger_type.frame is not None:
        for key, value in (
            ("configuration_schema", present(trigger_type.frame.trigger_request_format)),
            ("request_schema", present(trigger_type.frame.call_request_format)),
        ):
            if value is not None:
                detail[key] = value
    provider_key = (trigger_type.namespace, trigger_type.id)
    detail["instance_count"] = sum(
        1 for b in router.bindings.values() if b.provider == provider_key
    )
    return detail


def _bindings_list(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _BindingsList = _decode(data, _BindingsList)
    listed = [
        _binding_summary(router, b)
        for b in router.bindings.values()
        if (query.include_internal or not b.frame.trigger_type.startswith("engine::"))
        and (query.trigger_type is None or b.frame.trigger_type == query.trigger_type)
        and (query.function_id is None or b.frame.function_id == query.function_id)
        and (query.worker is None or _owner_name(router, b.owner) == query.worker)
        and (_matches(b.frame.id, query.search) or _matches(b.frame.function_id, query.search))
    ]
    return to_raw({"registered_triggers": listed})


def _bindings_info(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _BindingsInfo = _decode(data, _BindingsInfo)
    binding = router.bindings.get(query.id)
    if binding is None:
        return ErrorBody("NOT_FOUND", f"registered trigger {query.id} not found")
    detail = _binding_summary(router, binding)
    del detail["config_summary"]
    metadata = present(binding.frame.metadata)
    if metadata is not None:
        detail["metadata"] = metadata
    trigger_type = router.trigger_types.get(binding.provider) if binding.provider else None
    function = router.functions.get((binding.target_namespace, binding.frame.function_id))
    detail["trigger"] = (
        _trigger_type_detail(router, trigger_type) if trigger_type is not None else None
    )
    detail["function"] = _detail(router, function) if function is not None else None
    return to_raw(detail)


def _register_trigger(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
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
    binding = router.add_ownerless_binding(frame, out)
    if isinstance(binding, ErrorBody):  # an in-engine provider refused it
        return ErrorBody(binding.code, f"{binding.code}: {binding.message}")
    trigger_type = router.trigger_types.get(binding.provider) if binding.provider else None
    if trigger_type is not None and trigger_type.owner is not None:
        return AwaitAck(frame.id)
    return to_raw({"id": frame.id})


def _unregister_trigger(
    router: Router, conn: Connection | None, data: Raw, out: list[Action]
) -> Outcome:
    query: _UnregisterTrigger = _decode(data, _UnregisterTrigger)
    binding = router.bindings.get(query.id)
    if binding is None or (
        query.trigger_type is not None and binding.frame.trigger_type != query.trigger_type
    ):
        return to_raw({"removed": False})
    router.remove_binding(binding, out)
    return to_raw({"removed": True})


def _guarded(run: Runner) -> Runner:
    """Turn a malformed input into the `deserialization_error` the engine answers with."""

    def guarded(router: Router, conn: Connection | None, data: Raw, out: list[Action]) -> Outcome:
        try:
            return run(router, conn, data, out)
        except msgspec.DecodeError as exc:
            return ErrorBody("deserialization_error", str(exc))

    return guarded


BUILTINS: Final[dict[str, Builtin]] = {
    function_id: Builtin(description, _guarded(run))
    for function_id, description, run in (
        ("engine::workers::register", "Describe the calling worker", _register_worker),
        ("engine::functions::list", "List registered functions", _functions_list),
        ("engine::functions::info", "Describe functions", _functions_info),
        ("engine::workers::list", "List connected workers", _workers_list),
        ("engine::workers::info", "Describe a worker", _workers_info),
        ("engine::triggers::list", "List trigger types", _triggers_list),
        ("engine::triggers::info", "Describe a trigger type", _triggers_info),
        ("engine::registered-triggers::list", "List trigger bindings", _bindings_list),
        ("engine::registered-triggers::info", "Describe a trigger binding", _bindings_info),
        ("engine::register_trigger", "Bind a trigger that outlives its caller", _register_trigger),
        ("engine::unregister_trigger", "Remove a trigger binding", _unregister_trigger),
    )
}
"""Every built-in function by id."""
