"""What every in-engine trigger type does the same way: read a binding's config, and call
the bound function for an event (spec §5.3, §6.1).

A config that does not decode refuses the binding with `trigger_registration_failed`; a
missing config is the type's defaults. A delivery goes to the binding's target namespace
(`default` when absent) with the binding's metadata, after its condition (if any).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE, TRIGGER_REGISTRATION_FAILED
from .._protocol.frames import ErrorBody, RegisterTrigger, present
from .service import Invoke, OnDone

__all__ = ["binding_config", "delivery"]

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
