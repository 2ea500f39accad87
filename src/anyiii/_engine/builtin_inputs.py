"""The inputs of the engine's built-in functions (`builtins.py`), as msgspec Structs.

Unknown keys (such as the injected `_caller_worker_id`) are ignored, and a value of the
wrong shape raises `msgspec.DecodeError`, which the built-ins answer with
`deserialization_error`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Raw

from .._protocol.frames import present

__all__ = [
    "BindingsInfoInput",
    "BindingsListInput",
    "CreateChannelInput",
    "FunctionsInfoInput",
    "FunctionsListInput",
    "RegisterTriggerInput",
    "TriggersInfoInput",
    "TriggersListInput",
    "UnregisterTriggerInput",
    "WorkersInfoInput",
    "WorkersListInput",
    "decode_input",
]


class FunctionsListInput(msgspec.Struct):
    search: str | None = None
    prefix: str | None = None
    worker: str | None = None
    workers: list[str] | None = None
    include_internal: bool = False


class FunctionsInfoInput(msgspec.Struct):
    function_id: str | None = None
    function_ids: list[str] | None = None
    namespace: str | None = None


class WorkersListInput(msgspec.Struct):
    search: str | None = None
    runtime: str | None = None
    status: str | None = None


class WorkersInfoInput(msgspec.Struct):
    name: str
    namespace: str | None = None


class TriggersListInput(msgspec.Struct):
    search: str | None = None
    prefix: str | None = None
    worker: str | None = None
    include_internal: bool = False


class TriggersInfoInput(msgspec.Struct):
    id: str
    namespace: str | None = None


class BindingsListInput(msgspec.Struct):
    search: str | None = None
    trigger_type: str | None = None
    function_id: str | None = None
    worker: str | None = None
    include_internal: bool = False


class BindingsInfoInput(msgspec.Struct):
    id: str


class RegisterTriggerInput(msgspec.Struct):
    trigger_type: str
    function_id: str
    config: Raw = Raw(b"null")
    metadata: Raw | None = None
    trigger_namespace: str | None = None


class UnregisterTriggerInput(msgspec.Struct):
    id: str
    trigger_type: str | None = None


class CreateChannelInput(msgspec.Struct):
    buffer_size: int | None = None


def decode_input(data: Raw, kind: type[Any]) -> Any:
    """Decode a built-in's input; an absent payload reads as an empty object."""
    source = bytes(data) if present(data) is not None else b"{}"
    return msgspec.json.decode(source, type=kind)
