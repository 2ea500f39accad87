"""`parse_request`'s shortcut for the plain `{"function_id", "payload"}` dict gives exactly
what its general path gives (a dict subclass takes the general path)."""

from __future__ import annotations

from typing import Any

import pytest

from anyiii._worker.calls import parse_request


class GeneralPath(dict[str, Any]):
    """A dict that is not exactly `dict`: `parse_request` validates it key by key."""


@pytest.mark.parametrize(
    "request_",
    [
        {"function_id": "shop::price", "payload": {"n": 2}},
        {"function_id": "shop::price"},
        {"function_id": "shop::price", "payload": None},
        {"function_id": "shop::price", "payload": [1, "two", None]},
        {"function_id": "shop::price", "payload": {"n": 2}, "timeout_ms": 250},
        {"function_id": "shop::price", "namespace": "billing"},
    ],
)
def test_the_shortcut_and_the_general_path_agree(request_: dict[str, Any]) -> None:
    assert parse_request(request_) == parse_request(GeneralPath(request_))


@pytest.mark.parametrize(
    "request_",
    [{"function_id": ""}, {"function_id": 7, "payload": 1}, {"payload": 1}, {}],
)
def test_both_paths_refuse_a_missing_or_empty_function_id(request_: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="non-empty function_id"):
        parse_request(request_)
    with pytest.raises(ValueError, match="non-empty function_id"):
        parse_request(GeneralPath(request_))
