"""Render the API reference in `docs/api.md` from the public names and their docstrings.

The reference is generated, never written by hand, so it cannot drift from the code: a test
regenerates it and compares, and fails when a public name has no docstring. After changing
the public API, refresh it with

    python -m anyiii._apidoc docs/api.md
"""

from __future__ import annotations

import enum
import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from ._docgen import replace_block

__all__ = ["public_modules", "render", "update_document"]

START = "<!-- generated: api start -->"
END = "<!-- generated: api end -->"


def public_modules() -> list[ModuleType]:
    """The modules whose `__all__` is the public API."""
    import anyiii
    import anyiii.engine

    modules: list[ModuleType] = [anyiii, anyiii.engine]
    try:
        blocking = importlib.import_module("anyiii.blocking")
    except ImportError:
        return modules
    if getattr(blocking, "__all__", None):
        modules.append(blocking)
    return modules


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or ""


class _Annotation:
    """An annotation kept as the source text it was written as (no quotes around it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _unquoted(annotation: Any) -> Any:
    return _Annotation(annotation) if isinstance(annotation, str) else annotation


def _signature(obj: Any) -> str:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parameters = [
        p.replace(annotation=_unquoted(p.annotation)) for p in signature.parameters.values()
    ]
    return str(
        signature.replace(
            parameters=parameters, return_annotation=_unquoted(signature.return_annotation)
        )
    )


def _struct_fields(cls: type[msgspec.Struct]) -> Iterator[str]:
    hints = getattr(cls, "__annotations__", {})
    for name in cls.__struct_fields__:
        annotation = hints.get(name)
        if annotation is None:
            for base in cls.__mro__:
                annotation = getattr(base, "__annotations__", {}).get(name)
                if annotation is not None:
                    break
        yield f"`{name}: {annotation}`" if annotation is not None else f"`{name}`"


def _members(cls: type) -> Iterator[tuple[str, object]]:
    """Public methods and properties the class defines (in source order), then those it
    inherits from private anyiii bases, which have no entry of their own."""
    seen: set[str] = set()
    for owner in (cls, *filter(_private_base, cls.__mro__[1:])):
        for name, value in vars(owner).items():
            if name in seen or (
                name.startswith("_")
                and not (
                    name in ("__call__", "__aenter__", "__enter__")
                    and getattr(value, "__doc__", None)
                )
            ):
                continue
            seen.add(name)
            if isinstance(value, property | staticmethod | classmethod) or inspect.isfunction(
                value
            ):
                yield name, value


def _private_base(base: type) -> bool:
    """An anyiii class that users never see by name (so its members are documented on
    the public classes that inherit them)."""
    module = base.__module__
    public = importlib.import_module("anyiii")
    return (
        module.startswith("anyiii.")
        and module.split(".")[1].startswith("_")
        and getattr(public, base.__name__, None) is not base
    )


def _render_class(qualified: str, cls: type) -> list[str]:
    lines = [f"### `{qualified}`", ""]
    if issubclass(cls, enum.Enum):
        lines += ["Enum: " + ", ".join(f"`{m.name}` (`{m.value!r}`)" for m in cls), ""]
    elif issubclass(cls, msgspec.Struct):
        lines += ["Struct fields: " + ", ".join(_struct_fields(cls)), ""]
    elif issubclass(cls, BaseException):
        lines += [f"Exception (subclass of `{cls.__mro__[1].__name__}`).", ""]
    else:
        lines += [f"`{cls.__name__}{_signature(cls)}`", ""]
    lines += [_doc(cls), ""]
    for name, member in _members(cls):
        if isinstance(member, property):
            lines.append(f"* `{name}` (property): {_first_paragraph(_doc(member))}")
        else:
            function = member.__func__ if isinstance(member, staticmethod | classmethod) else member
            doc = _first_paragraph(_doc(function))
            lines.append(f"* `{name}{_signature(function)}`: {doc}")
    if lines[-1] != "":
        lines.append("")
    return lines


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split())


def render() -> str:
    """The reference: one section per public module, one entry per name in `__all__`."""
    lines: list[str] = []
    for module in public_modules():
        lines += [f"## `{module.__name__}`", ""]
        for name in sorted(module.__all__, key=str.lower):
            obj = getattr(module, name)
            qualified = f"{module.__name__}.{name}"
            if isinstance(obj, ModuleType):
                lines += [f"### `{qualified}`", "", _first_paragraph(_doc(obj)), ""]
            elif inspect.isclass(obj):
                lines += _render_class(qualified, obj)
            elif callable(obj):
                lines += [f"### `{qualified}{_signature(obj)}`", "", _doc(obj), ""]
            else:
                lines += [f"### `{qualified}`", "", f"Value: `{obj!r}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def undocumented() -> list[str]:
    """Public names without a docstring of their own."""
    missing = []
    for module in public_modules():
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or callable(obj) or isinstance(obj, ModuleType)) and not (
                getattr(obj, "__doc__", None)
            ):
                missing.append(f"{module.__name__}.{name}")
    return missing


def update_document(text: str) -> str:
    """`text` with the generated block replaced by a fresh rendering."""
    return replace_block(text, START, END, f"\n{render()}")


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(update_document(path.read_text()))
