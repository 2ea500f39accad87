"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest
from router_harness import Engine


@pytest.fixture
def engine() -> Engine:
    """A fresh router with a fake clock and no workers (see `router_harness`)."""
    return Engine()
