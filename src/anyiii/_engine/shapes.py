"""How the engine describes its tables to callers: the shapes the built-ins answer with.

Function, worker, trigger type and binding summaries and details (spec §8), built from the
read-only `TableView`. The built-ins answer with them, and `engine::functions-available`
announces the function table with `function_summaries`.
"""

from __future__ import annotations

from typing import Final

from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import decode_value, present
from .._version import __version__
from .tables import Binding, Connection, Function, TableView, TriggerType

__all__ = [
    "ENGINE_WORKER_NAME",
    "binding_summary",
    "engine_worker",
    "function_detail",
    "function_summaries",
    "function_summary",
    "matches",
    "owner_name",
    "trigger_type_detail",
    "trigger_type_summary",
    "worker_summary",
]

ENGINE_WORKER_NAME: Final = "anyiii-engine"
"""The worker name the engine's own functions and trigger types are listed under."""


def _is_internal(function_id: str, frame_metadata: Raw | None) -> bool:
    if function_id.startswith("engine::") and not function_id.startswith("engine::queue::"):
        return True
    metadata = decode_value(frame_metadata) if frame_metadata is not None else None
    return isinstance(metadata, dict) and metadata.get("internal") is True


def owner_name(tables: TableView, owner: int | None) -> str | None:
    """The worker name of an owner connection id; None (the engine) is `anyiii-engine`."""
    if owner is None:
        return ENGINE_WORKER_NAME
    conn = tables.connection(owner)
    return conn.name if conn is not None else None


def function_summary(tables: TableView, function: Function) -> dict[str, object]:
    """A `FunctionSummary`: id, namespace, worker name, description and metadata."""
    frame = function.frame
    summary: dict[str, object] = {
        "function_id": frame.id,
        "namespace": function.namespace,
        "worker_name": owner_name(tables, function.owner),
    }
    if frame.description is not None:
        summary["description"] = frame.description
    metadata = present(frame.metadata)
    if metadata is not None:
        summary["metadata"] = metadata
    return summary


def function_detail(tables: TableView, function: Function) -> dict[str, object]:
    """A summary plus the function's schemas and the bindings that call it."""
    detail = function_summary(tables, function)
    for key, value in (
        ("request_schema", present(function.frame.request_format)),
        ("response_schema", present(function.frame.response_format)),
    ):
        if value is not None:
            detail[key] = value
    detail["registered_triggers"] = [
        {"id": b.frame.id, "trigger_type": b.frame.trigger_type, "config": b.frame.config}
        for b in tables.bindings_of_function(function.frame.id, function.namespace)
    ]
    return detail


def function_summaries(tables: TableView, *, everything: bool = False) -> list[dict[str, object]]:
    """Every function as `FunctionSummary`, sorted by id (the discovery payload's list)."""
    functions = sorted(tables.all_functions(), key=lambda f: (f.frame.id, f.namespace))
    return [
        function_summary(tables, f)
        for f in functions
        if everything or not _is_internal(f.frame.id, present(f.frame.metadata))
    ]


def matches(text: str | None, search: str | None) -> bool:
    """Whether `text` contains `search`, ignoring case; no search matches everything."""
    return search is None or (text is not None and search.lower() in text.lower())


def worker_summary(tables: TableView, conn: Connection) -> dict[str, object]:
    """A `WorkerSummary` of a connected worker, from what it said in `workers::register`."""
    info = conn.info
    return {
        "name": info.get("name"),
        "description": info.get("description"),
        "version": info.get("version"),
        "id": conn.worker_id,
        "namespace": conn.effective_namespace,
        "runtime": info.get("runtime"),
        "os": info.get("os"),
        "status": "connected",
        "function_count": len(conn.functions),
        "connected_at_ms": conn.connected_at_ms,
        "active_invocations": tables.active_invocations(conn.id),
        "isolation": info.get("isolation"),
        "ip_address": conn.peer,
    }


def engine_worker(tables: TableView) -> dict[str, object]:
    """The engine itself, listed as the worker that hosts the built-ins."""
    return {
        "name": ENGINE_WORKER_NAME,
        "description": "Functions and trigger types built into the anyiii embedded engine",
        "version": __version__,
        "id": "00000000-0000-4000-8000-000000000000",
        "namespace": DEFAULT_NAMESPACE,
        "runtime": "engine",
        "os": None,
        "status": "available",
        "function_count": len(tables.functions_of(None)),
        "connected_at_ms": 0,
        "active_invocations": 0,
        "isolation": "in-process",
        "ip_address": None,
    }


def trigger_type_summary(tables: TableView, trigger_type: TriggerType) -> dict[str, object]:
    """A trigger type's id, namespace, provider's worker name and description."""
    return {
        "id": trigger_type.id,
        "namespace": trigger_type.namespace,
        "worker_name": owner_name(tables, trigger_type.owner),
        "description": trigger_type.description,
    }


def binding_summary(tables: TableView, binding: Binding) -> dict[str, object]:
    """A binding's ids, owner's worker name, config and a short config summary, and
    `parked`: whether it waits for a provider of its trigger type (anyiii's own field: the
    real engine keeps such bindings out of its listings, which hides why nothing fires)."""
    config_text = bytes(binding.frame.config).decode()
    return {
        "id": binding.frame.id,
        "trigger_type": binding.frame.trigger_type,
        "function_id": binding.frame.function_id,
        "worker_name": owner_name(tables, binding.owner) if binding.owner is not None else None,
        "config": binding.frame.config,
        "config_summary": config_text if len(config_text) <= 80 else config_text[:77] + "...",
        "parked": binding.provider is None,
    }


def trigger_type_detail(tables: TableView, trigger_type: TriggerType) -> dict[str, object]:
    """A trigger type's summary plus its schemas and how many bindings it serves."""
    detail = trigger_type_summary(tables, trigger_type)
    if trigger_type.frame is not None:
        for key, value in (
            ("configuration_schema", present(trigger_type.frame.trigger_request_format)),
            ("request_schema", present(trigger_type.frame.call_request_format)),
        ):
            if value is not None:
                detail[key] = value
    provider_key = (trigger_type.namespace, trigger_type.id)
    detail["instance_count"] = len(tables.bindings_of_provider(provider_key))
    return detail
