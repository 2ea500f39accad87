"""anyiii's own limits in the real engine's `config.yaml`: the `anyiii:` key of the
`iii-worker-manager` entry.

Where: the real engine refuses unknown keys at the top level of the file (`EngineConfig`
is `deny_unknown_fields`) and in the worker manager's `config:` block
(`WorkerManagerConfig`, likewise), but a worker *entry* (`WorkerEntry`: `name`, `image`,
`config`) accepts keys it does not know, on purpose, for forward compatibility
(`engine/src/workers/config.rs`). So a key next to `name:` is the one place the same file
still starts the real engine, which ignores it:

    workers:
      - name: iii-worker-manager
        config: {port: 49134}
        anyiii:
          max_message_size: 1048576
          connections: {max_per_peer: 50}
          registrations: {max_registrations: 500, reattach_grace_ms: 2000}

What: the keys are the field names of `EngineSettings`' numeric fields and of its limit
groups (`LIMIT_GROUPS`), read from the classes themselves, so a field added to one of
them is settable here with no change to this module. A field in seconds (typed `float`)
is written with an `_ms` suffix, in milliseconds, as the real engine writes its durations
(`handshake_timeout_ms`, `registration_namespace_grace_ms`, `default_timeout`); `null`
turns off one that may be None (`ping_interval_ms: null`). Settings the real engine
already has a key for (`ELSEWHERE`) are refused here, so each has one place in the file.

`read_limits` checks a section and returns what it sets; `apply_limits` lays that onto an
`EngineSettings`. Errors are `ValueError`s naming the key's path (`anyiii.http.max_body`);
the config reader adds the file and the entry.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Mapping
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

import msgspec

from .settings import EngineSettings

__all__ = ["ELSEWHERE", "LIMITS_KEY", "LIMIT_GROUPS", "Limits", "apply_limits", "read_limits"]

LIMITS_KEY: Final = "anyiii"
"""The key of the `iii-worker-manager` entry that holds the section."""
LIMIT_GROUPS: Final = ("registrations", "connections", "memory", "http")
"""`EngineSettings` fields whose own fields are set in a sub-mapping of the same name."""
MILLISECONDS: Final = "_ms"
"""The suffix of a duration's key: its value is in milliseconds."""
ELSEWHERE: Final[Mapping[str, str]] = {
    "handshake_timeout": "`handshake_timeout_ms` in the `iii-worker-manager` `config:` block",
    "namespace_grace": "the top-level `registration_namespace_grace_ms`",
    "http.request_timeout": "`default_timeout` (ms) in the `iii-http` `config:` block",
}
"""Settings the real engine's own keys set, by path in the section: refused in it."""

_NONE: Final = type(None)

Limits = Mapping[str, Any]
"""What a section sets: field name → value, and group name → (field name → value)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    """One settable field: its name in the class, its type, and whether it is a duration."""

    name: str
    hint: Any
    duration: bool


def _field_names(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [each.name for each in dataclasses.fields(cls)]
    return list(getattr(cls, "__struct_fields__", ()))  # a msgspec Struct (`HttpLimits`)


def _options(hint: Any) -> set[Any]:
    """The types a field may hold besides None (`float | None` → {float})."""
    if get_origin(hint) in (Union, types.UnionType):
        return set(get_args(hint)) - {_NONE}
    return {hint}


def _is_number(hint: Any) -> bool:
    """int or float, optionally `| None` (a bool is an int to Python, not here)."""
    options = _options(hint)
    return len(options) == 1 and options <= {int, float}


def _is_duration(hint: Any) -> bool:
    """Seconds: every `float` field of the settings is a duration."""
    return _options(hint) == {float}


def _fields(cls: type, prefix: str, *, numbers_only: bool = False) -> dict[str, _Field]:
    """The section's keys for the fields of `cls` (durations under their `_ms` key)."""
    hints = get_type_hints(cls)
    keys: dict[str, _Field] = {}
    for name in _field_names(cls):
        hint = hints[name]
        if (numbers_only and not _is_number(hint)) or f"{prefix}{name}" in ELSEWHERE:
            continue
        duration = _is_duration(hint)
        keys[f"{name}{MILLISECONDS}" if duration else name] = _Field(name, hint, duration)
    return keys


def _unknown(path: str, key: str, known: list[str]) -> ValueError:
    where = f"{path}.{key}"
    setting = where.removeprefix(f"{LIMITS_KEY}.").removesuffix(MILLISECONDS)
    if setting in ELSEWHERE:
        return ValueError(f"`{where}`: set it with {ELSEWHERE[setting]}, the real engine's key")
    if f"{key}{MILLISECONDS}" in known:
        hint = f" (durations are in milliseconds: `{key}{MILLISECONDS}`)"
    else:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
    return ValueError(f"`{where}` is not a setting{hint}; known: {', '.join(known)}")


def _value(path: str, field: _Field, value: object) -> object:
    """`value` checked against the field's type; a duration converted to seconds."""
    if field.duration:
        if value is None and _NONE in get_args(field.hint):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"`{path}`: expected a duration in milliseconds, not {value!r}")
        return value / 1000
    try:
        converted = msgspec.convert(value, field.hint)
    except msgspec.ValidationError as exc:
        raise ValueError(f"`{path}`: {exc} ({value!r})") from None
    if isinstance(converted, int | float) and converted < 0:
        raise ValueError(f"`{path}`: must not be negative, not {value!r}")
    return converted


def _section(path: str, block: object, cls: type, *, numbers_only: bool = False) -> dict[str, Any]:
    """The fields one mapping of the section sets, checked, then tried on `cls` so that
    its own validation (a positive count, …) reports here, with the key's path."""
    if not isinstance(block, dict):
        raise ValueError(f"`{path}` must be a mapping of settings, not {block!r}")
    prefix = path.removeprefix(LIMITS_KEY).lstrip(".")
    keys = _fields(cls, f"{prefix}." if prefix else "", numbers_only=numbers_only)
    known = sorted([*keys, *(LIMIT_GROUPS if numbers_only else ())])
    values: dict[str, Any] = {}
    for key, value in block.items():
        if numbers_only and key in LIMIT_GROUPS:
            continue
        field = keys.get(str(key))
        if field is None:
            raise _unknown(path, str(key), known)
        values[field.name] = _value(f"{path}.{key}", field, value)
    try:
        cls(**values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"`{path}`: {exc}") from None
    return values


def read_limits(block: object) -> Limits:
    """What an `anyiii:` section sets (see the module docstring); `ValueError` naming the
    key at fault for an unknown key, a wrong type or a value its class refuses."""
    values: dict[str, Any] = _section(LIMITS_KEY, block, EngineSettings, numbers_only=True)
    assert isinstance(block, dict)
    hints = get_type_hints(EngineSettings)
    for group in LIMIT_GROUPS:
        if group in block:
            path = f"{LIMITS_KEY}.{group}"
            values[group] = types.MappingProxyType(_section(path, block[group], hints[group]))
    return types.MappingProxyType(values)


def apply_limits(settings: EngineSettings, limits: Limits) -> EngineSettings:
    """`settings` with what `limits` sets; the rest of each group is kept."""
    changes: dict[str, Any] = {}
    for key, value in limits.items():
        if key in LIMIT_GROUPS:
            group = getattr(settings, key)
            if dataclasses.is_dataclass(group):
                changes[key] = dataclasses.replace(group, **value)  # type: ignore[type-var]
            else:
                changes[key] = msgspec.structs.replace(group, **value)
        else:
            changes[key] = value
    return dataclasses.replace(settings, **changes)
