"""Every check of the layering test can fail: each rule, the layer placement, the cycle finder
and the import-graph walk, run on small fake package trees written to a temporary
directory (`write_tree`). The rule table and the checker are in `layering.py`; the checks
on the real package are in `test_layering.py`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from layering import RULES, Import, Rule, build_graph, cycles, matches, unplaced, violations

# --- every check can fail ---------------------------------------------------------------------


def instance(pattern: str, *, inside: bool) -> str:
    """A module name matching `pattern`; for "p.*", a module in `p` if `inside`, else `p`."""
    if pattern.endswith(".*"):
        package = pattern.removesuffix(".*")
        return f"{package}.planted" if inside else package
    return pattern


def write_tree(root: Path, sources: Mapping[str, str]) -> Path:
    """A fake package tree under `root` (module name -> source); returns the top package.

    A name that is a top-level name or a prefix of another is written as a package's
    `__init__.py`, any other as a plain module; packages not given get an empty one.
    """
    packages = {
        ".".join(parts[:depth])
        for parts in (module.split(".") for module in sources)
        for depth in range(1, len(parts))
    } | {module for module in sources if "." not in module}
    for package in packages:
        path = root.joinpath(*package.split("."))
        path.mkdir(parents=True, exist_ok=True)
        (path / "__init__.py").touch()
    for module, source in sources.items():
        parts = module.split(".")
        if module in packages:
            path = root.joinpath(*parts, "__init__.py")
        else:
            path = root.joinpath(*parts[:-1], f"{parts[-1]}.py")
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    (top,) = {module.partition(".")[0] for module in sources}
    return root / top


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_rule_reports_a_planted_import(rule: Rule, tmp_path: Path) -> None:
    """Derived from the table, so a new rule is proven to fail without a new test."""
    importer = instance(rule.importers[0], inside=True)
    target = next(
        name
        for name in (
            instance(pattern, inside=inside)
            for pattern in rule.forbidden
            for inside in (False, True)  # a package itself may be allowed, its modules not
        )
        if not matches(name, rule.allowed)
    )
    # Function-local, so this also proves the walk sees imports that only run on a call.
    source = f"def later() -> None:\n    import {target}\n"
    graph = build_graph(write_tree(tmp_path, {importer: source}))
    broken = violations(rule, graph)
    assert broken == [Import(importer, target, 2, f"import {target}")]
    assert str(broken[0]) == f"{importer} line 2: `import {target}` imports {target}"

    clean = build_graph(write_tree(tmp_path / "clean", {importer: "import json\n"}))
    assert violations(rule, clean) == []


def test_a_module_in_no_layer_is_reported(tmp_path: Path) -> None:
    graph = build_graph(
        write_tree(tmp_path, {"anyiii._errors": "", "anyiii.newcomer": "", "anyiii._new.x": ""})
    )
    assert unplaced(graph) == {"anyiii._new": [], "anyiii._new.x": [], "anyiii.newcomer": []}


def test_a_planted_cycle_is_reported(tmp_path: Path) -> None:
    """A cycle closed by a type-only import counts; so does a longer one and a self-import;
    a module imported from two places (a diamond) is no cycle."""
    graph = build_graph(
        write_tree(
            tmp_path,
            {
                "pkg": "",
                "pkg.router": "from . import builtins\n",
                "pkg.builtins": """\
                    from typing import TYPE_CHECKING

                    if TYPE_CHECKING:
                        from .router import Router
                    """,
                "pkg.a": "from pkg import b\n",
                "pkg.b": "import pkg.c\n",
                "pkg.c": "from .a import thing\n",
                "pkg.selfish": "from pkg import selfish\n",
                "pkg.top": "from . import left, right\n",
                "pkg.left": "from .bottom import x\n",
                "pkg.right": "from .bottom import x\n",
                "pkg.bottom": "",
            },
        )
    )
    found = sorted(
        sorted((imp.importer, imp.target, imp.line) for imp in cycle) for cycle in cycles(graph)
    )
    assert found == [
        [("pkg.a", "pkg.b", 1), ("pkg.b", "pkg.c", 1), ("pkg.c", "pkg.a", 1)],
        [("pkg.builtins", "pkg.router", 4), ("pkg.router", "pkg.builtins", 1)],
        [("pkg.selfish", "pkg.selfish", 1)],
    ]


def test_the_graph_resolves_every_import_form(tmp_path: Path) -> None:
    top = write_tree(
        tmp_path,
        {
            "app": "from . import face\nfrom ._layer import thing\n",
            "app.face": "",
            "app._layer": "from .inner import x\nfrom .. import face\n",
            "app._layer.inner": """\
                from typing import TYPE_CHECKING
                from ..face import run
                from . import sibling
                from .sibling import name, other
                if TYPE_CHECKING:
                    from app._layer.deep.leaf import Thing
                def later():
                    import anyio.abc, json
                try:
                    import trio
                except ImportError:
                    pass
                """,
            "app._layer.sibling": "",
            "app._layer.deep.leaf": "from ... import face\nfrom ...face import run\n",
        },
    )
    graph = build_graph(top)
    assert graph.modules == {
        "app",
        "app.face",
        "app._layer",
        "app._layer.inner",
        "app._layer.sibling",
        "app._layer.deep",
        "app._layer.deep.leaf",
    }
    assert sorted((imp.importer, imp.line, imp.target) for imp in graph.imports) == [
        ("app", 1, "app.face"),  # `from . import face` names the module
        ("app", 2, "app._layer"),  # `thing` is not a module: the package itself
        ("app._layer", 1, "app._layer.inner"),
        ("app._layer", 2, "app.face"),  # relative imports in an __init__ count from itself
        ("app._layer.deep.leaf", 1, "app.face"),
        ("app._layer.deep.leaf", 2, "app.face"),
        ("app._layer.inner", 1, "typing"),
        ("app._layer.inner", 2, "app.face"),
        ("app._layer.inner", 3, "app._layer.sibling"),
        ("app._layer.inner", 4, "app._layer.sibling"),  # one edge for two names
        ("app._layer.inner", 6, "app._layer.deep.leaf"),  # under TYPE_CHECKING
        ("app._layer.inner", 8, "anyio.abc"),  # in a function
        ("app._layer.inner", 8, "json"),
        ("app._layer.inner", 10, "trio"),  # in a try block
    ]
