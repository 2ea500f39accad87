"""How much one worker may register, and how big what it registers may be.

Without limits one worker could register millions of functions, or two 40 MiB descriptions
that make every `engine::functions::list` answer larger than its callers accept (they are
disconnected, reconnect, list again, and are disconnected again). `RegistrationLimits`
bounds both; the checks here say why a registration is refused (a sentence for the log and
the refusal), or None when it is within the limits. The router sends the refusal in the
form the protocol has for that registration (`registration_handling.py`).

Sizes are counted in bytes of the JSON the worker sent (a description in UTF-8).
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec import Raw, UnsetType

from .._protocol.frames import RegisterFunction, RegisterTrigger, RegisterTriggerType, present
from .tables import Connection, TypeKey

__all__ = [
    "RegistrationLimits",
    "binding_bytes",
    "binding_refusal",
    "durable_binding_refusal",
    "function_bytes",
    "function_refusal",
    "trigger_type_bytes",
    "trigger_type_refusal",
]


@dataclass(frozen=True, slots=True)
class RegistrationLimits:
    """Bounds on what one worker connection registers (anyiii's own; the real engine has
    none), and how long a departed worker's function ids stay reserved for it.

    `max_registrations` counts a connection's functions, trigger bindings, trigger types
    and refused registrations still waiting for their id (`ownership.py`) together.
    `max_description_bytes` bounds a function's or trigger type's description;
    `max_metadata_bytes` a function's or binding's `metadata`, a binding's `config`, and
    the `engine::workers::register` payload (what `engine::workers::list` shows of a worker);
    `max_schema_bytes` each of `request_format` / `response_format` (and a trigger type's
    two formats).

    `max_registration_bytes` bounds the bytes a connection's registrations take together
    (the four kinds `max_registrations` counts, each by its ids, description and JSON
    fields): the limits above bound each one, which still let 10,000 registrations of
    ~800 KiB make the engine hold ~8 GB. Unregistering, or registering the same id again,
    gives the bytes back; disconnecting gives back all.

    `max_durable_bindings` bounds the bindings one worker (by name and namespace, else by
    worker id) made through `engine::register_trigger`: they outlive their caller, so a
    per-connection count would not bound them. They do not count toward
    `max_registration_bytes` either, for the same reason: that total is given back when the
    connection ends, and they stay. Each is bounded by `max_metadata_bytes` (its `config`
    and its `metadata`), their number per worker by `max_durable_bindings`, and the bytes
    of all of them, whoever made them, by `max_durable_binding_bytes` (default 256 MiB):
    a worker may change its name, so only an engine-wide total bounds what hostile ones
    can make the engine hold. Once it is reached nobody adds durable bindings until some
    are removed, so deny untrusted workers `engine::register_trigger` through RBAC
    (docs/security.md).

    `max_listing_bytes` bounds one listing's answer (`engine::functions::list` and the
    other `*::list`, `engine::workers::info`, the `engine::functions-available` payload):
    entries beyond it are left out and the answer says `"truncated": true`; keep it below
    what your workers accept in one message (the SDKs' default is 64 MiB).
    `reattach_grace` is how long the function ids of a worker that disconnected stay
    reserved for it (spec §4.3: it reconnects and replays them); 0 turns the reservation
    off.
    """

    max_registrations: int = 10_000
    max_description_bytes: int = 64 * 1024
    max_metadata_bytes: int = 256 * 1024
    max_schema_bytes: int = 256 * 1024
    max_registration_bytes: int = 64 * 2**20
    max_durable_bindings: int = 1_000
    max_durable_binding_bytes: int = 256 * 2**20
    max_listing_bytes: int = 16 * 2**20
    reattach_grace: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "max_registrations",
            "max_description_bytes",
            "max_metadata_bytes",
            "max_schema_bytes",
            "max_registration_bytes",
            "max_durable_bindings",
            "max_durable_binding_bytes",
            "max_listing_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.reattach_grace, int | float) or self.reattach_grace < 0:
            raise ValueError(f"reattach_grace must be seconds >= 0, not {self.reattach_grace!r}")


def registrations_of(conn: Connection) -> int:
    """How many registrations `conn` holds (waiting ones included)."""
    return len(conn.functions) + len(conn.triggers) + len(conn.trigger_types) + len(conn.waiting)


def _too_big(what: str, size: int, limit: int) -> str | None:
    return f"{what} is {size} bytes, over the limit of {limit}" if size > limit else None


def _raw_size(value: Raw | UnsetType) -> int:
    given = present(value)
    return 0 if given is None else len(given)


def _text_size(text: str | None) -> int:
    return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))


def _first(*reasons: str | None) -> str | None:
    return next((reason for reason in reasons if reason is not None), None)


def function_bytes(frame: RegisterFunction) -> int:
    """The bytes a function registration takes (what the engine keeps of it): its id,
    description and JSON fields, as the worker sent them."""
    return (
        _text_size(frame.id)
        + _text_size(frame.description)
        + _raw_size(frame.request_format)
        + _raw_size(frame.response_format)
        + _raw_size(frame.metadata)
        + _raw_size(frame.invocation)
        + _raw_size(frame.observe)
    )


def binding_bytes(frame: RegisterTrigger) -> int:
    """The bytes a trigger binding takes: its ids, namespaces, `config` and `metadata`."""
    return (
        _text_size(frame.id)
        + _text_size(frame.trigger_type)
        + _text_size(frame.function_id)
        + _text_size(frame.namespace)
        + _text_size(frame.trigger_namespace)
        + _raw_size(frame.config)
        + _raw_size(frame.metadata)
    )


def trigger_type_bytes(frame: RegisterTriggerType) -> int:
    """The bytes a trigger type takes: its id, namespace, description and two formats."""
    return (
        _text_size(frame.id)
        + _text_size(frame.namespace)
        + _text_size(frame.description)
        + _raw_size(frame.trigger_request_format)
        + _raw_size(frame.call_request_format)
    )


def _bytes_refusal(
    limits: RegistrationLimits, conn: Connection, size: int, replaced: int
) -> str | None:
    """Whether `conn` may take `size` more bytes in place of the `replaced` it holds under
    the same id (a registration again, or a waiting one applied)."""
    total = conn.registered_bytes - replaced + size
    if total <= limits.max_registration_bytes:
        return None
    return (
        f"the worker's registrations would take {total} bytes with this one ({size} bytes), "
        f"over the limit of {limits.max_registration_bytes} (max_registration_bytes)"
    )


def _count_refusal(limits: RegistrationLimits, conn: Connection, is_new: bool) -> str | None:
    if is_new and registrations_of(conn) >= limits.max_registrations:
        return f"the worker already holds {limits.max_registrations} registrations, the limit"
    return None


def function_refusal(
    limits: RegistrationLimits, conn: Connection, frame: RegisterFunction, is_new: bool
) -> str | None:
    """Why `conn` may not register this function, or None. `is_new`: it is not one the
    connection already holds (re-registering one of its own never counts twice)."""
    key = (conn.effective_namespace, frame.id)
    replaced = conn.functions.size_of(key) + conn.waiting.size_of(key)
    return _first(
        _too_big("description", _text_size(frame.description), limits.max_description_bytes),
        _too_big("metadata", _raw_size(frame.metadata), limits.max_metadata_bytes),
        _too_big("request_format", _raw_size(frame.request_format), limits.max_schema_bytes),
        _too_big("response_format", _raw_size(frame.response_format), limits.max_schema_bytes),
        _count_refusal(limits, conn, is_new),
        _bytes_refusal(limits, conn, function_bytes(frame), replaced),
    )


def binding_refusal(
    limits: RegistrationLimits, conn: Connection | None, frame: RegisterTrigger
) -> str | None:
    """Why this trigger binding may not be made (by `conn`, None for a durable one: it
    counts toward no connection's registrations, see `RegistrationLimits`)."""
    reasons = [
        _too_big("config", _raw_size(frame.config), limits.max_metadata_bytes),
        _too_big("metadata", _raw_size(frame.metadata), limits.max_metadata_bytes),
    ]
    if conn is not None:
        reasons += [
            _count_refusal(limits, conn, frame.id not in conn.triggers),
            _bytes_refusal(limits, conn, binding_bytes(frame), conn.triggers.size_of(frame.id)),
        ]
    return _first(*reasons)


def durable_binding_refusal(
    limits: RegistrationLimits, frame: RegisterTrigger, made: int | None, held_bytes: int
) -> str | None:
    """Why this durable binding (`engine::register_trigger`) may not be made: over a size
    limit, over `max_durable_bindings` for a worker that has `made` that many (None: the
    engine makes it), or past `max_durable_binding_bytes` with the `held_bytes` all durable
    bindings take now (see `RegistrationLimits`)."""
    if made is not None and made >= limits.max_durable_bindings:
        count = f"the worker already made {made} durable bindings, the limit"
    else:
        count = None
    total = held_bytes + binding_bytes(frame)
    if total > limits.max_durable_binding_bytes:
        size = (
            f"durable bindings would take {total} bytes with this one, over the engine's "
            f"limit of {limits.max_durable_binding_bytes} (max_durable_binding_bytes)"
        )
    else:
        size = None
    return _first(binding_refusal(limits, None, frame), count, size)


def trigger_type_refusal(
    limits: RegistrationLimits, conn: Connection, frame: RegisterTriggerType, key: TypeKey
) -> str | None:
    """Why `conn` may not provide this trigger type (at `key`), or None."""
    return _first(
        _too_big("description", _text_size(frame.description), limits.max_description_bytes),
        _too_big(
            "trigger_request_format",
            _raw_size(frame.trigger_request_format),
            limits.max_schema_bytes,
        ),
        _too_big(
            "call_request_format", _raw_size(frame.call_request_format), limits.max_schema_bytes
        ),
        _count_refusal(limits, conn, key not in conn.trigger_types),
        _bytes_refusal(limits, conn, trigger_type_bytes(frame), conn.trigger_types.size_of(key)),
    )
