"""docs/api.md lists every public name, as the code documents it today."""

from __future__ import annotations

from pathlib import Path

import pytest

import anyiii
from anyiii import _apidoc

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_reference_is_current() -> None:
    text = DOC.read_text()
    assert _apidoc.update_document(text) == text, (
        "docs/api.md is stale: run `python -m anyiii._apidoc docs/api.md`"
    )


def test_every_public_name_has_a_docstring_and_an_entry() -> None:
    assert _apidoc.undocumented() == []
    text = DOC.read_text()
    for module in _apidoc.public_modules():
        for name in module.__all__:
            assert f"### `{module.__name__}.{name}" in text, name


def test_only_exported_names_are_listed() -> None:
    text = DOC.read_text()
    exported = {f"{m.__name__}.{n}" for m in _apidoc.public_modules() for n in m.__all__}
    listed = {
        line.removeprefix("### `").split("`")[0].split("(")[0]
        for line in text.splitlines()
        if line.startswith("### `")
    }
    assert listed == exported


def test_a_new_public_name_changes_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The staleness test can fail: exporting one more name changes the rendering."""
    before = _apidoc.render()

    def extra() -> None:
        """A name that was not there before."""

    monkeypatch.setattr(anyiii, "extra_name_for_test", extra, raising=False)
    monkeypatch.setattr(anyiii, "__all__", [*anyiii.__all__, "extra_name_for_test"])
    after = _apidoc.render()
    assert after != before
    assert "### `anyiii.extra_name_for_test() -> None`" in after


def test_all_matches_the_names_the_package_defines() -> None:
    public = {n for n in vars(anyiii) if not n.startswith("_") and n != "annotations"}
    assert public - {"engine", "testing"} <= set(anyiii.__all__) | {"blocking"}
