"""The `peer` fixture every interop test takes: each official SDK in turn (`PEERS`)."""

from __future__ import annotations

import pytest
from interop_support import PEERS, Peer


@pytest.fixture(params=PEERS, ids=[peer.name for peer in PEERS])
def peer(request: pytest.FixtureRequest) -> Peer:
    """Every test runs against each official SDK that is installed (see `Peer.require`)."""
    chosen: Peer = request.param
    chosen.require()
    return chosen
