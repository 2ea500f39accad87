"""Shared test configuration: every async test runs under asyncio and under trio."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends, explicitly, so a missing trio fails loudly instead of skipping.

    Tests marked `autojump` get trio's virtual clock, which jumps over sleeps. Tests marked
    `bulk` (gigabytes through the stack, to measure memory) run asyncio without its debug
    mode, which checks every callback and makes them four times slower.
    """
    backend, options = request.param
    if backend == "asyncio" and request.node.get_closest_marker("bulk"):
        options = {**options, "debug": False}
    if backend == "trio" and request.node.get_closest_marker("autojump"):
        import trio.testing

        options = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return backend, options
