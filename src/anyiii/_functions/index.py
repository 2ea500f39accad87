"""The live registries of this process by name, so function handles pickle by reference.

A pickled handle is the pair (registry name, function id); unpickling looks the handle up
here. Registries are held weakly: a registry nobody uses any more is forgotten.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["FunctionSet", "lookup", "remember"]


class FunctionSet(Protocol):
    """What a function handle needs of its registry."""

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str | None: ...

    @property
    def functions(self) -> Mapping[str, Any]: ...


_registries: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def remember(registry: FunctionSet) -> None:
    """Make `registry` findable by its name (the newest one of a name wins)."""
    _registries[registry.name] = registry


def lookup(registry_name: str, function_id: str) -> Any:
    """The handle `function_id` of the live registry named `registry_name`."""
    registry = _registries.get(registry_name)
    if registry is None:
        raise LookupError(f"no registry named {registry_name!r} in this process")
    return registry.functions[function_id]
