"""What every in-engine trigger type does the same way: read a binding's config, and call
the bound function for an event (spec §5.3, §6.1).

A config that does not decode refuses the binding with `trigger_registration_failed`; a
missing config is the type's defaults. A delivery goes to the binding's target namespace
(`default` when absent) with the binding's metadata, after its condition (if any).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

import msgspec
from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE, TRIGGER_REGISTRATION_FAILED
from .._protocol.frames import ErrorBody, RegisterTrigger, present
from .service import Invoke, OnDone

__all__ = ["ConfiguredBindings", "binding_config", "delivery"]

C = TypeVar("C", bound=msgspec.Struct)


def binding_config(binding: RegisterTrigger, kind: type[C], label: str) -> C | ErrorBody:
    """The binding's config as `kind`, or the error that refuses it (`label` names the
    trigger type in the message)."""
    raw = present(binding.config)
    try:
        return msgspec.json.decode(raw if raw is not None else b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return ErrorBody(TRIGGER_REGISTRATION_FAILED, f"invalid {label} trigger config: {exc}")


def delivery(
    binding: RegisterTrigger,
    payload: Raw,
    condition_function_id: str | None = None,
    on_done: OnDone | None = None,
) -> Invoke:
    """The call that tells the binding's function about an event."""
    return Invoke(
        binding.function_id,
        payload,
        namespace=binding.namespace or DEFAULT_NAMESPACE,
        metadata=present(binding.metadata),
        condition_function_id=condition_function_id,
        on_done=on_done,
    )


class ConfiguredBindings(Generic[C]):
    """The bindings of an in-engine trigger type with their decoded configs: a provider
    whose `register` only checks the config and remembers it (`state`, `stream`)."""

    description = ""

    def __init__(self, kind: type[C], label: str) -> None:
        self._kind = kind
        self._label = label
        self._bindings: dict[str, tuple[RegisterTrigger, C]] = {}

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        config = binding_config(binding, self._kind, self._label)
        if isinstance(config, ErrorBody):
            return config
        self._bindings[binding.id] = (binding, config)
        return None

    def unregister(self, binding: RegisterTrigger) -> None:
        self._bindings.pop(binding.id, None)

    def bound(self) -> Iterator[tuple[RegisterTrigger, C]]:
        """Every binding and its config, in binding order."""
        return iter(self._bindings.values())
