"""WebSocket transports behind one small interface (private; used by the runtime and engine).

* `base`: the `Transport` protocol, `SendQueueFull`, and the default limits.
* `common`: the shared implementation: close bookkeeping, group-commit writes with
  shielded, bounded physical writes, `send_nowait`/`run_writer`, keepalive.
* `websocket`: the default transport, websockets' Sans-I/O protocol over anyio streams:
  `open_websocket` / `connect_websocket` (client) and `serve_websockets` (server).
* `httpx_ws`: `open_httpx_websocket`, for connections that must go through an
  `httpx.AsyncClient`.
* `memory`: `memory_transport_pair`, two transports joined in memory, for tests.
"""

from __future__ import annotations

from anyiii._transport.base import DEFAULT_CLOSE_TIMEOUT as DEFAULT_CLOSE_TIMEOUT
from anyiii._transport.base import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from anyiii._transport.base import DEFAULT_MAX_QUEUE_BYTES as DEFAULT_MAX_QUEUE_BYTES
from anyiii._transport.base import DEFAULT_QUEUE_HIGH_WATER as DEFAULT_QUEUE_HIGH_WATER
from anyiii._transport.base import DEFAULT_WRITE_TIMEOUT as DEFAULT_WRITE_TIMEOUT
from anyiii._transport.base import SendQueueFull as SendQueueFull
from anyiii._transport.base import Transport as Transport
from anyiii._transport.httpx_ws import open_httpx_websocket as open_httpx_websocket
from anyiii._transport.memory import memory_transport_pair as memory_transport_pair
from anyiii._transport.websocket import connect_websocket as connect_websocket
from anyiii._transport.websocket import open_websocket as open_websocket
from anyiii._transport.websocket import serve_websockets as serve_websockets

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_QUEUE_HIGH_WATER",
    "DEFAULT_WRITE_TIMEOUT",
    "SendQueueFull",
    "Transport",
    "connect_websocket",
    "memory_transport_pair",
    "open_httpx_websocket",
    "open_websocket",
    "serve_websockets",
]
